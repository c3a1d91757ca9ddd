"""The pinhole camera of the synthetic world (CLEVR's camera, without Blender).

World frame as in CLEVR: z up, objects stand on the ground plane z = 0, positions in
scene units. CLEVR's camera sits at about (7.36, -6.93, 4.96), looks at the origin with
a 35 mm lens on a 32 mm wide sensor, and only its position is jittered, so the
ground-plane `directions` are the same for every scene.

    cam = Camera.at((7.4, -6.9, 5.0), width=320, height=240)
    px, py, depth = cam.project(points)      # points (N, 3) -> three (N,) arrays
    rays = cam.ray_directions(ss=2)          # (H*ss, W*ss, 3) unit vectors, world frame
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

BASE_LOCATION = (7.3589, -6.9258, 4.9583)
LOOK_AT = (0.0, 0.0, 0.0)
LENS_MM, SENSOR_MM = 35.0, 32.0


def _basis(location, look_at) -> np.ndarray:
    """Rows: right, up, forward (unit vectors in the world frame)."""
    f = np.asarray(look_at, float) - np.asarray(location, float)
    f /= np.linalg.norm(f)
    right = np.cross(f, (0.0, 0.0, 1.0))
    right /= np.linalg.norm(right)
    up = np.cross(right, f)
    return np.stack([right, up, f])


@dataclass(frozen=True)
class Camera:
    """Pinhole camera: `location` (3,), fixed orientation `basis` (3, 3), image size in pixels."""

    location: tuple[float, float, float]
    width: int
    height: int

    @classmethod
    def at(cls, location, *, width: int, height: int) -> "Camera":
        return cls(tuple(float(v) for v in location), int(width), int(height))

    @property
    def basis(self) -> np.ndarray:
        return _basis_cached()

    @property
    def focal_px(self) -> float:
        """Focal length in pixels (Blender's automatic sensor fit: the sensor spans the width)."""
        return self.width * LENS_MM / SENSOR_MM

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World points (N, 3) -> pixel x (N,), pixel y (N,), depth along the view axis (N,)."""
        rel = np.asarray(points, float) - np.asarray(self.location)
        cam = rel @ self.basis.T  # (N, 3): right, up, forward
        depth = cam[:, 2]
        x = self.width / 2 + self.focal_px * cam[:, 0] / depth
        y = self.height / 2 - self.focal_px * cam[:, 1] / depth
        return x, y, depth

    def ray_directions(self, ss: int = 1) -> np.ndarray:
        """Unit ray directions through pixel centres of a `ss`-times supersampled image: (H*ss, W*ss, 3)."""
        return _rays(self.width, self.height, ss)

    def directions(self) -> dict[str, list[float]]:
        """CLEVR's `directions`: camera-aligned unit vectors on the ground plane, plus above/below."""
        right, _, forward = self.basis
        behind = np.array([forward[0], forward[1], 0.0])
        behind /= np.linalg.norm(behind)
        left = np.array([-right[0], -right[1], 0.0])
        left /= np.linalg.norm(left)
        r = lambda v: [round(float(c), 6) + 0.0 for c in v]  # noqa: E731 (+0.0: no -0.0 in JSON)
        return {"left": r(left), "right": r(-left), "front": r(-behind), "behind": r(behind),
                "above": [0.0, 0.0, 1.0], "below": [0.0, 0.0, -1.0]}

    def to_dict(self) -> dict:
        right, up, forward = self.basis
        return {"location": [round(v, 6) for v in self.location], "look_at": list(LOOK_AT),
                "focal_px": self.focal_px, "forward": [round(float(v), 6) for v in forward]}


@lru_cache(maxsize=1)
def _basis_cached() -> np.ndarray:
    b = _basis(BASE_LOCATION, LOOK_AT)
    b.setflags(write=False)
    return b


@lru_cache(maxsize=8)
def _rays(width: int, height: int, ss: int) -> np.ndarray:
    basis = _basis_cached()
    f = width * LENS_MM / SENSOR_MM * ss
    u = (np.arange(width * ss) + 0.5) - width * ss / 2
    v = height * ss / 2 - (np.arange(height * ss) + 0.5)
    d = (u[None, :, None] * basis[0] + v[:, None, None] * basis[1] + f * basis[2]).astype(np.float32)
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    d.setflags(write=False)
    return d
