"""The torch-free half of the scene parser: its config, image loading, and decoding the
dense maps into a `SceneGraph`. Shared by the torch model (`vqa.vision.scene_parser`) and
the numpy runtime (`vqa.runtime.scene_parser`), so both decode the same way.

Decoding: local maxima of sigmoid(heat) above `score_threshold` (3x3 max pool), greedy box NMS
(`vqa.vision.nms`, the rule of `torchvision.ops.nms`), attribute distributions = softmax, `score` = objectness.
With `low_threshold` set, weaker peaks down to it are kept where they stand apart from the boxes
already kept (IoU <= `low_iou`, and with `low_ios` < 1 at most that share of their box inside
one): faint isolated objects, not second peaks on a found one nor parts of a larger one.
With `read_threshold` set (and a second stage), the peaks from it up that this leaves out are
read by the second stage too and come in where they lie on a kept box yet read as another
object (`read_candidates`): an object mostly hidden behind another, not a part of it.
Positions: the predicted pixel centre is cast back through CLEVR's camera (35 mm lens,
32 mm sensor, un-jittered location) onto the horizontal plane at the object's half
height (from its predicted shape and size); relations then follow CLEVR's rule
(`vqa.scene.clevr_relations`) with the camera's `directions`.
"""
from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..ontology import CLEVR_ATTRIBUTES
from ..scene import SceneGraph, SceneObject, clevr_relations
from .nms import nms, pairwise

STRIDE = 4  # pixels per output cell (the stem's stride)
MEAN, STD = 0.5, 0.25  # pixel normalisation after scaling to [0, 1]


@dataclass
class SceneParserConfig:
    """Shape of a scene parser. image_size is (height, width), multiples of 16."""

    image_size: tuple[int, int] = (128, 192)
    stem_channels: tuple[int, int] = (24, 48)
    stem_extra: int = 1            # extra residual 3x3 convolutions at stride 4 (a wider receptive field per cell)
    patch_size: int = 4            # in stem cells: 4 -> 16 pixels
    dim: int = 96
    depth: int = 4
    n_heads: int = 4
    attn_variant: str = "gqa"
    n_q_heads: int | None = None
    n_kv_heads: int | None = None
    mlp_ratio: float = 2.0
    up_channels: int = 16          # channels per cell after the pixel shuffle
    head_channels: int = 64
    fuse_kernel: int = 1           # kernel of the conv fusing ViT and stem features per cell
    score_threshold: float = 0.3
    nms_iou: float = 0.7
    # hysteresis (0: off): peaks between low_threshold and score_threshold are kept only where
    # their box overlaps no box kept before them by more than low_iou (chosen on val)
    low_threshold: float = 0.0
    low_iou: float = 0.1
    # ... and, below 1, not where more than this share of their box lies inside a kept box
    low_ios: float = 1.0
    # the objectness score at which a detection is as likely real as not (None: not measured);
    # scene graphs carry it (info["objectness_midpoint"]) for the reasoners' calibration
    objectness_midpoint: float | None = None
    # reading weak peaks (0: off; needs the second stage): peaks from read_threshold up that the
    # decoding above leaves out are read by the second stage too, and kept where they lie on a
    # kept box yet read as another object (`read_candidates`; chosen on val)
    read_threshold: float = 0.0
    read_categories: tuple[str, ...] = ("color", "material")
    max_objects: int = 24
    flip_tta: bool = True          # parsing averages the maps of the image and of its mirror image
    # second stage (0: none): each detected object's square crop (side `refine_context` x its
    # longer box side, sampled from the network input at refine_size x refine_size pixels)
    # goes through a small CNN whose attribute logits are mixed into the dense head's:
    # logits = (1 - a) * dense + a * crop, a = refine_weight[category] (chosen on val)
    refine_size: int = 0
    refine_channels: tuple[int, int, int] = (24, 48, 96)
    refine_context: float = 1.5
    refine_weight: dict[str, float] = field(default_factory=dict)
    # where crops are sampled: "input" (the network input) or "image" (the image at its own
    # resolution, through a pyramid of 2x2 means: each crop from the finest level where it
    # spans at most 2 image pixels per crop pixel)
    refine_source: str = "input"
    # the second stage also regresses the object's centre: 2 more outputs, the centre's offset
    # from the crop centre as a fraction of the crop side; the decoded centre moves
    # `refine_centre_weight` of the way from the dense head's to the crop net's (chosen on val)
    refine_centre: bool = False
    refine_centre_weight: float = 0.0
    # the centre weight by object size (empty: `refine_centre_weight` for every object): knots
    # (box's longer side / input width, weight), interpolated linearly in log side and constant
    # beyond the end knots (the crop net reads large objects at fewer pixels per image pixel;
    # `centre_weights`, chosen on val by `vqa.vision.refine.fit_centre_by_side`)
    refine_centre_by_side: tuple[tuple[float, float], ...] = ()
    # a second, tighter look for large objects (0: off): boxes whose longer side is at least
    # `refine_zoom_from` x the input width are also cropped at `refine_zoom_context` x that side,
    # and their crop-net centre is the mean of the two crops' (a large object's crop holds few crop
    # pixels per image pixel; the two crops' errors partly cancel). Attributes: the first crop's.
    refine_zoom_from: float = 0.0
    refine_zoom_context: float = 1.3
    # the size a box should have (empty: off): per "shape/size", the box's width and height as
    # fractions of the input width, each affine in its centre (1, cx / width, cy / height), as on
    # a ground plane under a fixed camera (fitted on renders' amodal boxes: `fit_size_prior`),
    # averaged over the first reading's probabilities of the shapes and sizes (`expected_box`). A
    # kept box whose longer side is outside `refine_size_band` x the expected one (an object partly
    # hidden, found too small or too large) gets its crop-net centre from a crop of the expected
    # size (attributes: the first reading's). Needs the centre head.
    refine_size_prior: dict[str, list[list[float]]] = field(default_factory=dict)
    refine_size_band: tuple[float, float] = (0.9, 1.1)
    # the second stage's attribute head also reads where the crop is: log(crop side / input
    # width), centre x / width, centre y / height (a crop alone does not show how big its object is)
    refine_geometry: bool = False
    # the half-extent of a cube for 3-D positions: "synth" (the synthetic world's, radius /
    # sqrt(2)) or "clevr" (released CLEVR's cubes: the radius, see vqa.datasets.blender.driver.CUBES)
    cubes: str = "synth"
    attributes: dict[str, list[str]] = field(default_factory=lambda: {k: list(v) for k, v in CLEVR_ATTRIBUTES.items()})

    @property
    def block(self) -> int:
        """Pixels per ViT token side."""
        return STRIDE * self.patch_size

    def vit_config(self):
        """The `vqa.nn.vit.ViTConfig` of the backbone (imports torch)."""
        from ..nn.vit import ViTConfig

        h, w = self.image_size
        return ViTConfig(image_size=(h // STRIDE, w // STRIDE), patch_size=self.patch_size,
                         in_chans=self.stem_channels[-1], dim=self.dim, depth=self.depth, n_heads=self.n_heads,
                         attn_variant=self.attn_variant, n_q_heads=self.n_q_heads, n_kv_heads=self.n_kv_heads,
                         mlp_ratio=self.mlp_ratio, class_token=False, pool="none")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["image_size"], d["stem_channels"] = list(self.image_size), list(self.stem_channels)
        d["refine_channels"] = list(self.refine_channels)
        d["refine_centre_by_side"] = [list(k) for k in self.refine_centre_by_side]
        d["refine_size_band"] = list(self.refine_size_band)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SceneParserConfig":
        d = dict(d)
        d["image_size"] = tuple(d["image_size"])
        d["stem_channels"] = tuple(d["stem_channels"])
        if "refine_channels" in d:
            d["refine_channels"] = tuple(d["refine_channels"])
        if "read_categories" in d:
            d["read_categories"] = tuple(d["read_categories"])
        if "refine_centre_by_side" in d:
            d["refine_centre_by_side"] = tuple((float(a), float(w)) for a, w in d["refine_centre_by_side"])
        if "refine_size_band" in d:
            d["refine_size_band"] = tuple(float(v) for v in d["refine_size_band"])
        d.setdefault("stem_extra", 0)  # checkpoints written before the options existed
        d.setdefault("flip_tta", False)
        return cls(**d)


# ---- images -------------------------------------------------------------------------------
MAX_IMAGE_PIXELS = 25_000_000  # larger images are refused before decoding (memory stays bounded)
MAX_ASPECT = 4  # input_size refuses an image the network would see taller than 4 x its configured size


def load_image(path: str | Path):
    """Open an image file as RGB (grayscale, palette and RGBA are converted; transparency is
    composited over CLEVR's mid-gray). Raises DataError naming the file when it is not an image."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if path.is_dir():
        raise DataError("is a directory, not an image file", file=path)
    try:
        with Image.open(path) as im:
            w, h = im.size  # from the header: nothing decoded yet
            if w * h > MAX_IMAGE_PIXELS:
                raise DataError(f"image is {w}x{h} pixels ({w * h / 1e6:.1f} megapixels); at most "
                                f"{MAX_IMAGE_PIXELS / 1e6:.1f} are read (the parser sees it at a few hundred pixels "
                                "wide anyway): downscale it first", file=path)
            im.load()
            return to_rgb(im)
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError("no such file", file=path) from None
    except Image.DecompressionBombError as e:  # PIL refuses to open it at all: the size from its header
        size = _header_size(path)
        what = f"image is {size[0]}x{size[1]} pixels" if size else f"refused: {e}"
        raise DataError(f"{what} ({PIL_BOMB_WORDS}); at most {MAX_IMAGE_PIXELS / 1e6:.1f} megapixels are read: "
                        "downscale it first", file=path) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"not a readable image ({type(e).__name__}: {e}); expected PNG/JPEG/...", file=path) from None


PIL_BOMB_WORDS = "a decompression bomb by PIL's limit"
_HEADER_LOCK = threading.Lock()


def _header_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the header of an image PIL refuses to open for its size (the
    limit is lifted only to identify the file, under a lock; nothing is decoded)."""
    from PIL import Image

    with _HEADER_LOCK:
        old = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            with Image.open(path) as im:
                return im.size
        except Exception:
            return None
        finally:
            Image.MAX_IMAGE_PIXELS = old


def to_rgb(im):
    """Any PIL image -> RGB; alpha composited over gray (128)."""
    from PIL import Image

    if im.mode == "RGB":
        return im
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (128, 128, 128, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    if im.mode.startswith("I;16"):  # 16-bit grayscale: 0..65535 -> 0..255 (not stretched)
        a = np.asarray(im, dtype=np.float64)
        return Image.fromarray(np.round(a / 257.0).astype(np.uint8)).convert("RGB")
    if im.mode in ("I", "F"):
        a = np.asarray(im, dtype=np.float64)
        a = 255 * (a - a.min()) / max(float(a.max() - a.min()), 1e-9)
        return Image.fromarray(a.astype(np.uint8)).convert("RGB")
    return im.convert("RGB")


def input_size(size_wh: tuple[int, int], cfg: SceneParserConfig) -> tuple[int, int]:
    """(height, width) the network sees for an image of `size_wh`: the configured width and
    the image's aspect ratio, the height rounded to a multiple of 16 pixels."""
    w0, h0 = size_wh
    if w0 < 1 or h0 < 1:
        raise DataError(f"empty image ({w0}x{h0})")
    H, W = cfg.image_size
    if abs(h0 * W - H * w0) <= w0:  # same aspect ratio (to a pixel)
        return H, W
    h = max(cfg.block, int(round(h0 * W / w0 / cfg.block)) * cfg.block)
    if h > MAX_ASPECT * max(H, W):  # a strip 2 pixels wide would be read 320 x 800,000 (minutes, gigabytes)
        raise DataError(f"image is {w0}x{h0} pixels, more than {MAX_ASPECT} times taller than wide for the "
                        f"parser (it would read it at {W}x{h}); crop it first")
    return h, W


def image_array(im, hw: tuple[int, int]) -> np.ndarray:
    """PIL RGB -> normalised float32 array (3, h, w), resized (bilinear) when needed."""
    from PIL import Image

    h, w = hw
    if im.size != (w, h):
        im = im.resize((w, h), Image.BILINEAR)
    a = np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)
    return (a.astype(np.float32) / np.float32(255.0) - np.float32(MEAN)) / np.float32(STD)


# ---- decoding ------------------------------------------------------------------------------
def parse_images(images: list, cfg: SceneParserConfig, predict, *,
                 image_ids: list[str] | None = None, refine=None) -> list[SceneGraph]:
    """PIL images or paths -> one SceneGraph each (coordinates in each image's own pixels).
    Images of one input size go through `predict` together: normalised float32 (B, 3, h, w)
    -> dict of maps with a batch axis (numpy arrays); then each image's maps are decoded.
    `refine` (with `cfg.refine_size`): crops (n, 3, r, r) float32 and their `crop_geometry`
    (n, 3) -> attribute logits (n, K),
    the categories' values concatenated in `cfg.attributes` order, then with `cfg.refine_centre`
    the centre offsets (n, 2) (the second stage)."""
    pils = [load_image(im) if isinstance(im, (str, Path)) else to_rgb(im) for im in images]
    ids = image_ids or [Path(im).stem if isinstance(im, (str, Path)) else f"image_{i}"
                        for i, im in enumerate(images)]
    groups: dict[tuple[int, int], list[int]] = {}
    for i, im in enumerate(pils):
        try:
            size = input_size(im.size, cfg)
        except DataError as e:  # name the image
            path = images[i] if isinstance(images[i], (str, Path)) else None
            raise e.located(file=path, record=None if path else ids[i]) from None
        groups.setdefault(size, []).append(i)
    out: dict[int, SceneGraph] = {}
    for (h, w), idx in groups.items():
        batch = np.stack([image_array(pils[i], (h, w)) for i in idx])
        maps = predict(batch)
        second = refine is not None and cfg.refine_size
        both = [detect_with_candidates({name: m[k] for name, m in maps.items()}, cfg, read=bool(second))
                for k in range(len(idx))]
        dets, cands = [d for d, _ in both], [c for _, c in both]
        if second:
            sources = None
            if cfg.refine_source == "image":
                sources = [pyramid(image_array(pils[i], (pils[i].size[1], pils[i].size[0]))) for i in idx]
            # the candidates are read in the same call as the kept detections of their images
            # (the size prior reads again only the kept ones: a weak peak is judged by its own box)
            refine_detections(dets + cands, batch, cfg, refine, sources=sources, images=[*range(len(idx))] * 2,
                              reread=[True] * len(dets) + [False] * len(cands))
            dets = [read_candidates(d, c, cfg) for d, c in zip(dets, cands)]
        for k, i in enumerate(idx):
            out[i] = to_graph(dets[k], cfg, image_size=pils[i].size, image_id=ids[i])
    return [out[i] for i in range(len(pils))]


def sample_crops(images: np.ndarray, index: np.ndarray, centres: np.ndarray, sides: np.ndarray,
                 size: int) -> np.ndarray:
    """Square crops by bilinear sampling: images (N, 3, H, W) (any dtype), for each crop n the
    image `index[n]`, centre `centres[n]` (x, y) and side `sides[n]` in pixels (pixel k spans
    [k, k+1)); outside the image the edge pixels repeat. -> float32 (n, 3, size, size)."""
    N, C, H, W = images.shape
    n = len(index)
    if n == 0:
        return np.zeros((0, C, size, size), np.float32)
    t = (np.arange(size, dtype=np.float64) + 0.5) / size - 0.5                       # (size,)
    xs = centres[:, 0:1] + t[None] * sides[:, None] - 0.5                              # (n, size)
    ys = centres[:, 1:2] + t[None] * sides[:, None] - 0.5
    x0, y0 = np.floor(xs), np.floor(ys)
    fx, fy = (xs - x0).astype(np.float32), (ys - y0).astype(np.float32)
    x0i, y0i = x0.astype(np.int64), y0.astype(np.int64)
    xa, xb = np.clip(x0i, 0, W - 1), np.clip(x0i + 1, 0, W - 1)
    ya, yb = np.clip(y0i, 0, H - 1), np.clip(y0i + 1, 0, H - 1)
    b = np.asarray(index, dtype=np.int64)[:, None, None]

    def at(yy, xx):  # (n, size, size, C)
        return images[b, :, yy[:, :, None], xx[:, None, :]].astype(np.float32)

    wx, wy = fx[:, None, :, None], fy[:, :, None, None]
    top = at(ya, xa) * (1 - wx) + at(ya, xb) * wx
    bottom = at(yb, xa) * (1 - wx) + at(yb, xb) * wx
    return np.ascontiguousarray((top * (1 - wy) + bottom * wy).transpose(0, 3, 1, 2))


def pyramid(image: np.ndarray, levels: int = 5, min_side: int = 8) -> list[np.ndarray]:
    """(..., C, H, W) -> [the image, its 2x2 means, their 2x2 means, ...] (at most `levels`,
    none smaller than `min_side`); an odd last row or column is dropped before averaging, so
    pixel k of level l spans [k 2^l, (k+1) 2^l) of the image. uint8 in, uint8 out (rounded)."""
    out = [image]
    while len(out) < levels and min(out[-1].shape[-2:]) >= 2 * min_side:
        a = out[-1]
        h, w = a.shape[-2] // 2 * 2, a.shape[-1] // 2 * 2
        a = a[..., :h, :w].astype(np.float32)
        m = (a[..., 0::2, 0::2] + a[..., 1::2, 0::2] + a[..., 0::2, 1::2] + a[..., 1::2, 1::2]) * np.float32(0.25)
        out.append(np.round(m).astype(np.uint8) if image.dtype == np.uint8 else m)
    return out


def crop_level(sides: np.ndarray, size: int, n_levels: int) -> np.ndarray:
    """The pyramid level of each crop: the finest where the crop spans < 2 level pixels per crop pixel."""
    ratio = np.maximum(np.asarray(sides, np.float64) / size, 1.0)
    return np.clip(np.floor(np.log2(ratio)), 0, n_levels - 1).astype(np.int64)


def sample_pyramid_crops(levels: list[np.ndarray], index: np.ndarray, centres: np.ndarray, sides: np.ndarray,
                         size: int) -> np.ndarray:
    """`sample_crops` from a pyramid (`pyramid` of images (N, 3, H, W)): centres and sides in
    pixels of level 0, each crop sampled from its `crop_level`."""
    index = np.asarray(index, np.int64)
    out = np.zeros((len(index), levels[0].shape[-3], size, size), np.float32)
    lv = crop_level(sides, size, len(levels))
    for level in np.unique(lv):
        sel = np.nonzero(lv == level)[0]
        f = float(2 ** int(level))
        out[sel] = sample_crops(levels[level], index[sel], np.asarray(centres)[sel] / f, np.asarray(sides)[sel] / f, size)
    return out


def crop_boxes(boxes: np.ndarray, cfg: SceneParserConfig) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (n, 4) as (cx, cy, w, h) in network-input pixels -> crop centres (n, 2), sides (n,)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return boxes[:, :2], np.maximum(boxes[:, 2:].max(1), 4.0) * cfg.refine_context


def source_crops(boxes: np.ndarray, index: np.ndarray, cfg: SceneParserConfig, *, batch: np.ndarray | None = None,
                 sources: list | None = None, input_hw: tuple[int, int] | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The second stage's input for boxes (n, 4) in network-input pixels of images `index`:
    crops (n, 3, r, r), and the crops' centres (n, 2) and sides (n,) in network-input pixels.
    From `batch` (the network input) or, with `sources` (one `pyramid` per image, level 0 of
    shape (3, H0, W0)) and `input_hw`, from the images at their own resolution."""
    centres, sides = crop_boxes(boxes, cfg)
    if sources is None:
        return sample_crops(batch, index, centres, sides, cfg.refine_size), centres, sides
    h, w = input_hw
    out = np.zeros((len(index), 3, cfg.refine_size, cfg.refine_size), np.float32)
    for k in np.unique(index):
        sel = np.nonzero(index == k)[0]
        levels = sources[int(k)]
        H0, W0 = levels[0].shape[-2:]
        scale = np.array([W0 / w, H0 / h])
        out[sel] = sample_pyramid_crops([lv[None] for lv in levels], np.zeros(len(sel), np.int64),
                                        centres[sel] * scale, sides[sel] * (W0 / w), cfg.refine_size)
    return out, centres, sides


def refine_grid(size: int) -> int:
    """Side of the second stage's final feature map for crops of `size` (two stride-2 3x3 convolutions, padding 1)."""
    return -(-(-(-size // 2)) // 2)


def crop_geometry(centres: np.ndarray, sides: np.ndarray, input_hw: tuple[int, int]) -> np.ndarray:
    """(n, 3) float32: log(side / W), cx / W, cy / H of crops in network-input pixels (the same
    in any pixels of the image: all three are scale-free)."""
    h, w = input_hw
    centres = np.asarray(centres, np.float64).reshape(-1, 2)
    return np.stack([np.log(np.maximum(np.asarray(sides, np.float64), 1e-6) / w), centres[:, 0] / w,
                     centres[:, 1] / h], 1).astype(np.float32)


def mirror_geometry(geometry):
    """`crop_geometry` of the mirrored crops (x centre -> 1 - x); numpy arrays or tensors."""
    g = geometry.clone() if hasattr(geometry, "clone") else geometry.copy()
    g[:, 1] = 1 - g[:, 1]
    return g


def n_attribute_logits(cfg: SceneParserConfig) -> int:
    return sum(len(v) for v in cfg.attributes.values())


def centre_weights(cfg: SceneParserConfig, boxes: np.ndarray, input_w: int) -> np.ndarray:
    """(n,) how far each box's centre moves from the dense head's to the crop net's:
    `cfg.refine_centre_by_side` at its longer side / `input_w` (boxes (n, 4) as (cx, cy, w, h)
    in network-input pixels), else `cfg.refine_centre_weight` for all."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if not cfg.refine_centre_by_side:
        return np.full(len(boxes), float(cfg.refine_centre_weight))
    knots = sorted(cfg.refine_centre_by_side)
    side = np.maximum(boxes[:, 2:].max(1), 1e-6) / float(input_w)
    return np.interp(np.log(side), [np.log(a) for a, _ in knots], [w for _, w in knots])


def crop_net_centres(cfg: SceneParserConfig, centres: np.ndarray, sides: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    """(n, 2) the centres the second stage reads from crops with centres (n, 2) and sides (n,):
    its outputs (n, K + 2) end with the offsets as fractions of the crop side."""
    K = n_attribute_logits(cfg)
    return centres + sides[:, None] * outputs[:, K:K + 2]


def zoomed(cfg: SceneParserConfig, boxes: np.ndarray, input_w: int) -> np.ndarray:
    """(n,) bool: the boxes (n, 4) in network-input pixels that get the second stage's tighter
    second crop (`refine_zoom_from`)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if not cfg.refine_zoom_from:
        return np.zeros(len(boxes), bool)
    return boxes[:, 2:].max(1) >= cfg.refine_zoom_from * input_w


def zoom_centres(cfg: SceneParserConfig, boxes: np.ndarray, index: np.ndarray, refine, *, batch: np.ndarray,
                 sources: list | None = None) -> np.ndarray:
    """(n, 2) the crop net's centres (network-input pixels) for boxes (n, 4) of images `index`
    from crops of `cfg.refine_zoom_context` x their longer side (`source_crops` otherwise)."""
    tight = replace(cfg, refine_context=cfg.refine_zoom_context)
    crops, centres, sides = source_crops(boxes, index, tight, batch=batch, sources=sources, input_hw=batch.shape[-2:])
    out = np.asarray(refine(crops, crop_geometry(centres, sides, batch.shape[-2:])), dtype=np.float32)
    return crop_net_centres(cfg, centres, sides, out)


def _second_stage(cfg: SceneParserConfig, boxes: np.ndarray, index: np.ndarray, refine, batch: np.ndarray,
                  sources: list | None) -> tuple[np.ndarray, np.ndarray | None]:
    """The second stage's outputs (n, K [+ 2]) for boxes (n, 4) of images `index`, and where
    centres move (`cfg.refine_centre` with a weight) its centres (n, 2), else None."""
    crops, centres, sides = source_crops(boxes, index, cfg, batch=batch, sources=sources, input_hw=batch.shape[-2:])
    logits = np.asarray(refine(crops, crop_geometry(centres, sides, batch.shape[-2:])), dtype=np.float32)
    if not (cfg.refine_centre and (cfg.refine_centre_weight or cfg.refine_centre_by_side)):
        return logits, None
    crop_centres = crop_net_centres(cfg, centres, sides, logits)
    zoom = zoomed(cfg, boxes, batch.shape[-1])
    if zoom.any():
        crop_centres[zoom] = (crop_centres[zoom] + zoom_centres(
            cfg, boxes[zoom], index[zoom], refine, batch=batch, sources=sources)) / 2
    return logits, crop_centres


def expected_box(cfg: SceneParserConfig, shape: np.ndarray, size: np.ndarray, centres: np.ndarray,
                 input_hw: tuple[int, int]) -> np.ndarray:
    """(n, 2) the width and height in network-input pixels that `cfg.refine_size_prior` expects
    of boxes centred at `centres` (n, 2) whose objects have the shapes and sizes of
    `cfg.attributes` with probabilities `shape`, `size` (values, n): the prior's boxes averaged
    over the shapes and sizes it knows; NaN where it knows none."""
    h, w = input_hw
    centres = np.asarray(centres, np.float64).reshape(-1, 2)
    n = len(centres)
    x = np.stack([np.ones(n), centres[:, 0] / w, centres[:, 1] / h], 1)     # (n, 3)
    want, mass = np.zeros((n, 2)), np.zeros(n)
    for a, sh in enumerate(cfg.attributes["shape"]):
        for b, sz in enumerate(cfg.attributes["size"]):
            coef = cfg.refine_size_prior.get(f"{sh}/{sz}")
            if coef is not None:
                p = np.asarray(shape[a], np.float64) * np.asarray(size[b], np.float64)
                want += p[:, None] * (x @ np.asarray(coef, np.float64).T) * w
                mass += p
    out = np.full((n, 2), np.nan)
    seen = mass > 0
    out[seen] = want[seen] / mass[seen, None]
    return out


def refine_detections(dets: list[dict], batch: np.ndarray, cfg: SceneParserConfig, refine, *,
                      sources: list | None = None, images: list[int] | None = None,
                      reread: list[bool] | None = None) -> None:
    """Mix the second stage's logits into each detection's attribute logits and (with
    `cfg.refine_centre`) move its centre, in place (`dets` from `detect` on the images of
    `batch`, the network input, `dets[k]` on image `images[k]` (default k); `sources`: see
    `source_crops`). With `cfg.refine_size_prior`, a box of `dets[k]` (where `reread[k]`,
    default all) far from the size its object should have gets its crop-net centre from a crop
    of that size instead (its attributes and its own size stay)."""
    images = range(len(dets)) if images is None else images
    index = np.concatenate([np.full(len(d["boxes"]), k) for k, d in zip(images, dets)]).astype(np.int64)
    if len(index) == 0:
        return
    boxes = np.concatenate([d["boxes"] for d in dets])
    logits, crop_centres = _second_stage(cfg, boxes, index, refine, batch, sources)
    weights = centre_weights(cfg, boxes, batch.shape[-1])
    mixed = mix_logits({cat: np.concatenate([d["logits"][cat] for d in dets], 1) for cat in cfg.attributes},
                       logits, cfg)
    if cfg.refine_size_prior and crop_centres is not None and {"shape", "size"} <= set(cfg.attributes):
        centres = boxes[:, :2] + weights[:, None] * (crop_centres - boxes[:, :2])  # the first reading's
        want = expected_box(cfg, _softmax0(mixed["shape"]), _softmax0(mixed["size"]), centres, batch.shape[-2:])
        with np.errstate(invalid="ignore"):
            ratio = boxes[:, 2:].max(1) / want.max(1)
            lo, hi = cfg.refine_size_band
            far = (ratio < lo) | (ratio > hi)  # NaN (no prior): neither
        if reread is not None:
            far &= np.concatenate([np.full(len(d["boxes"]), bool(r)) for d, r in zip(dets, reread)])
        again = np.nonzero(far)[0]
        if len(again):  # its centre only: attributes stay the first reading's
            sized = boxes[again].copy()
            sized[:, 2:] = want[again]
            crop_centres[again] = _second_stage(cfg, sized, index[again], refine, batch, sources)[1]
    start = 0
    for d in dets:
        n = len(d["boxes"])
        d["logits"] = {cat: m[:, start:start + n] for cat, m in mixed.items()}
        if crop_centres is not None and n:
            boxes_k = d["boxes"].copy()
            boxes_k[:, :2] += weights[start:start + n, None] * (crop_centres[start:start + n] - boxes_k[:, :2])
            d["boxes"] = boxes_k
        start += n


def mix_logits(dense: dict[str, np.ndarray], crop: np.ndarray, cfg: SceneParserConfig) -> dict[str, np.ndarray]:
    """dense: {category: (n_values, n)}; crop: (n, K) -> {category: mixed (n_values, n)}."""
    out, j = {}, 0
    for cat, values in cfg.attributes.items():
        a = float(cfg.refine_weight.get(cat, 0.0))
        c = crop[:, j:j + len(values)].T
        out[cat] = dense[cat] if a == 0 else (1 - a) * dense[cat] + a * c
        j += len(values)
    return out


def _max_pool3(x: np.ndarray) -> np.ndarray:
    """3x3 max pool, stride 1, padded with -inf: (h, w) -> (h, w)."""
    p = np.pad(x, 1, constant_values=-np.inf)
    return np.lib.stride_tricks.sliding_window_view(p, (3, 3)).max(axis=(-2, -1))


def _softmax0(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(0, keepdims=True))
    return e / e.sum(0, keepdims=True)


# the hysteresis settings the decoding tuners try, (low_threshold, low_iou): (0, None) is off
HYSTERESIS_GRID = ((0.0, None),) + tuple((lo, li) for lo in (0.15, 0.2, 0.25, 0.3) for li in (0.05, 0.1, 0.2))


def decoding_grid(thresholds, ious, low=HYSTERESIS_GRID, *, off_iou: float) -> list[dict]:
    """The decoding settings a tuner tries, in order: {score_threshold, nms_iou, low_threshold,
    low_iou} for each threshold, NMS IoU and hysteresis (`low`: (low_threshold, low_iou) pairs,
    (0, None) off, which keeps `off_iou`); a low threshold not under the threshold is skipped."""
    return [{"score_threshold": t, "nms_iou": iou, "low_threshold": lo, "low_iou": off_iou if li is None else li}
            for t in thresholds for iou in ious for lo, li in low if not (lo and lo >= t)]


def _peaks(maps: dict, cfg: SceneParserConfig, floor: float) -> dict:
    """The local maxima of sigmoid(heat) at or above `floor`, best first (at most
    `cfg.max_objects`): their boxes (n, 4) cx, cy, w, h in network-input pixels, scores (n,) and
    attribute logits {category: (n_values, n)}."""
    heat = 1 / (1 + np.exp(-maps["heat"][0]))                            # (h, w)
    peaks = (heat == _max_pool3(heat)) & (heat >= floor)
    ys, xs = np.nonzero(peaks)
    scores = heat[ys, xs]
    order = np.argsort(-scores, kind="stable")[:cfg.max_objects]
    ys, xs, scores = ys[order], xs[order], scores[order]
    off = maps["offset"][:, ys, xs]
    size = np.exp(np.clip(maps["box"][:, ys, xs], -4, 6))
    cx, cy = (xs + 0.5 + off[0]) * STRIDE, (ys + 0.5 + off[1]) * STRIDE
    return {"boxes": np.stack([cx, cy, size[0] * STRIDE, size[1] * STRIDE], 1).reshape(-1, 4), "scores": scores,
            "logits": {cat: maps[f"attr:{cat}"][:, ys, xs] for cat in cfg.attributes}, "grid": heat.shape}


def _corners(boxes: np.ndarray) -> np.ndarray:
    """(n, 4) cx, cy, w, h -> (n, 4) x1, y1, x2, y2."""
    return np.concatenate([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2], 1)


def _take(det: dict, keep: np.ndarray) -> dict:
    return {"boxes": det["boxes"][keep].reshape(-1, 4), "scores": det["scores"][keep],
            "logits": {cat: v[:, keep] for cat, v in det["logits"].items()}, "grid": det["grid"]}


def detect(maps: dict, cfg: SceneParserConfig) -> dict:
    """One image's maps (numpy arrays or CPU tensors, no batch axis: heat (1, h, w), ...) -> the
    kept detections in network-input pixels: {"boxes": (n, 4) cx, cy, w, h, "scores": (n,),
    "logits": {category: (n_values, n)}}, best first (peaks, then NMS)."""
    return detect_with_candidates(maps, cfg)[0]


def detect_with_candidates(maps: dict, cfg: SceneParserConfig, *, read: bool = True) -> tuple[dict, dict]:
    """`detect`, and the peaks from `cfg.read_threshold` up that it leaves out, in the same format
    and from the same pass over the maps: what `read_candidates` judges once the second stage has
    read them (none where `read` is false or `read_threshold` is 0)."""
    maps = {k: np.asarray(v, dtype=np.float32) for k, v in maps.items()}
    low = 0 < cfg.low_threshold < cfg.score_threshold
    floor = cfg.low_threshold if low else cfg.score_threshold
    reading = read and cfg.read_threshold > 0
    peaks = _peaks(maps, cfg, min(floor, cfg.read_threshold) if reading else floor)
    strong = np.nonzero(peaks["scores"] >= floor)[0]
    keep = strong[nms(_corners(peaks["boxes"][strong]), peaks["scores"][strong], cfg.nms_iou,
                      low_score=cfg.score_threshold if low else None, low_iou=cfg.low_iou if low else None,
                      low_ios=cfg.low_ios if low and cfg.low_ios < 1 else None)]
    left = np.setdiff1d(np.nonzero(peaks["scores"] >= cfg.read_threshold)[0], keep) if reading else np.zeros(0, np.int64)
    return _take(peaks, keep), _take(peaks, left)  # setdiff1d sorts the indices: best first, as the peaks


def read_candidates(det: dict, cand: dict, cfg: SceneParserConfig) -> dict:
    """`det` with the candidates (`detect_with_candidates`, both read by the second stage) it should
    have kept: a peak the decoding dropped (too weak, or overlapping a kept box) that lies on a
    kept box is a part of that box's object found again, unless it reads as another object. A candidate is kept when some kept box holds part of it and its
    most probable value of a `cfg.read_categories` category differs from that of the kept box
    holding the largest share of it, and no candidate kept before it overlaps it with IoU above
    `cfg.nms_iou`; best first. Candidates on no kept box stay out (faint isolated peaks: the
    hysteresis's business)."""
    n = len(cand["scores"])
    if n == 0 or len(det["scores"]) == 0:
        return det
    both = {"boxes": np.concatenate([det["boxes"], cand["boxes"]]),
            "scores": np.concatenate([det["scores"], cand["scores"]]),
            "logits": {cat: np.concatenate([det["logits"][cat], cand["logits"][cat]], 1) for cat in det["logits"]},
            "grid": det["grid"]}
    inter, area = pairwise(_corners(both["boxes"]))
    m = len(det["scores"])
    reading = {cat: both["logits"][cat].argmax(0) for cat in cfg.read_categories}
    added: list[int] = []
    for j in range(m, m + n):  # candidates, best first
        share = inter[j, :m] / max(float(area[j]), 1e-12)
        if share.max() <= 0:
            continue
        host = int(share.argmax())
        if all(reading[cat][j] == reading[cat][host] for cat in cfg.read_categories):
            continue
        union = area[j] + area[added] - inter[j, added]
        if added and (inter[j, added] / np.maximum(union, 1e-12)).max() > cfg.nms_iou:
            continue
        added.append(j)
    if not added:
        return det
    return _take(both, np.concatenate([np.arange(m), np.asarray(added)]))


def to_graph(det: dict, cfg: SceneParserConfig, *, image_size: tuple[int, int], image_id: str = "image") -> SceneGraph:
    """Detections (`detect`) -> SceneGraph in the pixels of an image of `image_size` (width, height)."""
    gh, gw = det["grid"]
    w0, h0 = image_size
    sx, sy = w0 / (gw * STRIDE), h0 / (gh * STRIDE)
    probs = {cat: _softmax0(det["logits"][cat]) for cat in cfg.attributes}
    objects = []
    for k, ((cx, cy, bw, bh), score) in enumerate(zip(det["boxes"].tolist(), det["scores"].tolist())):
        attrs = {cat: {v: float(p) for v, p in zip(values, probs[cat][:, k].tolist())}
                 for cat, values in cfg.attributes.items()}
        obj = SceneObject(id=str(k), name="object", score=float(score),
                          bbox=[(cx - bw / 2) * sx, (cy - bh / 2) * sy, bw * sx, bh * sy], attributes=attrs)
        obj.name = obj.value("shape") or "object"
        objects.append(obj)
    info = {"source": "scene_parser"}
    if cfg.objectness_midpoint is not None:
        info["objectness_midpoint"] = cfg.objectness_midpoint
    return with_positions(SceneGraph(image_id, int(w0), int(h0), objects, info=info),
                          cubes=cfg.cubes)


def decode(maps: dict, cfg: SceneParserConfig, *, image_size: tuple[int, int],
           image_id: str = "image") -> SceneGraph:
    """One image's maps (no batch axis) -> SceneGraph in the pixels of an image of `image_size`
    (width, height), without the second stage (`parse_images` runs it)."""
    return to_graph(detect(maps, cfg), cfg, image_size=image_size, image_id=image_id)


def with_positions(graph: SceneGraph, *, cubes: str = "synth") -> SceneGraph:
    """Fill each object's 3-D `position` from its pixel centre (CLEVR's camera, ground plane at
    the object's half height; a cube's is the size's radius with `cubes="clevr"`), the scene's
    `directions`, and CLEVR's relations."""
    from ..datasets.synth.camera import BASE_LOCATION, Camera
    from ..datasets.synth.geometry import SIZE_RADIUS
    from ..datasets.synth.geometry import half_extent as synth_half_extent

    def half_extent(shape, size):
        return SIZE_RADIUS[size] if cubes == "clevr" else synth_half_extent(shape, size)

    cam = Camera.at(BASE_LOCATION, width=graph.width, height=graph.height)
    positions = []
    for obj in graph.objects:
        shape, size = obj.value("shape"), obj.value("size")
        z = half_extent(shape, size) if shape in ("cube", "sphere", "cylinder") and size in ("small", "large") else 0.5
        obj.position = [round(float(v), 4) for v in back_project(cam, *obj.centre, z)]
        positions.append(obj.position)
    graph.directions = cam.directions()
    graph.relations = clevr_relations(positions, graph.directions)
    return graph


def back_project(cam, px: float, py: float, z: float) -> np.ndarray:
    """The world point at height `z` seen at pixel (px, py) by camera `cam`."""
    right, up, forward = cam.basis
    f = cam.focal_px
    d = (px - cam.width / 2) / f * right - (py - cam.height / 2) / f * up + forward
    loc = np.asarray(cam.location)
    if d[2] > -1e-6:  # ray above the horizon: clamp to a far point
        d = d.copy()
        d[2] = -1e-3
    return loc + (z - loc[2]) / d[2] * d


