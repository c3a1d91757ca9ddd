"""Vision: image -> probabilistic SceneGraph.

- `scene_parser`: the model (a conv stem, the grouped-query-attention ViT of `vqa.nn`, a
  dense per-cell head), its decoding into a `SceneGraph`, checkpoints, image loading.
- `data`: a CLEVR-layout folder (synthetic or official) as training examples and dense targets.
- `metrics`: scene-level scores of predicted against gold graphs.
- `train`: the training loop (resume, held-out evaluation, DDP, CUDA autocast).

    from vqa.vision import load_scene_parser
    parser = load_scene_parser()                   # the shipped checkpoint
    graph = parser.parse_image("scene.png")        # -> SceneGraph
"""
from .scene_parser import (DEFAULT_CHECKPOINT, SceneParser, SceneParserConfig, load_image,
                           load_scene_parser)

__all__ = ["DEFAULT_CHECKPOINT", "SceneParser", "SceneParserConfig", "load_image", "load_scene_parser"]
