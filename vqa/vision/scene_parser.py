"""The scene parser: image -> probabilistic `SceneGraph`.

Architecture (a hybrid ViT, as in the original ViT paper's "hybrid" models):

    image (B, 3, H, W)
      -> conv stem: two 3x3 stride-2 convolutions, then `stem_extra` residual 3x3
         convolutions at stride 4 (local shape detail for small objects) -> features (B, C, H/4, W/4)
      -> ViT of `vqa.nn` (any attention variant) on 4x4 patches of the stem features
         (an effective 16x16-pixel patch)                   -> tokens (B, H/16 * W/16, D)
      -> head: each token -> a 4x4 block of cells (pixel shuffle), concatenated with the
         stem features, a `fuse_kernel` conv (1x1 by default), one 1x1 conv          -> per cell of 4x4 pixels:
             heat (1): objectness logit, peaked at the cell holding an object's centre
             offset (2): sub-cell position of the centre (cells)
             size (2): log of box width, height (cells)
             attributes: logits per category (color 8, size 2, material 2, shape 3)

Parsing with `flip_tta` (the default) averages the logits of the image and of its mirror image
(mapped back) before decoding: twice the compute, fewer shape errors and missed objects.
Decoding: local maxima of sigmoid(heat) above `score_threshold` (3x3 max pool), greedy box NMS
(`vqa.vision.nms`, the rule of `torchvision.ops.nms`), attribute distributions = softmax, `score` = objectness.
Positions: the predicted pixel centre is cast back through CLEVR's camera (35 mm lens,
32 mm sensor, un-jittered location) onto the horizontal plane at the object's half
height (from its predicted shape and size); relations then follow CLEVR's rule
(`vqa.scene.clevr_relations`) with the camera's `directions`.

    parser = load_scene_parser("data/checkpoints/scene_parser.pt")
    graph = parser.parse_image("CLEVR_val_000000.png")      # SceneGraph
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DataError, VQAError
from ..nn.vit import ViT, ViTConfig
from ..ontology import CLEVR_ATTRIBUTES
from ..scene import SceneGraph, SceneObject, clevr_relations

DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[2] / "data" / "checkpoints" / "scene_parser.pt"
CHECKPOINT_FORMAT = "vqa.scene_parser/1"
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
    max_objects: int = 24
    flip_tta: bool = True          # parsing averages the maps of the image and of its mirror image
    attributes: dict[str, list[str]] = field(default_factory=lambda: {k: list(v) for k, v in CLEVR_ATTRIBUTES.items()})

    @property
    def block(self) -> int:
        """Pixels per ViT token side."""
        return STRIDE * self.patch_size

    def vit_config(self) -> ViTConfig:
        h, w = self.image_size
        return ViTConfig(image_size=(h // STRIDE, w // STRIDE), patch_size=self.patch_size,
                         in_chans=self.stem_channels[-1], dim=self.dim, depth=self.depth, n_heads=self.n_heads,
                         attn_variant=self.attn_variant, n_q_heads=self.n_q_heads, n_kv_heads=self.n_kv_heads,
                         mlp_ratio=self.mlp_ratio, class_token=False, pool="none")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["image_size"], d["stem_channels"] = list(self.image_size), list(self.stem_channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SceneParserConfig":
        d = dict(d)
        d["image_size"] = tuple(d["image_size"])
        d["stem_channels"] = tuple(d["stem_channels"])
        d.setdefault("stem_extra", 0)  # checkpoints written before the options existed
        d.setdefault("flip_tta", False)
        return cls(**d)


def _conv_bn(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.GELU())


class _Residual(nn.Module):
    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class SceneParser(nn.Module):
    """forward: images (B, 3, H, W) normalised -> dict of dense maps on the (H/4, W/4) cell grid:
    "heat" (B, 1, h, w) logits, "offset" (B, 2, h, w), "box" (B, 2, h, w) (log w, h in cells)
    and "attr:<category>" (B, n_values, h, w) logits per attribute category. H, W: multiples of 16."""

    def __init__(self, cfg: SceneParserConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or SceneParserConfig()
        h, w = cfg.image_size
        if h % cfg.block or w % cfg.block:
            raise ValueError(f"image_size={cfg.image_size} must be a multiple of {cfg.block}")
        c1, c2 = cfg.stem_channels
        self.stem = nn.Sequential(_conv_bn(3, c1, 2), _conv_bn(c1, c2, 2),
                                  *[_Residual(_conv_bn(c2, c2, 1)) for _ in range(cfg.stem_extra)])
        self.vit = ViT(cfg.vit_config())
        self.up = nn.Linear(cfg.dim, cfg.patch_size ** 2 * cfg.up_channels)
        self.fuse = nn.Sequential(nn.Conv2d(cfg.up_channels + c2, cfg.head_channels, cfg.fuse_kernel, 1, cfg.fuse_kernel // 2), nn.GELU())
        self.n_values = [len(v) for v in cfg.attributes.values()]
        self.out = nn.Conv2d(cfg.head_channels, 5 + sum(self.n_values), 1)
        with torch.no_grad():
            self.out.bias.zero_()
            self.out.bias[0] = -2.19  # objectness prior 0.1 (CenterNet)
        self.to(memory_format=torch.channels_last)  # faster convolutions on CPU (oneDNN)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        B, _, H, W = images.shape
        p, blk = self.cfg.patch_size, self.cfg.block
        if H % blk or W % blk:
            raise ValueError(f"image {H}x{W} is not a multiple of {blk} pixels")
        feats = self.stem(images.contiguous(memory_format=torch.channels_last))  # (B, C, H/4, W/4)
        tokens = self.vit.forward_features(feats)                     # (B, H/16 * W/16, D)
        gh, gw = H // blk, W // blk
        up = self.up(tokens).reshape(B, gh, gw, p, p, -1)             # (B, gh, gw, p, p, Cu)
        up = up.permute(0, 5, 1, 3, 2, 4).reshape(B, -1, gh * p, gw * p)  # (B, Cu, H/4, W/4)
        x = self.out(self.fuse(torch.cat([up, feats.to(up.dtype)], dim=1))).float()  # (B, K, H/4, W/4)
        # one split (its backward is a single concatenation), not one slice per map (each slice's
        # backward fills a full-size zero gradient)
        parts = torch.split(x, [1, 2, 2, *self.n_values], dim=1)
        out = {"heat": parts[0], "offset": parts[1], "box": parts[2]}
        for cat, part in zip(self.cfg.attributes, parts[3:]):
            out[f"attr:{cat}"] = part
        return out

    # ---- inference -----------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.no_grad()
    def predict_maps(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Maps for parsing: `forward`, or with `cfg.flip_tta` the mean of the logits of the
        images and of their mirror images mapped back (cells mirrored, x offset negated)."""
        maps = self(images)
        if not self.cfg.flip_tta:
            return maps
        mirror = self(images.flip(-1))
        out = {}
        for name, m in maps.items():
            back = mirror[name].flip(-1)
            if name == "offset":
                back = torch.cat([-back[:, :1], back[:, 1:]], dim=1)
            out[name] = (m + back) / 2
        return out

    @torch.no_grad()
    def parse_images(self, images: list, *, image_ids: list[str] | None = None) -> list[SceneGraph]:
        """PIL images or paths -> one SceneGraph each (coordinates in each image's own pixels)."""
        self.eval()
        pils = [load_image(im) if isinstance(im, (str, Path)) else to_rgb(im) for im in images]
        ids = image_ids or [Path(im).stem if isinstance(im, (str, Path)) else f"image_{i}"
                            for i, im in enumerate(images)]
        graphs = []
        groups: dict[tuple[int, int], list[int]] = {}
        for i, im in enumerate(pils):
            groups.setdefault(input_size(im.size, self.cfg), []).append(i)
        out: dict[int, SceneGraph] = {}
        for (h, w), idx in groups.items():
            batch = torch.stack([image_tensor(pils[i], (h, w)) for i in idx]).to(self.device)
            maps = self.predict_maps(batch)
            for k, i in enumerate(idx):
                one = {name: m[k] for name, m in maps.items()}
                out[i] = decode(one, self.cfg, image_size=pils[i].size, image_id=ids[i])
        graphs = [out[i] for i in range(len(pils))]
        return graphs

    def parse_image(self, image, image_id: str | None = None) -> SceneGraph:
        """One PIL image or path -> SceneGraph."""
        return self.parse_images([image], image_ids=None if image_id is None else [image_id])[0]


# ---- images -------------------------------------------------------------------------------
def load_image(path: str | Path):
    """Open an image file as RGB (grayscale, palette and RGBA are converted; transparency is
    composited over CLEVR's mid-gray). Raises DataError naming the file when it is not an image."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            return to_rgb(im)
    except FileNotFoundError:
        raise DataError("no such file", file=path) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"not a readable image ({type(e).__name__}: {e}); expected PNG/JPEG/...", file=path) from None


def to_rgb(im):
    """Any PIL image -> RGB; alpha composited over gray (128)."""
    from PIL import Image

    if im.mode == "RGB":
        return im
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (128, 128, 128, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    if im.mode in ("I", "I;16", "F"):
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
    return h, W


def image_tensor(im, hw: tuple[int, int]) -> torch.Tensor:
    """PIL RGB -> normalised float tensor (3, h, w), resized when needed."""
    from PIL import Image

    h, w = hw
    if im.size != (w, h):
        im = im.resize((w, h), Image.BILINEAR)
    a = torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1)
    return normalise(a)


def normalise(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 (..., 3, H, W) -> float normalised."""
    return (images_uint8.float() / 255.0 - MEAN) / STD


# ---- decoding ------------------------------------------------------------------------------
def decode(maps: dict[str, torch.Tensor], cfg: SceneParserConfig, *, image_size: tuple[int, int],
           image_id: str = "image") -> SceneGraph:
    """One image's maps (no batch axis: heat (1, h, w), ...) -> SceneGraph in the pixels of an
    image of `image_size` (width, height)."""
    from .nms import nms

    heat = torch.sigmoid(maps["heat"][0].float())                       # (h, w)
    gh, gw = heat.shape
    peaks = (heat == F.max_pool2d(heat[None, None], 3, 1, 1)[0, 0]) & (heat >= cfg.score_threshold)
    ys, xs = torch.nonzero(peaks, as_tuple=True)
    scores = heat[ys, xs]
    order = torch.argsort(scores, descending=True)[:cfg.max_objects]
    ys, xs, scores = ys[order], xs[order], scores[order]
    w0, h0 = image_size
    sx, sy = w0 / (gw * STRIDE), h0 / (gh * STRIDE)
    off = maps["offset"][:, ys, xs].float()
    size = maps["box"][:, ys, xs].float().clamp(-4, 6).exp()
    cx = (xs.float() + 0.5 + off[0]) * STRIDE * sx
    cy = (ys.float() + 0.5 + off[1]) * STRIDE * sy
    bw, bh = size[0] * STRIDE * sx, size[1] * STRIDE * sy
    boxes = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)
    keep = nms(boxes, scores, cfg.nms_iou) if len(scores) else torch.zeros(0, dtype=torch.long)
    probs = {cat: torch.softmax(maps[f"attr:{cat}"][:, ys, xs].float(), 0) for cat in cfg.attributes}
    objects = []
    for n, k in enumerate(keep.tolist()):
        attrs = {cat: {v: float(p) for v, p in zip(values, probs[cat][:, k].tolist())}
                 for cat, values in cfg.attributes.items()}
        obj = SceneObject(id=str(n), name="object", score=float(scores[k]),
                          bbox=[float(cx[k] - bw[k] / 2), float(cy[k] - bh[k] / 2), float(bw[k]), float(bh[k])],
                          attributes=attrs)
        obj.name = obj.value("shape") or "object"
        objects.append(obj)
    return with_positions(SceneGraph(image_id, int(w0), int(h0), objects, info={"source": "scene_parser"}))


def with_positions(graph: SceneGraph) -> SceneGraph:
    """Fill each object's 3-D `position` from its pixel centre (CLEVR's camera, ground plane at
    the object's half height), the scene's `directions`, and CLEVR's relations."""
    from ..datasets.synth.camera import BASE_LOCATION, Camera
    from ..datasets.synth.geometry import half_extent

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


# ---- checkpoints ---------------------------------------------------------------------------
def checkpoint_dict(model: SceneParser, **extra) -> dict:
    """{"format", "config", "vocab", "state_dict", ...extra}: the model rebuilt from this alone."""
    m = model.module if hasattr(model, "module") else model
    return {"format": CHECKPOINT_FORMAT, "config": m.cfg.to_dict(), "vocab": dict(m.cfg.attributes),
            "state_dict": {k: v.detach().cpu() for k, v in m.state_dict().items()}, **extra}


def model_from_checkpoint(ckpt: dict, *, file=None) -> SceneParser:
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise DataError(f"not a scene-parser checkpoint (expected format {CHECKPOINT_FORMAT!r})", file=file)
    model = SceneParser(SceneParserConfig.from_dict(ckpt["config"]))
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()


def load_scene_parser(path: str | Path | None = None, *, device: str | torch.device = "cpu") -> SceneParser:
    """Rebuild a scene parser from a checkpoint file (default: the shipped one)."""
    path = Path(path) if path is not None else DEFAULT_CHECKPOINT
    if not path.is_file():
        hint = " (the shipped model: data/checkpoints/scene_parser.pt)" if path == DEFAULT_CHECKPOINT else ""
        raise VQAError(f"{path}: no such checkpoint{hint}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 (any unpickling failure means a bad file)
        raise DataError(f"cannot read checkpoint ({type(e).__name__}: {e})", file=path) from None
    return model_from_checkpoint(ckpt, file=path).to(device)
