"""Renderer of synthetic CLEVR scenes (PIL + numpy, no 3-D engine).

    image, visible = render_scene(record, rng)   # PIL RGB image W x H, visible pixel count per object

Each object is ray-cast analytically inside its own bounding box (`geometry.Solid`) on a
2x supersampled grid, drawn far to near with a depth test, shaded by material
(`shading`), and the result is box-filtered down to the output size. Shadows are cast
onto the floor by tracing floor points towards the key light, then softened; a contact
shadow darkens the floor where each object stands. Randomness (light jitter, colour
balance, floor tone, pixel noise) comes only from `rng`, so the same rng state gives the
same image bytes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .camera import BASE_LOCATION, Camera
from .geometry import Solid
from .shading import COLORS, Lighting, floor_image, shade_metal, shade_rubber


@dataclass
class Layers:
    """Everything one render produces (all arrays at the output resolution)."""

    image: np.ndarray  # (H, W, 3) uint8
    visible: list[int]  # per object: pixels covered (sub-samples / ss^2, rounded down)
    ids_ss: np.ndarray  # (H*ss, W*ss) int16: object index per sub-sample, -1 for floor
    ss: int

    @property
    def object_id(self) -> np.ndarray:
        """(H, W) int16: the object covering most sub-samples of each pixel, -1 for floor."""
        h, w = self.image.shape[:2]
        return _majority_ids(self.ids_ss, h, w, self.ss, len(self.visible))


def object_bbox(obj: dict, camera: Camera) -> list[float]:
    """The object's projected extent [x, y, w, h] in pixels, clipped to the image."""
    px, py, _ = camera.project(Solid.from_object(obj).surface_points())
    x0, x1 = max(float(px.min()), 0.0), min(float(px.max()), float(camera.width))
    y0, y1 = max(float(py.min()), 0.0), min(float(py.max()), float(camera.height))
    return [round(x0, 2), round(y0, 2), round(max(x1 - x0, 0.0), 2), round(max(y1 - y0, 0.0), 2)]


def render_scene(scene: dict, rng: np.random.Generator) -> tuple[Image.Image, list[int]]:
    """RGB image of scene["width"] x scene["height"] and each object's visible pixel count.

    Also renders a released CLEVR record (no `width`/`height`/`camera`/`bbox`): 480x320 from
    CLEVR's base camera position, boxes projected from `3d_coords`.
    """
    layers = render_layers(scene, rng)
    return Image.fromarray(layers.image, "RGB"), layers.visible


def render_layers(scene: dict, rng: np.random.Generator, *, ss: int = 2, shadows: bool = True,
                  noise: bool = True) -> Layers:
    """The render with its object-id buffer.

    `ss`: supersampling factor per axis; `shadows=False` leaves the floor untouched by objects;
    `noise=False` skips the per-pixel noise (for exact comparisons in tests).
    """
    width, height = int(scene.get("width", 480)), int(scene.get("height", 320))
    camera = Camera.at(scene.get("camera", {}).get("location", BASE_LOCATION), width=width, height=height)
    objects = scene["objects"]
    light, albedo = _draw_look(rng, objects)
    solids = [Solid.from_object(o) for o in objects]
    origin = np.asarray(camera.location, np.float32)

    # floor and its shadows at the output resolution
    rays1 = camera.ray_directions(1)
    ground = origin + rays1 * (-origin[2] / rays1[..., 2:3])  # (H, W, 3)
    floor = floor_image(width, height, ground, light)
    if shadows:
        dark = np.zeros((height, width), np.float32)
        for solid in solids:
            _cast_shadow(dark, solid, ground, camera, light)
        floor *= (1.0 - np.clip(dark, 0.0, 0.85))[..., None]

    # objects on the supersampled grid, far to near with a depth test
    img = np.repeat(np.repeat(floor, ss, axis=0), ss, axis=1)
    ids = np.full((height * ss, width * ss), -1, np.int16)
    for i, flat, win, pts, d in _cast_objects(objects, solids, camera, ss, ids):
        col = _shade(i, solids, objects, albedo, pts, -d, light)
        imr = img[flat].reshape(-1, 3)
        imr[win] = col
        img[flat] = imr.reshape(flat[0].stop - flat[0].start, flat[1].stop - flat[1].start, 3)

    img = _downsample(img, ss) * light.tint[None, None, :]
    if noise:
        img += _draw_noise(rng, height, width) * np.float32(light.noise)
    out = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return Layers(out, _visible(ids, len(objects), ss), ids, ss)


def visible_pixels(scene: dict, rng: np.random.Generator, *, ss: int = 2) -> list[int]:
    """Each object's visible pixel count exactly as `render_scene(scene, rng)` gives it, and
    `rng` left in the same state as that render leaves it, without shading an image (a
    `--no-images` world rejects and resamples the same scenes as one with images)."""
    width, height = int(scene.get("width", 480)), int(scene.get("height", 320))
    camera = Camera.at(scene.get("camera", {}).get("location", BASE_LOCATION), width=width, height=height)
    objects = scene["objects"]
    _draw_look(rng, objects)
    ids = np.full((height * ss, width * ss), -1, np.int16)
    for _ in _cast_objects(objects, [Solid.from_object(o) for o in objects], camera, ss, ids):
        pass
    _draw_noise(rng, height, width)
    return _visible(ids, len(objects), ss)


# Every random draw of a render, in order: the look (lighting, colour balance) first, then
# the pixel noise. `render_layers` and `visible_pixels` both draw through these two.
def _draw_look(rng: np.random.Generator, objects: list[dict]) -> tuple[Lighting, list[np.ndarray]]:
    light = Lighting.sample(rng)
    albedo = [np.asarray(COLORS[o["color"]], np.float32) / 255.0 * rng.uniform(0.96, 1.04, 3).astype(np.float32)
              for o in objects]
    return light, albedo


def _draw_noise(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    return rng.standard_normal((height, width, 3), dtype=np.float32)


def _visible(ids: np.ndarray, n: int, ss: int) -> list[int]:
    counts = np.bincount(ids[ids >= 0].ravel(), minlength=n)
    return [int(c) // (ss * ss) for c in counts]


def _cast_objects(objects, solids, camera: Camera, ss: int, ids: np.ndarray):
    """Ray-cast the objects far to near on the supersampled grid with a depth test, writing
    the object index of each sub-sample into `ids` (H*ss, W*ss). Yields, per object drawn,
    (index, window slices, sub-samples won within the window, their surface points, ray directions)."""
    height, width = camera.height, camera.width
    origin = np.asarray(camera.location, np.float32)
    rays = camera.ray_directions(ss)
    zbuf = np.full((height * ss, width * ss), np.inf, np.float32)
    depth = camera.project(np.array([o["3d_coords"] for o in objects]).reshape(-1, 3))[2]
    order = sorted(range(len(objects)), key=lambda i: -depth[i])
    for i in order:
        x, y, w, h = objects[i]["bbox"] if "bbox" in objects[i] else object_bbox(objects[i], camera)
        x0, x1 = max(int(np.floor((x - 1) * ss)), 0), min(int(np.ceil((x + w + 1) * ss)), width * ss)
        y0, y1 = max(int(np.floor((y - 1) * ss)), 0), min(int(np.ceil((y + h + 1) * ss)), height * ss)
        if x1 <= x0 or y1 <= y0:
            continue
        d = rays[y0:y1, x0:x1].reshape(-1, 3)
        t = solids[i].intersect(origin[None, :], d)
        zr = zbuf[y0:y1, x0:x1].reshape(-1)
        win = np.flatnonzero(t < zr)
        if win.size == 0:
            continue
        flat = (slice(y0, y1), slice(x0, x1))
        zr[win] = t[win]
        zbuf[flat] = zr.reshape(y1 - y0, x1 - x0)
        idr = ids[flat].reshape(-1)
        idr[win] = i
        ids[flat] = idr.reshape(y1 - y0, x1 - x0)
        yield i, flat, win, origin + d[win] * t[win, None], d[win]


def _shade(i, solids, objects, albedo, pts, view, light: Lighting) -> np.ndarray:
    solid = solids[i]
    n = solid.normals(pts)
    centre = np.asarray(solid.centre, np.float32)
    ldir = light.positions.astype(np.float32) - centre[None, :]
    ldir /= np.linalg.norm(ldir, axis=1, keepdims=True)
    occl = _object_shadow(i, solids, pts, light)
    if objects[i]["material"] == "metal":
        others = [(np.asarray(s.centre, np.float32), s.s * 1.1, albedo[j]) for j, s in enumerate(solids)
                  if j != i and np.hypot(s.centre[0] - centre[0], s.centre[1] - centre[1]) < 3.5]
        col = shade_metal(albedo[i], n, view, ldir, light, pts, others, solid.s,
                          streak=solid.shape == "cylinder")
    else:
        col = shade_rubber(albedo[i], n, view, ldir, light)
    if occl is not None:
        col = col * (1.0 - 0.45 * occl)[:, None]
    return col


def _object_shadow(i, solids, pts, light: Lighting) -> np.ndarray | None:
    """Key-light shadow cast on object i's surface points (N, 3) by the other objects: (N,) in [0, 1] or None."""
    key = light.positions[0]
    ci = np.asarray(solids[i].centre)
    to_key = key - ci
    to_key /= np.linalg.norm(to_key)
    out = None
    for j, s in enumerate(solids):
        if j == i:
            continue
        cj = np.asarray(s.centre) - ci
        along = cj @ to_key
        if along <= 0 or np.linalg.norm(cj - along * to_key) > solids[i].s * 1.5 + s.s * 1.5:
            continue  # j is not between i and the key light
        d = (key[None, :] - pts).astype(np.float32)
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        hit = np.isfinite(s.intersect(pts, d)).astype(np.float32)
        out = hit if out is None else np.maximum(out, hit)
    return out


def _cast_shadow(dark, solid: Solid, ground, camera: Camera, light: Lighting) -> None:
    """Add a solid's soft key-light shadow and contact shadow to `dark` (H, W) in place.

    `ground` (H, W, 3): each pixel's point on the ground plane.
    """
    key = light.positions[0]
    cx, cy, cz = solid.centre
    top = np.array([cx, cy, 2 * cz])
    k = key[2] / max(key[2] - top[2], 0.3)
    tip = key + (top - key) * k  # where the top of the object's shadow lands
    rb = solid.s * (1.42 if solid.shape == "cube" else 1.0)  # footprint radius
    reach = rb * k + 0.25
    gx0, gx1 = min(cx, tip[0]) - reach, max(cx, tip[0]) + reach
    gy0, gy1 = min(cy, tip[1]) - reach, max(cy, tip[1]) + reach
    corners = np.array([[gx0, gy0, 0], [gx0, gy1, 0], [gx1, gy0, 0], [gx1, gy1, 0]])
    px, py, depth = camera.project(corners)
    if (depth <= 0).any():
        px, py = np.array([0, camera.width]), np.array([0, camera.height])
    x0, x1 = max(int(px.min()), 0), min(int(np.ceil(px.max())) + 1, camera.width)
    y0, y1 = max(int(py.min()), 0), min(int(np.ceil(py.max())) + 1, camera.height)
    if x1 <= x0 or y1 <= y0:
        return
    # trace at half resolution (the shadow is soft anyway), blur, then upsample
    gh = ground[y0:y1:2, x0:x1:2]
    hh, ww = gh.shape[:2]
    g = gh.reshape(-1, 3)
    d = (key[None, :] - g).astype(np.float32)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    hard = np.isfinite(solid.intersect(g, d)).astype(np.float32).reshape(hh, ww)
    depth = float(camera.project(np.array([solid.centre]))[2][0])
    blur = max(1, int(round(solid.s * camera.focal_px / max(depth, 1.0) * 0.11)))
    soft = _box_blur(_box_blur(hard, blur), blur)
    dist = np.hypot(g[:, 0] - cx, g[:, 1] - cy).reshape(hh, ww)
    contact = 0.35 * np.exp(-np.maximum(dist - solid.s * 0.9, 0.0) / (0.18 * solid.s + 0.05))
    half = soft * light.shadow_strength + contact * (1 - soft)
    full = np.repeat(np.repeat(half, 2, axis=0), 2, axis=1)[: y1 - y0, : x1 - x0]
    region = dark[y0:y1, x0:x1]
    np.maximum(region, full, out=region)


def _box_blur(a: np.ndarray, r: int) -> np.ndarray:
    """Separable box blur of radius r (edges clamped) via cumulative sums: (h, w) -> (h, w)."""
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (r + 1, r)
        c = np.cumsum(np.pad(a, pad, mode="edge"), axis=axis, dtype=np.float32)
        n = a.shape[axis]
        hi = np.take(c, np.arange(2 * r + 1, 2 * r + 1 + n), axis=axis)
        lo = np.take(c, np.arange(0, n), axis=axis)
        a = (hi - lo) / (2 * r + 1)
    return a


def _downsample(img: np.ndarray, ss: int) -> np.ndarray:
    """Box filter: (H*ss, W*ss, C) -> (H, W, C)."""
    out = img[0::ss, 0::ss].copy()
    for dy in range(ss):
        for dx in range(ss):
            if dx or dy:
                out += img[dy::ss, dx::ss]
    return out / np.float32(ss * ss)


def _majority_ids(ids: np.ndarray, height: int, width: int, ss: int, n: int) -> np.ndarray:
    """Downsample the supersampled id buffer: the id covering most sub-samples of each pixel (ties: any)."""
    blocks = ids.reshape(height, ss, width, ss).transpose(0, 2, 1, 3).reshape(height, width, ss * ss)
    best = np.full((height, width), -1, np.int16)
    best_count = np.zeros((height, width), np.int16)
    for v in range(-1, n):
        c = (blocks == v).sum(axis=2, dtype=np.int16)
        better = c > best_count
        best[better] = v
        best_count[better] = c[better]
    return best

