"""Signed distance functions of the toy shapes, shared by the renderer and the oracle.

Every shape is defined at unit circumradius around the origin; ``signed_distance(shape, x, y)`` is negative
inside, positive outside, in the same unit as ``x`` and ``y``. Arrays broadcast, so the oracle can evaluate many
rotations at once.
"""

from __future__ import annotations

import math

import numpy as np

from .vocabulary import SHAPES


def _regular(n: int, phase: float) -> np.ndarray:
    a = phase + 2 * math.pi * np.arange(n) / n
    return np.stack([np.cos(a), np.sin(a)], axis=1)


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    a = math.pi / 2 + math.pi * np.arange(2 * points) / points
    r = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([r * np.cos(a), r * np.sin(a)], axis=1)


def _cross(w: float = 0.34) -> np.ndarray:
    return np.array(
        [(w, 1), (-w, 1), (-w, w), (-1, w), (-1, -w), (-w, -w), (-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w)],
        dtype=np.float64,
    )


POLYGONS: dict[str, np.ndarray] = {
    "square": _regular(4, math.pi / 4),
    "triangle": _regular(3, math.pi / 2),
    "star": _star(),
    "cross": _cross(),
}
RING_INNER = 0.58  # inner radius of the ring, as a fraction of the outer one

# Rotational symmetry period of each shape (radians); circle and ring need no rotation search.
SYMMETRY: dict[str, float] = {
    "circle": 0.0,
    "ring": 0.0,
    "square": math.pi / 2,
    "triangle": 2 * math.pi / 3,
    "star": 2 * math.pi / 5,
    "cross": math.pi / 2,
}


def _polygon_sdf(vertices: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Exact signed distance to a simple polygon: min distance to its edges, sign by even-odd crossing."""
    dist2 = np.full(np.broadcast(x, y).shape, np.inf)
    inside = np.zeros(dist2.shape, dtype=bool)
    n = len(vertices)
    for i in range(n):
        ax, ay = vertices[i]
        bx, by = vertices[(i + 1) % n]
        ex, ey = bx - ax, by - ay
        px, py = x - ax, y - ay
        t = np.clip((px * ex + py * ey) / (ex * ex + ey * ey), 0.0, 1.0)
        dx, dy = px - t * ex, py - t * ey
        dist2 = np.minimum(dist2, dx * dx + dy * dy)
        crosses = (ay > y) != (by > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = ax + (y - ay) * ex / (ey if ey != 0 else np.inf)
        inside ^= crosses & (x < x_at)
    d = np.sqrt(dist2)
    return np.where(inside, -d, d)


def signed_distance(shape: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Signed distance to ``shape`` at unit circumradius; negative inside."""
    if shape == "circle":
        return np.hypot(x, y) - 1.0
    if shape == "ring":
        half = (1.0 - RING_INNER) / 2
        return np.abs(np.hypot(x, y) - (1.0 - half)) - half
    if shape in POLYGONS:
        return _polygon_sdf(POLYGONS[shape], x, y)
    raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")


def coverage(shape: str, x: np.ndarray, y: np.ndarray, radius: float) -> np.ndarray:
    """Anti-aliased pixel coverage in [0, 1] of ``shape`` with circumradius ``radius`` (pixel units in x, y)."""
    d = signed_distance(shape, x / radius, y / radius) * radius
    return np.clip(0.5 - d, 0.0, 1.0)


def _unit_area(shape: str, n: int = 801) -> float:
    g = np.linspace(-1.05, 1.05, n)
    x, y = np.meshgrid(g, g)
    return float((signed_distance(shape, x, y) < 0).mean() * (2.1**2))


UNIT_AREA: dict[str, float] = {s: _unit_area(s) for s in SHAPES}
