"""Drawing primitives shared by the chest X-ray and CT phantoms.

Everything is pure numpy on coordinate grids. A shape is described by a signed
"inside" field ``g`` (positive inside, roughly in patient units near the edge);
``soft(g, eps)`` gives the anti-aliased picture of it and ``g > 0`` its mask, so
image and ground-truth mask always share one geometry.

Patient coordinates: ``u`` runs left to right across the image and ``v`` top to
bottom, both about [-1, 1] at scale 1; radiological convention, so the patient's
right is at ``u < 0`` (image left). A small rotation, scale and shift map them to
pixels (acquisition variation).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class Pose:
    """Where the patient lies in the image: rotation (rad), scale, shift (image units)."""

    rot: float = 0.0  # counter-clockwise in the image plane
    scale: float = 1.0  # > 1 zooms in
    shift: tuple[float, float] = (0.0, 0.0)  # (x, y) of the patient origin in image units [-1, 1]

    def grid(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Patient coordinates (u, v) of every pixel centre, each (size, size) float32."""
        t = (np.arange(size, dtype=np.float32) + 0.5) * (2.0 / size) - 1.0
        x = (t - self.shift[0])[None, :]
        y = (t - self.shift[1])[:, None]
        c, s = np.float32(np.cos(self.rot)), np.float32(np.sin(self.rot))
        inv = np.float32(1.0 / self.scale)
        u = (c * x + s * y) * inv  # (size, size)
        v = (c * y - s * x) * inv
        return u.astype(np.float32), v.astype(np.float32)

    def to_pixel(self, u: float, v: float, size: int) -> tuple[float, float]:
        """Patient (u, v) -> fractional (row, col) of the pixel grid."""
        c, s = np.cos(self.rot), np.sin(self.rot)
        x = self.scale * (c * u - s * v) + self.shift[0]
        y = self.scale * (s * u + c * v) + self.shift[1]
        return (y + 1.0) * size / 2.0 - 0.5, (x + 1.0) * size / 2.0 - 0.5

    def units_per_pixel(self, size: int) -> float:
        return 2.0 / (size * self.scale)


def soft(g: np.ndarray, eps: float) -> np.ndarray:
    """Anti-aliased indicator of ``g > 0`` with an edge about ``eps`` wide."""
    return np.clip(g * np.float32(1.0 / eps) + np.float32(0.5), 0.0, 1.0)


def ellipse_g(u, v, cu, cv, au, av, angle: float = 0.0):
    """Inside field of an ellipse (centre, semi-axes, rotation), ~ distance near the edge."""
    du, dv = u - np.float32(cu), v - np.float32(cv)
    if angle:
        c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
        du, dv = c * du + s * dv, c * dv - s * du
    r2 = (du * np.float32(1.0 / au)) ** 2 + (dv * np.float32(1.0 / av)) ** 2
    return (1.0 - r2) * np.float32(0.5 * min(au, av))


def segment_g(u, v, p0, p1, half_width: float):
    """Inside field of a thick line segment from p0 to p1 (a capsule)."""
    (u0, v0), (u1, v1) = p0, p1
    du, dv = u1 - u0, v1 - v0
    length2 = du * du + dv * dv
    t = np.clip(((u - u0) * du + (v - v0) * dv) / np.float32(length2), 0.0, 1.0)
    d = np.hypot(u - (u0 + t * du), v - (v0 + t * dv))
    return np.float32(half_width) - d


@lru_cache(maxsize=32)
def _interp_matrix(size: int, cells: int) -> np.ndarray:
    """(size, cells) linear-interpolation weights from a coarse grid to pixels."""
    pos = (np.arange(size) + 0.5) * (cells - 1) / size
    w = np.maximum(0.0, 1.0 - np.abs(pos[:, None] - np.arange(cells)[None, :]))
    return w.astype(np.float32)


def noise_field(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth random field with unit-ish std and features about size/cells pixels wide.

    Coarse normal noise, smoothed by interpolating twice (cheap: two small matmuls).
    """
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    # a [1, 2, 1] box blur on the coarse grid removes the linear-interp creases
    coarse = (np.roll(coarse, 1, 0) + 2 * coarse + np.roll(coarse, -1, 0)) * 0.25
    coarse = (np.roll(coarse, 1, 1) + 2 * coarse + np.roll(coarse, -1, 1)) * 0.25
    w = _interp_matrix(size, cells)
    out = w @ coarse @ w.T  # (size, size)
    return out * np.float32(1.0 / (out.std() + 1e-6))


def ridges(field: np.ndarray, width: float) -> np.ndarray:
    """Thin bright lines along the zero set of a smooth field (vessel-like network)."""
    return np.exp(-((field * np.float32(1.0 / width)) ** 2))
