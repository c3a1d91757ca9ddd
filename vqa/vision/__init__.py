"""Vision: image -> probabilistic SceneGraph.

- `core`: torch-free config, image loading and decoding of the maps into a `SceneGraph`.
- `scene_parser`: the model (a conv stem, the grouped-query-attention ViT of `vqa.nn`, a
  dense per-cell head), its decoding into a `SceneGraph`, checkpoints, image loading.
- `data`: a CLEVR-layout folder (synthetic or official) as training examples and dense targets.
- `metrics`: scene-level scores of predicted against gold graphs.
- `train`: the training loop (resume, held-out evaluation, DDP, CUDA autocast).

    from vqa.vision import load_scene_parser
    parser = load_scene_parser()                   # the shipped checkpoint
    graph = parser.parse_image("scene.png")        # -> SceneGraph
"""
from .core import SceneParserConfig, load_image

__all__ = ["DEFAULT_CHECKPOINT", "SceneParser", "SceneParserConfig", "load_image", "load_scene_parser"]


def __getattr__(name):  # the torch model on first use: `vqa.vision.core` alone does not import torch
    if name in ("DEFAULT_CHECKPOINT", "SceneParser", "load_scene_parser"):
        from . import scene_parser

        return getattr(scene_parser, name)
    raise AttributeError(f"module 'vqa.vision' has no attribute {name!r}")
