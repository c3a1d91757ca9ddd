"""Lights, floor and materials of the synthetic renderer (numpy, display-space values in [0, 1]).

CLEVR lights its scenes with a key light (front right, casting the visible shadows), a
weaker fill light (left) and a back light, each jittered by up to 1.0 per coordinate;
the floor is a seamless gray backdrop, lighter towards the top centre. Rubber is matte
with gentle shading; metal mirrors the gray surroundings (dark floor below the horizon,
bright backdrop above), shows sharp highlights of the lights and blurred reflections of
nearby objects, and gets darker and more saturated towards its silhouette.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# CLEVR's object colours (RGB 0..255).
COLORS = {"gray": (87, 87, 87), "red": (173, 35, 35), "blue": (42, 75, 215), "green": (29, 105, 20),
          "brown": (129, 74, 25), "purple": (129, 38, 192), "cyan": (41, 208, 208),
          "yellow": (255, 238, 51)}
# CLEVR's light positions (world frame) before jitter.
KEY, FILL, BACK = (6.44, -2.90, 4.20), (-4.67, -4.01, 3.01), (-1.19, 2.65, 5.78)


@dataclass(frozen=True)
class Lighting:
    """One render's lights and global look; every field drawn by `Lighting.sample`."""

    positions: np.ndarray  # (3, 3) key, fill, back positions
    intensities: np.ndarray  # (3,)
    ambient: float
    floor_gray: float  # floor albedo, display space
    tint: np.ndarray  # (3,) global colour balance multiplier
    shadow_strength: float
    noise: float  # std of per-pixel noise, display space

    @classmethod
    def sample(cls, rng: np.random.Generator, jitter: float = 1.0) -> "Lighting":
        pos = np.array([KEY, FILL, BACK]) + rng.uniform(-jitter, jitter, (3, 3))
        pos[:, 2] = np.maximum(pos[:, 2], 2.0)
        inten = np.array([0.80, 0.30, 0.25]) * rng.uniform(0.88, 1.12, 3)
        return cls(positions=pos, intensities=inten, ambient=float(rng.uniform(0.30, 0.38)),
                   floor_gray=float(rng.uniform(0.47, 0.55)), tint=1.0 + rng.normal(0.0, 0.006, 3),
                   shadow_strength=float(rng.uniform(0.45, 0.6)), noise=float(rng.uniform(0.003, 0.008)))


def floor_image(width: int, height: int, ground: np.ndarray, light: Lighting) -> np.ndarray:
    """Unshadowed floor (H, W, 3): gray, lighter towards the top centre and near the key light.

    `ground` (H, W, 3) holds each pixel's point on the ground plane.
    """
    y = (np.arange(height, dtype=np.float32) + 0.5)[:, None] / height
    x = (np.arange(width, dtype=np.float32) + 0.5)[None, :] / width
    glow = np.exp(-((x - 0.5) ** 2 / 0.16 + (y + 0.05) ** 2 / 0.45))  # (H, W)
    key = light.positions[0]
    d2 = ((ground[..., 0] - key[0]) ** 2 + (ground[..., 1] - key[1]) ** 2 + key[2] ** 2)
    lam = key[2] / np.sqrt(d2) * (40.0 / (d2 + 20.0))  # cosine times a gentle falloff
    shade = light.ambient * 1.5 + 0.35 * glow + 0.35 * light.intensities[0] * lam
    g = light.floor_gray * shade
    return (g[..., None] * light.tint[None, None, :]).astype(np.float32)


def shade_rubber(albedo, n, v, lights_dir, light: Lighting) -> np.ndarray:
    """Matte shading: albedo (3,), normals n (N, 3), view vectors v (N, 3), light dirs (3, 3) -> (N, 3)."""
    diff = np.clip(n @ lights_dir.T, 0.0, None) @ light.intensities  # (N,)
    amb = light.ambient * (0.75 + 0.25 * n[:, 2])
    h = lights_dir[0] + v
    h /= np.linalg.norm(h, axis=1, keepdims=True)
    spec = 0.05 * np.clip(np.einsum("ij,ij->i", n, h), 0.0, None) ** 10
    return albedo[None, :] * (amb + 1.05 * diff)[:, None] + spec[:, None]


def shade_metal(albedo, n, v, lights_dir, light: Lighting, points, others, scale: float,
                streak: bool = False) -> np.ndarray:
    """Mirror-like coloured metal.

    In: albedo (3,), normals n (N, 3), view vectors v (N, 3), light dirs (3, 3), surface points (N, 3),
    `others`: [(centre (3,), radius, colour (3,))] of the nearby objects to reflect, `scale`: the
    object's half-extent (sets how far its contact shadow reaches in the reflection), `streak`: stretch
    the key highlight vertically (for a cylinder's side).
    Out: colours (N, 3).
    """
    ndv = np.clip(np.einsum("ij,ij->i", n, v), 0.0, 1.0)
    r = 2.0 * ndv[:, None] * n - v  # reflected view ray
    rz = r[:, 2]
    # the floor seen in the mirror is darker close to the object (its contact shadow)
    reach = points[:, 2] / np.clip(-rz, 1e-3, None)  # ground distance of the reflected ray
    floor = light.floor_gray * (0.75 + 0.3 * light.ambient) * (1.0 - 0.55 * np.exp(-reach / scale))
    sky = 0.8 + 0.3 * np.clip(rz, 0.0, 1.0) ** 0.7
    t = np.clip((rz + 0.12) / 0.3, 0.0, 1.0)
    env = floor + (sky - floor) * t * t * (3 - 2 * t)  # (N,) blurred horizon
    env = np.repeat(env[:, None], 3, axis=1)
    for centre, radius, colour in others:
        d = centre[None, :] - points
        dist = np.linalg.norm(d, axis=1)
        cos_a = np.einsum("ij,ij->i", r, d) / dist
        ang = np.arcsin(np.clip(radius / dist, 0.0, 1.0))
        lo, hi = np.cos(ang * 1.25), np.cos(ang * 0.75)
        w = np.clip((cos_a - lo) / (hi - lo + 1e-6), 0.0, 1.0)
        w = 0.8 * w * w * (3 - 2 * w)
        env = env * (1 - w[:, None]) + (0.65 * colour)[None, :] * w[:, None]
    rim = 1.0 - ndv
    tinted = albedo[None, :] ** (0.75 + 1.3 * rim[:, None])  # darker and more saturated at the rim
    rl = np.clip(r @ lights_dir.T, 0.0, None)  # (N, 3)
    highlight = (rl[:, 0] ** 120 * 3.0 * light.intensities[0] + rl[:, 0] ** 10 * 0.25 * light.intensities[0]
                 + rl[:, 1] ** 40 * 0.8 * light.intensities[1] + rl[:, 2] ** 40 * 0.6 * light.intensities[2])
    if streak:  # a large light on a curved vertical side: a vertical streak (horizontal alignment only)
        rh = r[:, :2] / (np.linalg.norm(r[:, :2], axis=1, keepdims=True) + 1e-6)
        kh = lights_dir[0, :2] / (np.linalg.norm(lights_dir[0, :2]) + 1e-6)
        highlight = highlight + (np.clip(rh @ kh, 0.0, None) ** 30 * (1.0 - np.abs(n[:, 2]))
                                 * 0.45 * light.intensities[0])
    diff = np.clip(n @ lights_dir.T, 0.0, None) @ light.intensities
    base = tinted * (1.2 * env + 0.15 * diff[:, None]) * (0.8 + 0.2 * ndv[:, None])
    return base + highlight[:, None] * (0.6 + 0.4 * albedo[None, :])
