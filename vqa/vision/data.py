"""A CLEVR-layout folder (synthetic or the official download) as scene-parser examples.

    data = SceneParserData("synth", "train", image_size=(128, 192), attributes=cfg.attributes)
    images, targets = data.batch([0, 1, 2], flip=[False, True, False])
    data.graphs[i]          # the gold SceneGraph (pixels of the image file) for evaluation

Reads `scenes/CLEVR_<split>_scenes.json` and `images/<split>/<image_filename>`. Targets
come from each object's attributes, its centre and its box:
- centre: the exact projection of `3d_coords` when the record carries the synthetic
  world's `camera`, otherwise `pixel_coords` (official CLEVR);
- box: the record's `bbox`, otherwise estimated from `pixel_coords` and the size with
  CLEVR's camera (as `SceneGraph.from_clevr` does; official scenes have no boxes);
- hidden: the share of the object's silhouette that others hide, 1 - `visible_pixels` / the
  area of its whole projected silhouette, where the record is one of the project's Blender
  renders (`visible_pixels` per object, the camera in `blender`); 0 elsewhere (`hidden_shares`).
Images are resized to `image_size` (official CLEVR 480x320 -> 192x128 keeps the aspect);
with `full=True` they are also kept at their own resolution (`full`, uint8 (N, 3, H0, W0),
all images of the folder one size), for the second stage's full-resolution crops.

A Blender render made before the renderer drew cubes at CLEVR's size (a record with
`blender` whose objects carry no `half_extent`) has cubes sqrt(2) smaller than released
CLEVR's: their size is no target there (value -1), the rest of the object is.

`data.cubes` is the cube convention the folder's `3d_coords` show ("clevr": a cube's centre
at the size's radius, 0.7 / 0.35, as in released CLEVR and the Blender renders; "synth": the
radius / sqrt(2), the synthetic world's; None: no cube with 3-D coordinates, or both): the
trainers give it to a parser that would otherwise place cubes by another (`cube_convention`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..datasets.clevr import iter_scene_records
from ..errors import DataError
from ..scene import SceneGraph
from .scene_parser import input_size, load_image, normalise
from .targets import GoldObject, build_targets, collate
from .scene_parser import STRIDE


class SceneParserData:
    """All images of one split in memory as uint8 (N, 3, H, W), with gold objects per image."""

    def __init__(self, root: str | Path, split: str, *, image_size: tuple[int, int],
                 attributes: dict[str, list[str]], limit: int | None = None, progress=None, full: bool = False):
        self.root, self.split = Path(root), split
        self.image_size = tuple(image_size)
        self.attributes = attributes
        scenes_file = self.root / "scenes" / f"CLEVR_{split}_scenes.json"
        if not scenes_file.is_file():
            raise DataError(f"no scenes file for split {split!r} (expected {scenes_file})", file=self.root)
        records = []
        for rec in iter_scene_records(scenes_file):
            if limit is not None and len(records) >= limit:
                break
            records.append(rec)
        if not records:
            raise DataError("no scenes", file=scenes_file)
        self.cubes = cube_convention(records)
        H, W = self.image_size
        self.images = torch.empty(len(records), 3, H, W, dtype=torch.uint8)
        self.objects: list[list[GoldObject]] = []
        self.graphs: list[SceneGraph] = []
        self.full: np.ndarray | None = None
        it = enumerate(records)
        if progress is not None:
            it = progress(it, desc=f"load {split}", total=len(records))
        for i, rec in it:
            rid = rec.get("image_filename", i) if isinstance(rec, dict) else i
            name = rec.get("image_filename") if isinstance(rec, dict) else None
            if not isinstance(name, str):
                raise DataError("expected the image's file name", file=scenes_file, record=rid, field="image_filename")
            im = load_image(self.root / "images" / split / name)
            w0, h0 = im.size
            if input_size(im.size, _Cfg(self.image_size)) != self.image_size:
                raise DataError(f"image {w0}x{h0} does not have the aspect ratio of the model input {W}x{H}",
                                file=self.root / "images" / split / name)
            graph = SceneGraph.from_clevr({**rec, "width": w0, "height": h0}, file=scenes_file, record=rid)
            self.graphs.append(graph)
            if full:
                if self.full is None:
                    self.full = np.empty((len(records), 3, h0, w0), np.uint8)
                elif self.full.shape[-2:] != (h0, w0):
                    raise DataError(f"image {w0}x{h0}: the folder's first image is {self.full.shape[-1]}x"
                                    f"{self.full.shape[-2]} (full-resolution crops need one size)",
                                    file=self.root / "images" / split / name)
                self.full[i] = np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)
            if im.size != (W, H):
                from PIL import Image
                im = im.resize((W, H), Image.BILINEAR)
            self.images[i] = torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1)
            self.objects.append(gold_objects(rec, graph, scale=(W / w0, H / h0), attributes=attributes))

    def __len__(self) -> int:
        return len(self.objects)

    @property
    def grid(self) -> tuple[int, int]:
        return self.image_size[0] // STRIDE, self.image_size[1] // STRIDE

    def targets(self, i: int, flip: bool = False) -> dict[str, torch.Tensor]:
        objs = self.objects[i]
        if flip:
            W = self.image_size[1]
            objs = [GoldObject(W - o.cx, o.cy, o.w, o.h, o.values, o.hidden) for o in objs]
        return build_targets(objs, self.grid, self.attributes)

    def batch(self, indices, flip=None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Normalised images (B, 3, H, W) and collated targets; `flip[k]` mirrors example k."""
        flip = flip if flip is not None else [False] * len(indices)
        imgs = self.images[list(indices)]
        fl = torch.tensor(list(flip), dtype=torch.bool)
        if fl.any():
            imgs[fl] = imgs[fl].flip(-1)
        return normalise(imgs), collate([self.targets(i, f) for i, f in zip(indices, flip)])


def cube_convention(records) -> str | None:
    """How the scene records place cubes: "clevr" when every cube's `3d_coords` height is its
    size's radius (0.7 / 0.35), "synth" when it is the radius / sqrt(2), None when no record has
    a cube with 3-D coordinates or the records mix the two (a height that is neither counts as
    neither)."""
    import math

    from ..datasets.synth.geometry import SIZE_RADIUS

    seen = set()
    for rec in records:
        for od in rec.get("objects", ()) if isinstance(rec, dict) else ():
            if not isinstance(od, dict) or od.get("shape") != "cube" or od.get("size") not in SIZE_RADIUS:
                continue
            xyz = od.get("3d_coords")
            if not isinstance(xyz, (list, tuple)) or len(xyz) < 3 or not isinstance(xyz[2], (int, float)):
                continue
            r = SIZE_RADIUS[od["size"]]
            if abs(xyz[2] - r) < 0.02:
                seen.add("clevr")
            elif abs(xyz[2] - r / math.sqrt(2)) < 0.02:
                seen.add("synth")
            else:
                seen.add(None)
            if len(seen) > 1:
                return None
    return next(iter(seen)) if seen else None


def adopt_cubes(mcfg, data: "SceneParserData", given: str | None, log=print) -> None:
    """Set the parser config's `cubes` from the training data's convention (`data.cubes`)
    unless `given` (an explicit setting, which wins: a disagreement is logged)."""
    if given is not None:
        if data.cubes is not None and data.cubes != given:
            log(f"note: cubes {given!r} as given, but the training scenes place cubes as {data.cubes!r}")
        return
    if data.cubes is not None and data.cubes != mcfg.cubes:
        log(f"cubes: the training scenes place cubes as {data.cubes!r} (3-D coordinates); "
            f"the parser's 3-D positions follow them (was {mcfg.cubes!r})")
        mcfg.cubes = data.cubes


class _Cfg:
    """The two fields of SceneParserConfig that `input_size` reads."""

    def __init__(self, image_size):
        self.image_size = tuple(image_size)
        self.block = 16


def gold_objects(rec: dict, graph: SceneGraph, *, scale: tuple[float, float],
                 attributes: dict[str, list[str]]) -> list[GoldObject]:
    """One scene record's objects in network-input pixels (see the module docstring)."""
    sx, sy = scale
    centres = _exact_centres(rec)
    hidden = hidden_shares(rec)
    small_cubes = "blender" in rec and not any("half_extent" in od for od in rec["objects"] if isinstance(od, dict))
    out = []
    for k, (od, obj) in enumerate(zip(rec["objects"], graph.objects)):
        if centres is not None:
            cx, cy = centres[k]
        else:
            pc = od.get("pixel_coords")
            if not isinstance(pc, list) or len(pc) < 2:
                raise DataError("expected [x, y, depth]", record=graph.image_id, field=f"objects[{k}].pixel_coords")
            cx, cy = float(pc[0]), float(pc[1])
        x, y, w, h = obj.bbox
        values = {}
        for cat, vocab in attributes.items():
            v = obj.value(cat)
            if v not in vocab:
                raise DataError(f"unknown {cat} {v!r} (expected one of {', '.join(vocab)})",
                                record=graph.image_id, field=f"objects[{k}].{cat}")
            values[cat] = vocab.index(v)
        if small_cubes and "size" in values and obj.value("shape") == "cube":
            values["size"] = -1  # sqrt(2)-smaller than CLEVR's cubes: neither of CLEVR's sizes
        out.append(GoldObject(cx * sx, cy * sy, w * sx, h * sy, values, hidden[k]))
    return out


def hidden_shares(rec: dict) -> list[float]:
    """`known_hidden_shares`, with 0 for every object where the record does not tell: nothing
    is then known to be hidden."""
    known = known_hidden_shares(rec)
    return known if known is not None else [0.0] * len(rec.get("objects") or [])


def known_hidden_shares(rec: dict) -> list[float] | None:
    """Per object of a scene record, the share of its silhouette hidden by the others: 1 -
    `visible_pixels` (counted on the renderer's flat-shaded pre-render at the image's size) / the
    area of the convex hull of its projected surface points (the objects are convex, so the hull
    is the whole silhouette); the part outside the frame counts as hidden. None where the record
    lacks any of it (official scenes, the synthetic world)."""
    objs = rec.get("objects") or []
    cam = rec.get("blender") if isinstance(rec.get("blender"), dict) else {}
    need = ("visible_pixels", "half_extent", "3d_coords", "shape")
    if (not objs or "world_to_camera" not in cam or "focal_px" not in cam or "width" not in rec
            or not all(isinstance(od, dict) and all(k in od for k in need) for od in objs)):
        return None
    from ..datasets.blender.driver import hidden_share

    return [hidden_share(od, od["visible_pixels"], cam["world_to_camera"], float(cam["focal_px"]),
                         int(rec["width"]), int(rec["height"])) for od in objs]


def _exact_centres(rec: dict) -> list[tuple[float, float]] | None:
    """Sub-pixel centres from `3d_coords` and the synthetic world's recorded camera, or None."""
    cam = rec.get("camera")
    if not isinstance(cam, dict) or "location" not in cam or "width" not in rec:
        return None
    from ..datasets.synth.camera import Camera

    camera = Camera.at(cam["location"], width=int(rec["width"]), height=int(rec["height"]))
    pts = np.array([o["3d_coords"] for o in rec["objects"]], dtype=float)
    px, py, _ = camera.project(pts)
    return list(zip(px.tolist(), py.tolist()))


class MixedData(SceneParserData):
    """Several `SceneParserData` of one input size as one training set; part k repeated
    `repeats[k]` times (e.g. a few hundred Blender renders next to thousands of synthetic images)."""

    def __init__(self, parts: list[SceneParserData], repeats: list[int] | None = None):
        if not parts:
            raise ValueError("no data")
        repeats = list(repeats or [1] * len(parts))
        sizes = {p.image_size for p in parts}
        if len(sizes) != 1:
            raise DataError(f"training folders load at different input sizes {sorted(sizes)}")
        self.root, self.split = parts[0].root, parts[0].split
        self.image_size, self.attributes = parts[0].image_size, parts[0].attributes
        self.parts, self.repeats = parts, repeats
        self.full = None  # per part (`GoldCrops` reads the parts)
        self.images = torch.cat([p.images for p, r in zip(parts, repeats) for _ in range(r)])
        self.objects = [objs for p, r in zip(parts, repeats) for _ in range(r) for objs in p.objects]
        self.graphs = [g for p, r in zip(parts, repeats) for _ in range(r) for g in p.graphs]
        seen = {p.cubes for p in parts} - {None}
        self.cubes = seen.pop() if len(seen) == 1 else None


def load_training_data(root, split: str, *, image_size, attributes, limit=None, repeat: int = 1,
                       extra: tuple[str, ...] = (), extra_limit=None, progress=None, full: bool = False) -> SceneParserData:
    """`root`'s `split` (repeated `repeat` times), plus the same split of each `extra` folder
    (first `extra_limit` scenes each); a plain `SceneParserData` when there is nothing to mix."""
    main = SceneParserData(root, split, image_size=image_size, attributes=attributes, limit=limit, progress=progress,
                           full=full)
    if not extra and repeat == 1:
        return main
    parts = [main] + [SceneParserData(e, split, image_size=image_size, attributes=attributes, limit=extra_limit,
                                      progress=progress, full=full) for e in extra]
    return MixedData(parts, [repeat] + [1] * len(extra))
