"""Composition of the parts into what a user calls (grows with the vision and language parts)."""
from __future__ import annotations

from pathlib import Path

from .datasets import clevr
from .datasets.jsonstream import top_level_keys
from .errors import DataError
from .scene import SceneGraph


def load_scene(path: str | Path, image_id: str | None = None) -> SceneGraph:
    """A scene from a SceneGraph JSON file or from a CLEVR scenes file (by image id or
    image index, else the first scene)."""
    path = Path(path)
    if "scenes" not in top_level_keys(path, stop_at="scenes"):
        return SceneGraph.load(path)
    for i, rec in enumerate(clevr.iter_scene_records(path)):
        if image_id is None or image_id in (clevr.clevr_image_id(rec), str(rec.get("image_index"))):
            return SceneGraph.from_clevr(rec, file=path, record=i)
    raise DataError(f"no scene with image id or index {image_id!r}", file=path)
