"""The GQA scene parser in numpy: the same SceneGraphs as
`vqa.vision.gqa_scene_parser.GQASceneParser` in eval mode, from an exported `.npz`
(`vqa export-numpy data/checkpoints/gqa_scene_parser.pt`), without importing torch.

    parser = NumpyGQASceneParser.load("data/checkpoints/gqa_scene_parser.npz")
    graph = parser.parse_image("gqa_sample.png")

The backbone is `NumpySceneParser` on the `backbone.*` arrays; the heads are the MLPs of
`GQAHeads` on `gqa_core`'s object and pair inputs.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from ..scene import SceneGraph
from ..vision.gqa_core import GEOMETRY, GQASceneParserConfig, object_inputs, pair_inputs, parse_gqa_images
from . import ops
from .checkpoints import load_npz
from .scene_parser import NumpySceneParser

GQA_SCENE_FORMAT = "vqa.gqa_scene_parser/1"


class NumpyGQASceneParser:
    def __init__(self, arrays: dict[str, np.ndarray], cfg: GQASceneParserConfig):
        self.cfg = cfg
        self.backbone = NumpySceneParser({k[len("backbone."):]: v for k, v in arrays.items()
                                          if k.startswith("backbone.")}, cfg.backbone_config())
        self.w = {k[len("head."):]: v.astype(np.float32) for k, v in arrays.items() if k.startswith("head.")}

    @classmethod
    def load(cls, path: str | Path) -> "NumpyGQASceneParser":
        arrays, meta = load_npz(path)
        if meta.get("format") != GQA_SCENE_FORMAT:
            raise DataError(f"not a GQA scene-parser checkpoint (format {meta.get('format')!r}, "
                            f"expected {GQA_SCENE_FORMAT!r})", file=path)
        return cls(arrays, GQASceneParserConfig.from_dict(meta["config"]))

    def _mlp(self, x: np.ndarray, prefix: str, layers: tuple[int, ...], last_gelu: bool) -> np.ndarray:
        for n, k in enumerate(layers):
            x = ops.linear(x, self.w[f"{prefix}.{k}.weight"], self.w[f"{prefix}.{k}.bias"])
            if n < len(layers) - 1 or last_gelu:
                x = ops.gelu(x)
        return x

    def features(self, batch: np.ndarray):
        """Normalised (B, 3, H, W) -> (dense maps, fused features (B, h, w, C))."""
        fused = self.backbone.cell_features(batch)
        return self.backbone.dense_maps(fused), fused

    def heads(self, fused: np.ndarray, boxes: np.ndarray, content) -> dict[str, np.ndarray]:
        """One image's fused features (h, w, C) and boxes (n, 4) -> the logits of `GQAHeads`."""
        x = object_inputs(fused, boxes, content)
        e = self._mlp(x, "embed", (0, 2), last_gelu=True)
        out = {"names": ops.linear(e, self.w["names.weight"], self.w["names.bias"]),
               "attributes": ops.linear(e, self.w["attributes.weight"], self.w["attributes.bias"])}
        out["relations"] = self._mlp(pair_inputs(e, x[:, -GEOMETRY:]), "relations", (0, 2, 4), last_gelu=False)
        return out

    def parse_images(self, images: list, *, image_ids: list[str] | None = None) -> list[SceneGraph]:
        out = []
        for k in range(0, len(images), 2):  # two images a pass (the CLEVR runtime's measured best)
            ids = None if image_ids is None else image_ids[k:k + 2]
            out += parse_gqa_images(images[k:k + 2], self.cfg, self.features, self.heads, image_ids=ids)
        return out

    def parse_image(self, image, image_id: str | None = None) -> SceneGraph:
        return self.parse_images([image], image_ids=None if image_id is None else [image_id])[0]


__all__ = ["NumpyGQASceneParser"]
