"""Scene layout of the synthetic CLEVR-like world: CLEVR scene records without Blender.

    rng = numpy.random.default_rng(0)
    record = sample_scene(rng, image_size=(320, 240))          # CLEVR scene record (no split/index yet)
    record, image = generate_scene(rng, split="train", index=0)  # sampled, rendered, visibility-checked

A record has CLEVR's fields (`directions`, `objects` with `3d_coords`, `pixel_coords`,
`rotation`, `size`, `color`, `material`, `shape`, and `relationships`) plus `width`,
`height`, `camera` and a per-object `bbox` [x, y, w, h] in pixels (the projected extent).

Placement follows CLEVR's generator: x, y uniform in [-3, 3]; the gap between two
objects' bounding circles at least `min_dist` (0.25); every pair at least `margin` (0.4)
apart along the left/right and front/behind directions, so those relations are never
ambiguous; up to `max_retries` positions per object before the whole scene restarts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ...ontology import CLEVR_ATTRIBUTES
from ...scene import clevr_relations, clevr_relationships
from .camera import BASE_LOCATION, Camera
from .geometry import SIZE_RADIUS, half_extent
from .render import object_bbox, render_scene, visible_pixels  # noqa: F401 (render_scene re-exported: the contract names it here too)


@dataclass(frozen=True)
class LayoutConfig:
    """CLEVR's placement settings (scene units)."""

    extent: float = 3.0  # x, y uniform in [-extent, extent]
    min_dist: float = 0.25  # gap between bounding circles
    margin: float = 0.4  # separation along each cardinal ground direction
    camera_jitter: float = 0.5  # uniform in [-j, j] per coordinate
    max_retries: int = 50  # positions tried per object before restarting the scene


def sample_scene(rng: np.random.Generator, *, image_size: tuple[int, int] = (320, 240),
                 min_objects: int = 3, max_objects: int = 10, config: LayoutConfig | None = None) -> dict:
    """A random CLEVR scene record of `min_objects`..`max_objects` objects.

    In: a numpy Generator (the only source of randomness), the image size (W, H).
    Out: the record (see the module docstring), JSON-serialisable.
    """
    cfg = config or LayoutConfig()
    if not 1 <= min_objects <= max_objects:
        raise ValueError(f"need 1 <= min_objects <= max_objects, got {min_objects}, {max_objects}")
    width, height = int(image_size[0]), int(image_size[1])
    jitter = rng.uniform(-cfg.camera_jitter, cfg.camera_jitter, 3)
    camera = Camera.at(np.asarray(BASE_LOCATION) + jitter, width=width, height=height)
    directions = camera.directions()
    n = int(rng.integers(min_objects, max_objects + 1))
    while True:
        objects = _place_objects(rng, n, camera, directions, cfg)
        if objects is not None:
            break
    positions = [o["3d_coords"] for o in objects]
    relationships = clevr_relationships(clevr_relations(positions, directions), len(objects))
    return {"directions": directions, "objects": objects, "relationships": relationships,
            "width": width, "height": height, "camera": camera.to_dict()}


def _place_objects(rng, n, camera: Camera, directions, cfg: LayoutConfig) -> list[dict] | None:
    placed: list[tuple[float, float, float]] = []  # x, y, bounding radius
    objects = []
    dir_vecs = [np.asarray(directions[r][:2]) for r in ("left", "right", "front", "behind")]
    for _ in range(n):
        size = str(rng.choice(CLEVR_ATTRIBUTES["size"]))
        r = SIZE_RADIUS[size]
        for _try in range(cfg.max_retries):
            x, y = rng.uniform(-cfg.extent, cfg.extent, 2)
            if all(_fits(x, y, r, xx, yy, rr, dir_vecs, cfg) for xx, yy, rr in placed):
                break
        else:
            return None
        shape = str(rng.choice(CLEVR_ATTRIBUTES["shape"]))
        color = str(rng.choice(CLEVR_ATTRIBUTES["color"]))
        material = str(rng.choice(CLEVR_ATTRIBUTES["material"]))
        rotation = float(rng.uniform(0.0, 360.0))
        z = half_extent(shape, size)
        obj = {"3d_coords": [round(float(x), 4), round(float(y), 4), round(z, 4)],
               "rotation": round(rotation, 3), "size": size, "color": color,
               "material": material, "shape": shape}
        px, py, depth = camera.project(np.array([obj["3d_coords"]]))
        if not (0 <= px[0] < camera.width and 0 <= py[0] < camera.height):
            return None  # centre out of frame: restart like any other failed placement
        obj["pixel_coords"] = [int(round(px[0])), int(round(py[0])), round(float(depth[0]), 4)]
        obj["bbox"] = object_bbox(obj, camera)
        placed.append((float(x), float(y), r))
        objects.append(obj)
    return objects


def _fits(x, y, r, xx, yy, rr, dir_vecs, cfg: LayoutConfig) -> bool:
    dx, dy = x - xx, y - yy
    if math.hypot(dx, dy) - r - rr < cfg.min_dist:
        return False
    for v in dir_vecs:
        m = dx * v[0] + dy * v[1]
        if 0 < m < cfg.margin:
            return False
    return True


def min_visible_pixels_for(image_size: tuple[int, int]) -> int:
    """CLEVR's 200 visible pixels per object at 480x320, scaled by image area."""
    return max(1, int(round(200 * image_size[0] * image_size[1] / (480 * 320))))


def generate_scene(rng: np.random.Generator, *, image_size: tuple[int, int] = (320, 240),
                   split: str = "train", index: int = 0, min_visible_pixels: int | None = None,
                   max_tries: int = 50, min_objects: int = 3, max_objects: int = 10
                   ) -> tuple[dict, Image.Image]:
    """Sample and render a scene, rejecting it while any object shows fewer than
    `min_visible_pixels` pixels (default: CLEVR's 200 at 480x320, scaled by image area).

    Out: the complete CLEVR record (with `split`, `image_index`, `image_filename`) and its RGB image.
    """
    return _visible_scene(rng, True, image_size, split, index, min_visible_pixels, max_tries, min_objects, max_objects)


def generate_scene_record(rng: np.random.Generator, *, image_size: tuple[int, int] = (320, 240),
                          split: str = "train", index: int = 0, min_visible_pixels: int | None = None,
                          max_tries: int = 50, min_objects: int = 3, max_objects: int = 10) -> dict:
    """The record `generate_scene` gives for the same arguments and rng state, without the
    image: the same scenes are rejected (visibility from the object-id buffer alone) and the
    rng advances as the renders would advance it, so a world without images holds the same
    scenes (and questions) as one with them."""
    return _visible_scene(rng, False, image_size, split, index, min_visible_pixels, max_tries,
                          min_objects, max_objects)[0]


def _visible_scene(rng, render: bool, image_size, split, index, min_visible_pixels, max_tries, min_objects,
                   max_objects) -> tuple[dict, Image.Image | None]:
    need = min_visible_pixels_for(image_size) if min_visible_pixels is None else min_visible_pixels
    image = None
    for _ in range(max_tries):
        record = sample_scene(rng, image_size=image_size, min_objects=min_objects, max_objects=max_objects)
        if render:
            image, visible = render_scene(record, rng)
        else:
            visible = visible_pixels(record, rng)
        if min(visible) >= need:
            break
    else:
        raise RuntimeError(f"no scene with every object showing >= {need} pixels in {max_tries} tries "
                           f"(image size {image_size[0]}x{image_size[1]})")
    head = {"split": split, "image_index": int(index), "image_filename": f"CLEVR_{split}_{int(index):06d}.png"}
    return {**head, **record}, image
