"""Solids of the synthetic world and vectorised ray intersection with them.

A `Solid` is one CLEVR object in the world frame: a sphere, a (bevelled) cube or a
(bevelled) cylinder standing on the ground plane, turned by `theta` about the vertical
axis. The bevel only rounds the shading normals near edges (the silhouette stays the
exact box or cylinder), which is what makes CLEVR's "smooth" cube edges catch light.

    t = solid.intersect(origins, dirs)   # (N, 3), (N, 3) -> (N,) ray distance, inf on a miss
    n = solid.normals(points)            # (N, 3) world points on the surface -> (N, 3) unit normals
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Half-extent of an object of CLEVR size r: spheres and cylinders have radius r (and a
# cylinder half-height r); CLEVR shrinks cubes by sqrt(2) so that they fit the same circle.
SIZE_RADIUS = {"large": 0.7, "small": 0.35}
BEVEL = 0.12  # bevel radius as a fraction of the half-extent


def half_extent(shape: str, size: str) -> float:
    r = SIZE_RADIUS[size]
    return r / math.sqrt(2) if shape == "cube" else r


@dataclass(frozen=True)
class Solid:
    shape: str  # "sphere" | "cube" | "cylinder"
    centre: tuple[float, float, float]
    theta: float  # radians about +z
    s: float  # half-extent (radius, half-side)

    @classmethod
    def from_object(cls, obj: dict) -> "Solid":
        return cls(obj["shape"], tuple(float(v) for v in obj["3d_coords"]),
                   math.radians(float(obj.get("rotation", 0.0))), half_extent(obj["shape"], obj["size"]))

    # ---- frames ---------------------------------------------------------------
    def _to_local(self, v: np.ndarray, is_point: bool) -> np.ndarray:
        if is_point:
            v = v - np.asarray(self.centre, v.dtype)
        c, s = math.cos(self.theta), math.sin(self.theta)
        out = np.empty_like(v)
        out[..., 0] = c * v[..., 0] + s * v[..., 1]
        out[..., 1] = -s * v[..., 0] + c * v[..., 1]
        out[..., 2] = v[..., 2]
        return out

    def _to_world_dir(self, v: np.ndarray) -> np.ndarray:
        c, s = math.cos(self.theta), math.sin(self.theta)
        out = np.empty_like(v)
        out[..., 0] = c * v[..., 0] - s * v[..., 1]
        out[..., 1] = s * v[..., 0] + c * v[..., 1]
        out[..., 2] = v[..., 2]
        return out

    def surface_points(self) -> np.ndarray:
        """Points (K, 3) whose projections bound the solid's silhouette (for boxes)."""
        s = self.s
        if self.shape == "cube":
            local = _CUBE_CORNERS * s
        elif self.shape == "cylinder":
            local = _CYLINDER_RIMS * s
        else:
            local = _SPHERE_POINTS * s
        return self._to_world_dir(local.copy()) + np.asarray(self.centre)

    # ---- intersection -----------------------------------------------------------
    def intersect(self, origins: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        """Distance along each ray to the first hit in front of its origin; inf on a miss."""
        d = self._to_local(np.asarray(dirs, np.float32), False)
        o = np.broadcast_to(self._to_local(np.asarray(origins, np.float32), True), d.shape)
        if self.shape == "sphere":
            return _sphere(o, d, self.s)
        if self.shape == "cube":
            return _box(o, d, self.s)
        return _cylinder(o, d, self.s)

    def normals(self, points: np.ndarray) -> np.ndarray:
        """Unit shading normals (N, 3) at surface points (N, 3), bevel-rounded near edges."""
        p = self._to_local(points, True)
        s, b = self.s, self.s * BEVEL
        if self.shape == "sphere":
            n = p
        elif self.shape == "cube":
            n = p - np.clip(p, -(s - b), s - b)
        else:
            rho = np.sqrt(p[:, 0] ** 2 + p[:, 1] ** 2) + 1e-9
            k = 1.0 - np.minimum(rho, s - b) / rho
            n = np.stack([p[:, 0] * k, p[:, 1] * k, p[:, 2] - np.clip(p[:, 2], -(s - b), s - b)], axis=1)
        n = n / (np.linalg.norm(n, axis=1, keepdims=True) + 1e-9)
        return self._to_world_dir(n)


def _sphere(o, d, r):
    b = np.einsum("ij,ij->i", o, d)
    c = np.einsum("ij,ij->i", o, o) - r * r
    disc = b * b - c
    hit = disc >= 0
    t = -b - np.sqrt(np.where(hit, disc, 0))
    return np.where(hit & (t > 1e-4), t, np.inf)


def _box(o, d, s):
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / np.where(np.abs(d) < 1e-9, 1e-9, d)
        t1 = (-s - o) * inv
        t2 = (s - o) * inv
    tmin = np.minimum(t1, t2).max(axis=1)
    tmax = np.maximum(t1, t2).min(axis=1)
    hit = (tmin <= tmax) & (tmin > 1e-4)
    return np.where(hit, tmin, np.inf)


def _cylinder(o, d, r):
    h = r
    a = d[:, 0] ** 2 + d[:, 1] ** 2
    b = o[:, 0] * d[:, 0] + o[:, 1] * d[:, 1]
    c = o[:, 0] ** 2 + o[:, 1] ** 2 - r * r
    disc = b * b - a * c
    ok = (disc >= 0) & (a > 1e-12)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_side = (-b - np.sqrt(np.where(ok, disc, 0))) / np.where(ok, a, 1)
        z = o[:, 2] + t_side * d[:, 2]
        t_side = np.where(ok & (np.abs(z) <= h) & (t_side > 1e-4), t_side, np.inf)
        dz = np.where(np.abs(d[:, 2]) < 1e-9, 1e-9, d[:, 2])
        t_cap = np.where(d[:, 2] < 0, (h - o[:, 2]) / dz, (-h - o[:, 2]) / dz)
    x = o[:, 0] + t_cap * d[:, 0]
    y = o[:, 1] + t_cap * d[:, 1]
    t_cap = np.where((x * x + y * y <= r * r) & (t_cap > 1e-4), t_cap, np.inf)
    return np.minimum(t_side, t_cap)


def _sphere_points(n_lat: int = 24, n_lon: int = 48) -> np.ndarray:
    lat = np.linspace(-math.pi / 2, math.pi / 2, n_lat)
    lon = np.linspace(0, 2 * math.pi, n_lon, endpoint=False)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], -1).reshape(-1, 3)


_CUBE_CORNERS = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)
_ang = np.linspace(0, 2 * math.pi, 96, endpoint=False)
_CYLINDER_RIMS = np.concatenate([np.stack([np.cos(_ang), np.sin(_ang), np.full_like(_ang, z)], 1)
                                 for z in (-1.0, 1.0)])
_SPHERE_POINTS = _sphere_points()
