"""The GQA scene parser: image -> probabilistic `SceneGraph` with GQA names, attributes and
relations.

    parser = load_gqa_scene_parser()                      # data/checkpoints/gqa_scene_parser.pt
    graph = parser.parse_image("gqa_sample.png")          # SceneGraph

Architecture: the CLEVR scene parser's network (`vqa.vision.scene_parser.SceneParser`: conv
stem, the ViT of `vqa.nn` with any attention variant, per-cell fusion) as the backbone; its
dense head gives objectness, centre offset and box size per 4x4-pixel cell (detection as
for CLEVR, `vqa.vision.core.detect`). Per detected object (or, in training, per gold box):

    object input (2C + 7)     -> MLP -> embedding e (E)            (`vqa.vision.gqa_core`)
    e -> names (N) softmax;  e -> attributes (A) independent sigmoids
    pair (i, j), i != j: [e_i | e_j | geometry] (2E + 21) -> MLP -> relations (R) sigmoids

The heads are per object and per pair, never per cell, so real GQA's vocabularies
(~1,700 names, ~600 attributes, ~300 relations) cost memory in proportion to the objects.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import DataError, VQAError
from ..scene import SceneGraph
from .gqa_core import GEOMETRY, GQASceneParserConfig, parse_gqa_images
from .scene_parser import STRIDE, SceneParser

DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[2] / "data" / "checkpoints" / "gqa_scene_parser.pt"
CHECKPOINT_FORMAT = "vqa.gqa_scene_parser/1"


def box_geometry_t(boxes: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """As `gqa_core.box_geometry`: boxes (n, 4) cx, cy, w, h; content (2,) w, h -> (n, 7)."""
    cw, ch = content[0], content[1]
    cx, cy, w, h = boxes.unbind(1)
    return torch.stack([cx / cw, cy / ch, w / cw, h / ch, (cy + h / 2) / ch, (cx - w / 2) / cw, (cx + w / 2) / cw], 1)


def object_inputs_t(fused: torch.Tensor, boxes: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """As `gqa_core.object_inputs` (differentiable): fused (C, h, w) channels first, boxes
    (n, 4) -> (n, 2C + 7)."""
    C, gh, gw = fused.shape
    b = boxes.detach().double()
    i = (b[:, 1] / STRIDE).floor().clamp(0, gh - 1).long()
    j = (b[:, 0] / STRIDE).floor().clamp(0, gw - 1).long()
    i0 = ((b[:, 1] - b[:, 3] / 2) / STRIDE).floor().clamp(0, gh - 1)
    j0 = ((b[:, 0] - b[:, 2] / 2) / STRIDE).floor().clamp(0, gw - 1)
    i1 = torch.maximum(i0 + 1, ((b[:, 1] + b[:, 3] / 2) / STRIDE).ceil()).clamp(1, gh).long()
    j1 = torch.maximum(j0 + 1, ((b[:, 0] + b[:, 2] / 2) / STRIDE).ceil()).clamp(1, gw).long()
    i0, j0 = i0.long(), j0.long()
    f = fused.float()
    integral = torch.nn.functional.pad(f.cumsum(1).cumsum(2), (1, 0, 1, 0))   # (C, h+1, w+1)
    total = integral[:, i1, j1] - integral[:, i0, j1] - integral[:, i1, j0] + integral[:, i0, j0]  # (C, n)
    mean = (total / ((i1 - i0) * (j1 - j0)).to(f.dtype)).T
    return torch.cat([f[:, i, j].T, mean, box_geometry_t(boxes.float(), content)], 1)


def pair_inputs_t(emb: torch.Tensor, geom: torch.Tensor) -> torch.Tensor:
    """As `gqa_core.pair_inputs`: (n, E), (n, 7) -> (n(n-1), 2E + 21)."""
    n = emb.shape[0]
    s, o = (~torch.eye(n, dtype=torch.bool, device=emb.device)).nonzero(as_tuple=True)
    return torch.cat([emb[s], emb[o], geom[s], geom[o], geom[s] - geom[o]], 1)


class GQAHeads(nn.Module):
    """Object inputs (n, 2C + 7) -> {"names" (n, N), "attributes" (n, A), "relations" (n(n-1), R)}."""

    def __init__(self, cfg: GQASceneParserConfig):
        super().__init__()
        E, R = cfg.embed_dim, cfg.rel_hidden
        self.embed = nn.Sequential(nn.Linear(cfg.object_input, E), nn.GELU(), nn.Linear(E, E), nn.GELU())
        self.names = nn.Linear(E, max(1, len(cfg.names)))
        self.attributes = nn.Linear(E, max(1, len(cfg.attributes)))
        self.relations = nn.Sequential(nn.Linear(2 * E + 3 * GEOMETRY, R), nn.GELU(), nn.Linear(R, R), nn.GELU(),
                                       nn.Linear(R, max(1, len(cfg.relations))))

    def forward(self, obj_in: torch.Tensor) -> dict[str, torch.Tensor]:
        e = self.embed(obj_in)
        geom = obj_in[:, -GEOMETRY:]
        return {"names": self.names(e), "attributes": self.attributes(e),
                "relations": self.relations(pair_inputs_t(e, geom))}


class GQASceneParser(nn.Module):
    """forward(images (B, 3, H, W)) -> (dense maps as `SceneParser.forward`, fused (B, C, h, w));
    `heads(fused[k], boxes, content)` -> the logits of one image's objects and pairs."""

    def __init__(self, cfg: GQASceneParserConfig):
        super().__init__()
        self.cfg = cfg
        self.backbone = SceneParser(cfg.backbone_config())
        self.head = GQAHeads(cfg)

    def forward(self, images: torch.Tensor, boxes: list[torch.Tensor] | None = None,
                contents: torch.Tensor | None = None):
        """Without `boxes`: (dense maps, fused features). With per-image boxes (n_k, 4) and
        contents (B, 2): also the heads' logits of all images' objects and pairs,
        concatenated image after image (training runs everything through one call, as DDP needs)."""
        fused = self.backbone.cell_features(images)
        maps = self.backbone.dense_maps(fused)
        if boxes is None:
            return maps, fused
        obj_in = [object_inputs_t(fused[k], b, contents[k]) for k, b in enumerate(boxes)]
        e = self.head.embed(torch.cat(obj_in))
        pairs, start = [], 0
        for x in obj_in:
            ek = e[start:start + len(x)]
            pairs.append(pair_inputs_t(ek, x[:, -GEOMETRY:]))
            start += len(x)
        return maps, {"names": self.head.names(e), "attributes": self.head.attributes(e),
                      "relations": self.head.relations(torch.cat(pairs))}

    def resize_input(self, image_size: tuple[int, int]) -> "GQASceneParser":
        """The backbone's `SceneParser.resize_input` (height, width), recorded in the config."""
        self.backbone.resize_input(image_size)
        self.cfg.backbone["image_size"] = tuple(self.backbone.cfg.image_size)
        return self

    def heads(self, fused: torch.Tensor, boxes: torch.Tensor, content: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.head(object_inputs_t(fused, boxes, content))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.no_grad()
    def parse_images(self, images: list, *, image_ids: list[str] | None = None) -> list[SceneGraph]:
        """PIL images or paths -> one SceneGraph each (coordinates in each image's own pixels)."""
        self.eval()

        def features(batch):
            maps, fused = self(torch.from_numpy(batch).to(self.device))
            return ({k: m.float().cpu().numpy() for k, m in maps.items()},
                    fused.float().permute(0, 2, 3, 1).cpu().numpy())

        def heads(fused, boxes, content):
            f = torch.from_numpy(np.ascontiguousarray(fused.transpose(2, 0, 1))).to(self.device)
            out = self.heads(f, torch.from_numpy(np.asarray(boxes, np.float32)).to(self.device),
                             torch.tensor(content, dtype=torch.float32, device=self.device))
            return {k: v.float().cpu().numpy() for k, v in out.items()}

        out = []
        for k in range(0, len(images), 16):  # bounded memory for long lists
            ids = None if image_ids is None else image_ids[k:k + 16]
            out += parse_gqa_images(images[k:k + 16], self.cfg, features, heads, image_ids=ids)
        return out

    def parse_image(self, image, image_id: str | None = None) -> SceneGraph:
        return self.parse_images([image], image_ids=None if image_id is None else [image_id])[0]


# ---- checkpoints ---------------------------------------------------------------------------
def checkpoint_dict(model: GQASceneParser, **extra) -> dict:
    m = model.module if hasattr(model, "module") else model
    return {"format": CHECKPOINT_FORMAT, "config": m.cfg.to_dict(),
            "state_dict": {k: v.detach().cpu() for k, v in m.state_dict().items()}, **extra}


def model_from_checkpoint(ckpt: dict, *, file=None) -> GQASceneParser:
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise DataError(f"not a GQA scene-parser checkpoint (expected format {CHECKPOINT_FORMAT!r})", file=file)
    model = GQASceneParser(GQASceneParserConfig.from_dict(ckpt["config"]))
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()


def load_gqa_scene_parser(path: str | Path | None = None, *, device: str | torch.device = "cpu") -> GQASceneParser:
    """Rebuild a GQA scene parser from a checkpoint file (default: the shipped one)."""
    path = Path(path) if path is not None else DEFAULT_CHECKPOINT
    if not path.is_file():
        raise VQAError(f"{path}: no such checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 (any unpickling failure means a bad file)
        raise DataError(f"cannot read checkpoint ({type(e).__name__}: {e})", file=path) from None
    return model_from_checkpoint(ckpt, file=path).to(device)
