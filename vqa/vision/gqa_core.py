"""The torch-free half of the GQA scene parser: config, letterboxing, object and pair
inputs of the heads, and decoding into a `SceneGraph`. Shared by the torch model
(`vqa.vision.gqa_scene_parser`) and the numpy runtime (`vqa.runtime.gqa_scene_parser`), so
both read an image the same way.

GQA images come in any size: each is letterboxed into the network input (`image_size`,
height x width): scaled by s = min(W / w0, H / h0) keeping its aspect, placed at the top
left, the rest gray. Boxes (GQA's x, y, w, h in the image's pixels) scale by s.

Per detected object (centre and box in network-input pixels) the heads read
    object input = [fused feature at the centre cell | mean fused feature over the box's
                    cells | box geometry (7)]                                  (2C + 7)
where the geometry is relative to the image content (the letterboxed image without the
padding): cx, cy, w, h, bottom, left, right, each divided by the content's width or height.
A pair (subject i, object j), i != j, reads [embedding_i | embedding_j | geometry_i |
geometry_j | geometry_i - geometry_j] (2E + 21).

Decoding: the dense maps give detections (`vqa.vision.core.detect`: heat peaks, NMS);
names are a softmax (the graph keeps the most probable name; `info["names"]` the top 3),
attributes independent sigmoids (kept when >= `attr_keep`, under the category
"attribute", as gold GQA graphs hold them), relations independent sigmoids per pair and
predicate (kept when >= `rel_keep`, at most `max_relations`, most probable first).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..scene import Relation, SceneGraph, SceneObject
from .core import MEAN, STD, STRIDE, SceneParserConfig, detect, load_image, to_rgb

GEOMETRY = 7  # numbers per box: cx, cy, w, h, bottom, left, right (over the content size)
PAD_VALUE = 128  # gray of the letterbox padding (uint8)
# the backbone's defaults for GQA: 4:3 input (the GQA-format world renders 320x240), no mirror
# averaging (a mirror swaps "to the left of" and "to the right of")
BACKBONE_DEFAULTS = {"image_size": (144, 192), "flip_tta": False, "attributes": {}}


@dataclass
class GQASceneParserConfig:
    """Shape of a GQA scene parser: the CLEVR scene parser's backbone (a `SceneParserConfig`
    as a dict, its attribute maps unused) and the heads' vocabularies and sizes."""

    names: list[str] = field(default_factory=list)
    attributes: list[str] = field(default_factory=list)
    relations: list[str] = field(default_factory=list)
    backbone: dict = field(default_factory=dict)   # SceneParserConfig overrides
    embed_dim: int = 128                            # object embedding E
    rel_hidden: int = 128                           # hidden width of the relation MLP
    attr_keep: float = 0.05                         # attributes below this probability are left out
    rel_keep: float = 0.1                           # relations below this probability are left out
    max_relations: int = 400                        # most probable relations kept per image

    def backbone_config(self) -> SceneParserConfig:
        d = {**BACKBONE_DEFAULTS, **self.backbone}
        d["image_size"], d["attributes"] = tuple(d["image_size"]), {}
        if "stem_channels" in d:
            d["stem_channels"] = tuple(d["stem_channels"])
        return SceneParserConfig(**d)

    @property
    def image_size(self) -> tuple[int, int]:
        return self.backbone_config().image_size

    @property
    def object_input(self) -> int:
        return 2 * self.backbone_config().head_channels + GEOMETRY

    def to_dict(self) -> dict:
        d = asdict(self)
        if "image_size" in d["backbone"]:
            d["backbone"]["image_size"] = list(d["backbone"]["image_size"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "GQASceneParserConfig":
        return cls(**d)


# ---- images ---------------------------------------------------------------------------------
def letterbox_scale(size_wh: tuple[int, int], hw: tuple[int, int]) -> float:
    """The scale s that fits an image of `size_wh` (w0, h0) into `hw` (H, W) keeping its aspect."""
    w0, h0 = size_wh
    if w0 < 1 or h0 < 1:
        raise DataError(f"empty image ({w0}x{h0})")
    H, W = hw
    return min(W / w0, H / h0)


def letterbox_uint8(im, hw: tuple[int, int]) -> tuple[np.ndarray, float]:
    """PIL RGB image -> (uint8 (3, H, W): resized keeping the aspect, top left, gray padding; s)."""
    from PIL import Image

    H, W = hw
    s = letterbox_scale(im.size, hw)
    w, h = min(W, max(1, round(im.size[0] * s))), min(H, max(1, round(im.size[1] * s)))
    if im.size != (w, h):
        im = im.resize((w, h), Image.BILINEAR)
    out = np.full((3, H, W), PAD_VALUE, dtype=np.uint8)
    out[:, :h, :w] = np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)
    return out, s


def normalise_uint8(a: np.ndarray) -> np.ndarray:
    return (a.astype(np.float32) / np.float32(255.0) - np.float32(MEAN)) / np.float32(STD)


# ---- heads' inputs --------------------------------------------------------------------------
def box_geometry(boxes: np.ndarray, content_wh: tuple[float, float]) -> np.ndarray:
    """Boxes (n, 4) cx, cy, w, h in network pixels -> (n, 7) over the content's size."""
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    cw, ch = (np.float32(max(v, 1e-6)) for v in content_wh)
    cx, cy, w, h = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    return np.stack([cx / cw, cy / ch, w / cw, h / ch, (cy + h / 2) / ch, (cx - w / 2) / cw, (cx + w / 2) / cw], 1)


def box_cells(boxes: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(n, 6) int64 per box: centre cell (i, j) and the cell ranges [i0, i1) x [j0, j1) whose
    cells the box covers (at least one cell)."""
    gh, gw = grid
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    i = np.clip(np.floor(b[:, 1] / STRIDE), 0, gh - 1)
    j = np.clip(np.floor(b[:, 0] / STRIDE), 0, gw - 1)
    i0 = np.clip(np.floor((b[:, 1] - b[:, 3] / 2) / STRIDE), 0, gh - 1)
    j0 = np.clip(np.floor((b[:, 0] - b[:, 2] / 2) / STRIDE), 0, gw - 1)
    i1 = np.clip(np.maximum(i0 + 1, np.ceil((b[:, 1] + b[:, 3] / 2) / STRIDE)), 1, gh)
    j1 = np.clip(np.maximum(j0 + 1, np.ceil((b[:, 0] + b[:, 2] / 2) / STRIDE)), 1, gw)
    return np.stack([i, j, i0, i1, j0, j1], 1).astype(np.int64)


def object_inputs(fused: np.ndarray, boxes: np.ndarray, content_wh) -> np.ndarray:
    """One image's fused features (h, w, C) channels last and its boxes (n, 4) -> (n, 2C + 7)."""
    gh, gw, C = fused.shape
    cells = box_cells(boxes, (gh, gw))
    integral = np.zeros((gh + 1, gw + 1, C), np.float64)
    integral[1:, 1:] = fused.astype(np.float64).cumsum(0).cumsum(1)
    i, j, i0, i1, j0, j1 = cells.T
    total = integral[i1, j1] - integral[i0, j1] - integral[i1, j0] + integral[i0, j0]
    mean = total / ((i1 - i0) * (j1 - j0))[:, None]
    return np.concatenate([fused[i, j].astype(np.float32), mean.astype(np.float32),
                           box_geometry(boxes, content_wh)], 1)


def pair_index(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Subjects and objects of the ordered pairs i != j of n objects (row-major)."""
    s, o = np.nonzero(~np.eye(n, dtype=bool))
    return s, o


def pair_inputs(emb: np.ndarray, geom: np.ndarray) -> np.ndarray:
    """Embeddings (n, E) and geometry (n, 7) -> (n(n-1), 2E + 21), pairs as `pair_index`."""
    s, o = pair_index(len(emb))
    return np.concatenate([emb[s], emb[o], geom[s], geom[o], geom[s] - geom[o]], 1)


# ---- decoding -------------------------------------------------------------------------------
def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-np.clip(x, -60, 60)))


def _softmax1(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def to_gqa_graph(det: dict, heads: dict, cfg: GQASceneParserConfig, *, scale: float,
                 image_size: tuple[int, int], image_id: str = "image") -> SceneGraph:
    """Detections (`detect`, network pixels) and the heads' logits {"names" (n, N), "attributes"
    (n, A), "relations" (n(n-1), R)} -> SceneGraph in the pixels of an image of `image_size`."""
    boxes, scores = det["boxes"], det["scores"]
    n = len(boxes)
    names = _softmax1(heads["names"]) if n else np.zeros((0, len(cfg.names)))
    attrs = _sigmoid(heads["attributes"]) if n else np.zeros((0, len(cfg.attributes)))
    objects = []
    for k in range(n):
        cx, cy, bw, bh = (float(v) / scale for v in boxes[k])
        top = np.argsort(-names[k], kind="stable")[:3]
        keep = np.nonzero(attrs[k] >= cfg.attr_keep)[0]
        keep = keep[np.argsort(-attrs[k][keep], kind="stable")]
        objects.append(SceneObject(id=str(k), name=cfg.names[int(top[0])], score=float(scores[k]),
                                   bbox=[cx - bw / 2, cy - bh / 2, bw, bh],
                                   attributes={"attribute": {cfg.attributes[a]: float(attrs[k][a]) for a in keep}}))
    relations = []
    if n > 1 and cfg.relations:
        s, o = pair_index(n)
        p = _sigmoid(heads["relations"])                                 # (n(n-1), R)
        pi, ri = np.nonzero(p >= cfg.rel_keep)
        order = np.argsort(-p[pi, ri], kind="stable")[:cfg.max_relations]
        relations = [Relation(str(s[pi[m]]), cfg.relations[ri[m]], str(o[pi[m]]), float(p[pi[m], ri[m]]))
                     for m in order]
    info = {"source": "gqa_scene_parser",
            "names": [{cfg.names[int(t)]: round(float(names[k][t]), 4) for t in np.argsort(-names[k])[:3]}
                      for k in range(n)]}
    w0, h0 = image_size
    return SceneGraph(image_id, int(w0), int(h0), objects, relations, None, info)


def parse_gqa_images(images: list, cfg: GQASceneParserConfig, features, heads, *,
                     image_ids: list[str] | None = None) -> list[SceneGraph]:
    """PIL images or paths -> SceneGraphs. `features`: normalised float32 (B, 3, H, W) ->
    (dense maps {name: (B, K, h, w)}, fused features (B, h, w, C) channels last), numpy;
    `heads`: (fused (h, w, C), boxes (n, 4), content (w, h)) of one image -> logits dict."""
    bcfg = cfg.backbone_config()
    pils = [load_image(im) if isinstance(im, (str, Path)) else to_rgb(im) for im in images]
    ids = image_ids or [Path(im).stem if isinstance(im, (str, Path)) else f"image_{i}" for i, im in enumerate(images)]
    boxed = [letterbox_uint8(im, bcfg.image_size) for im in pils]
    batch = normalise_uint8(np.stack([a for a, _ in boxed]))
    maps, fused = features(batch)
    out = []
    for k, im in enumerate(pils):
        det = detect({name: m[k] for name, m in maps.items()}, bcfg)
        s = boxed[k][1]
        logits = heads(fused[k], det["boxes"], (im.size[0] * s, im.size[1] * s))
        out.append(to_gqa_graph(det, logits, cfg, scale=s, image_size=im.size, image_id=ids[k]))
    return out



def reasoning_view(scene: SceneGraph, certain: float = 0.95) -> SceneGraph:
    """The graph the reasoners answer on: every detected object exists (its `score` is the
    detector's peak height, a ranking, not a probability; detection already kept or dropped
    it), attributes and relations with probability >= `certain` become facts (1.0) and those
    below 1 - `certain` are left out; the rest stay uncertain, for the ASP theory to weigh.
    Without this, ASP optimises over every fact of the graph (a hundred or more choices per
    image) and takes minutes per image; the raw graph is what the metrics score.
    Names likewise: an object whose top name (`info["names"]`, the parser's three best)
    has probability < `certain` gets its names with probability >= 1 - `certain` as
    readings (`info["name_readings"]`, {object id: {name: p}}), one of which the ASP
    theory chooses per question (`unc_name`)."""
    readings = {}
    for o, top in zip(scene.objects, scene.info.get("names") or ()):
        if top and max(top.values()) < certain:
            kept = {n: p for n, p in top.items() if p >= 1 - certain}
            if len(kept) > 1:
                readings[o.id] = kept
    objects = []
    for o in scene.objects:
        attrs = {cat: {v: (1.0 if p >= certain else p) for v, p in dist.items() if p >= 1 - certain}
                 for cat, dist in o.attributes.items()}
        objects.append(SceneObject(o.id, o.name, list(o.bbox), attrs, 1.0, o.position))
    relations = [Relation(r.subject, r.predicate, r.object, 1.0 if r.probability >= certain else r.probability)
                 for r in scene.relations if r.probability >= 1 - certain]
    info = {**scene.info, "reasoning_view": certain}
    if readings:
        info["name_readings"] = readings
    return SceneGraph(scene.image_id, scene.width, scene.height, objects, relations, scene.directions, info)
