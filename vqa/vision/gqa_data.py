"""GQA's official layout as scene-parser training examples.

    vocab = scan_vocabulary("sceneGraphs/train_sceneGraphs.json")     # names, attributes, relations
    data = GQASceneData("images", "sceneGraphs/train_sceneGraphs.json", image_size=(144, 192),
                        names=vocab["names"], attributes=vocab["attributes"], relations=vocab["relations"])
    images, dense, objects = data.batch([0, 1, 2])

A scene-graph file is `{imageId: {width, height, objects: {id: {name, x, y, w, h,
attributes, relations}}}}`; the image of `imageId` is `images/<imageId>.jpg` (or .png,
.jpeg). Each image is letterboxed into the network input (`gqa_core.letterbox_uint8`) and
held as uint8; its boxes scale with it. Per image the targets are the CLEVR parser's dense
detection targets (`vqa.vision.targets.build_targets`, no attribute maps) and the gold
objects: boxes (n, 4) cx, cy, w, h in network pixels, name index (-1: not in the
vocabulary), multi-hot attributes (n, A) and relation triples (subject, object, predicate)
as indices. Values outside the vocabularies are left out of the targets.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..datasets.jsonstream import stream_dict
from ..errors import DataError, require
from ..scene import SceneGraph
from .core import STRIDE, load_image
from .gqa_core import letterbox_uint8
from .targets import GoldObject, build_targets, collate

IMAGE_SUFFIXES = (".jpg", ".png", ".jpeg", ".JPG", ".PNG")


def scan_vocabulary(scenes_file: str | Path, *, limit: int | None = None, min_count: int = 1) -> dict[str, list[str]]:
    """Names, attributes and relation names of a scene-graph file, most frequent first (ties
    alphabetical), those seen at least `min_count` times. Streams the file."""
    counts = {"names": Counter(), "attributes": Counter(), "relations": Counter()}
    for n, (image_id, rec) in enumerate(stream_dict(scenes_file)):
        if limit is not None and n >= limit:
            break
        for oid, o in _objects(rec, scenes_file, image_id).items():
            counts["names"][o.get("name")] += 1
            counts["attributes"].update(a for a in o.get("attributes") or [] if isinstance(a, str))
            counts["relations"].update(r.get("name") for r in o.get("relations") or [] if isinstance(r, dict))
    return {k: [v for v, c in sorted(cs.items(), key=lambda kv: (-kv[1], str(kv[0])))
                if isinstance(v, str) and c >= min_count] for k, cs in counts.items()}


def _objects(rec, file, image_id) -> dict:
    if not isinstance(rec, dict):
        raise DataError("expected a scene-graph object", file=file, record=image_id)
    return require(rec, "objects", dict, file=file, record_id=image_id)


def find_image(images_dir: Path, image_id: str) -> Path:
    for suffix in IMAGE_SUFFIXES:
        p = images_dir / f"{image_id}{suffix}"
        if p.is_file():
            return p
    raise DataError(f"no image file for image {image_id!r} (looked for {image_id}.jpg/.png/.jpeg in {images_dir})",
                    record=image_id)


@dataclass
class GoldGQA:
    """One image's gold objects in network pixels (see the module docstring)."""

    image_id: str
    scale: float
    content: tuple[float, float]          # letterboxed content (w, h) in network pixels
    boxes: np.ndarray                     # (n, 4) cx, cy, w, h
    names: np.ndarray                     # (n,) int64, -1 unknown
    attributes: np.ndarray                # (n, A) float32 multi-hot
    relations: np.ndarray                 # (m, 3) int64: subject, object, predicate


class GQASceneData:
    """Images of a GQA scene-graph file in memory (uint8 (N, 3, H, W)) with their gold objects."""

    def __init__(self, images_dir: str | Path, scenes_file: str | Path, *, image_size: tuple[int, int],
                 names: list[str], attributes: list[str], relations: list[str], limit: int | None = None,
                 progress=None):
        self.images_dir, self.scenes_file = Path(images_dir), Path(scenes_file)
        if not self.images_dir.is_dir():
            raise DataError("no such images folder", file=self.images_dir)
        if not self.scenes_file.is_file():
            raise DataError("no such scene-graph file", file=self.scenes_file)
        self.image_size = tuple(image_size)
        self.vocab = {"names": {v: i for i, v in enumerate(names)},
                      "attributes": {v: i for i, v in enumerate(attributes)},
                      "relations": {v: i for i, v in enumerate(relations)}}
        records = []
        for image_id, rec in stream_dict(self.scenes_file):
            if limit is not None and len(records) >= limit:
                break
            records.append((str(image_id), rec))
        if not records:
            raise DataError("no scene graphs", file=self.scenes_file)
        H, W = self.image_size
        self.images = torch.empty(len(records), 3, H, W, dtype=torch.uint8)
        self.gold: list[GoldGQA] = []
        self.graphs: list[SceneGraph] = []
        it = enumerate(records)
        if progress is not None:
            it = progress(it, desc="load images", total=len(records))
        for k, (image_id, rec) in it:
            path = find_image(self.images_dir, image_id)
            im = load_image(path)
            graph = SceneGraph.from_gqa(image_id, rec, file=self.scenes_file)
            if (graph.width, graph.height) != im.size:
                raise DataError(f"the scene graph says {graph.width}x{graph.height} pixels, the image is "
                                f"{im.size[0]}x{im.size[1]}", file=self.scenes_file, record=image_id, field="width")
            arr, s = letterbox_uint8(im, self.image_size)
            self.images[k] = torch.from_numpy(arr)
            self.graphs.append(graph)
            self.gold.append(self._gold(image_id, rec, graph, s, im.size))

    def _gold(self, image_id: str, rec: dict, graph: SceneGraph, s: float, size) -> GoldGQA:
        objs = _objects(rec, self.scenes_file, image_id)
        ids = list(objs)
        index = {oid: k for k, oid in enumerate(ids)}
        n, A = len(ids), len(self.vocab["attributes"])
        boxes = np.zeros((n, 4), np.float32)
        names = np.full(n, -1, np.int64)
        attrs = np.zeros((n, max(1, A)), np.float32)
        rels = []
        for k, obj in enumerate(graph.objects):  # same order as the record's objects
            x, y, w, h = obj.bbox
            boxes[k] = [(x + max(w, 1) / 2) * s, (y + max(h, 1) / 2) * s, max(w, 1) * s, max(h, 1) * s]
            names[k] = self.vocab["names"].get(obj.name, -1)
            for a in obj.attributes.get("attribute", {}):
                if a in self.vocab["attributes"]:
                    attrs[k, self.vocab["attributes"][a]] = 1.0
        for r in graph.relations:
            p = self.vocab["relations"].get(r.predicate)
            if p is not None and r.subject != r.object:
                rels.append((index[r.subject], index[r.object], p))
        rel = np.array(sorted(set(rels)), np.int64).reshape(-1, 3)
        return GoldGQA(image_id, s, (size[0] * s, size[1] * s), boxes, names, attrs, rel)

    def __len__(self) -> int:
        return len(self.gold)

    @property
    def grid(self) -> tuple[int, int]:
        return self.image_size[0] // STRIDE, self.image_size[1] // STRIDE

    def batch(self, indices) -> tuple[torch.Tensor, dict[str, torch.Tensor], list[GoldGQA]]:
        """Normalised images (B, 3, H, W), collated dense targets, and the gold objects."""
        from .scene_parser import normalise

        gold = [self.gold[i] for i in indices]
        dense = [build_targets([GoldObject(*map(float, b), {}) for b in g.boxes], self.grid, {}) for g in gold]
        return normalise(self.images[list(indices)]), collate(dense), gold
