"""Render a toy scene to a 64x64 RGB image (uint8, HxWx3), deterministically."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from .scene import Scene
from .shapes import coverage
from .vocabulary import COLOURS, IMAGE_SIZE


def pixel_grid(size: int = IMAGE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (x to the right, y downwards)."""
    g = np.arange(size, dtype=np.float64) + 0.5
    return np.meshgrid(g, g)


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of an HxWxC float image with edge padding."""
    if sigma <= 0:
        return image
    r = max(1, int(math.ceil(3 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    padded = np.pad(image, ((r, r), (0, 0), (0, 0)), mode="edge")
    image = sum(k[i] * padded[i : i + image.shape[0]] for i in range(2 * r + 1))
    padded = np.pad(image, ((0, 0), (r, r), (0, 0)), mode="edge")
    return sum(k[i] * padded[:, i : i + image.shape[1]] for i in range(2 * r + 1))


def render_float(scene: Scene, size: int = IMAGE_SIZE) -> np.ndarray:
    """Render to float32 HxWx3 in [0, 1]."""
    x, y = pixel_grid(size)
    c, s = math.cos(scene.rotation), math.sin(scene.rotation)
    dx, dy = x - scene.cx, y - scene.cy
    # Rotate the sampling grid by -rotation (the shape by +rotation); y is flipped so "up" is up.
    u = c * dx + s * dy
    v = -(-s * dx + c * dy)
    alpha = coverage(scene.shape, u, v, scene.radius)[..., None]
    jitter = np.asarray(scene.jitter, dtype=np.float64)
    background = np.clip(np.asarray(COLOURS[scene.background]) + jitter[3:], 0, 1)
    named = np.clip(np.asarray(COLOURS[scene.colour]) + jitter[:3], 0, 1)
    obj = background + scene.contrast * (named - background)
    image = background * (1 - alpha) + obj * alpha
    image = gaussian_blur(image, scene.blur)
    if scene.noise > 0:
        image = image + np.random.default_rng(scene.noise_seed).normal(0.0, scene.noise, image.shape)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def render(scene: Scene, size: int = IMAGE_SIZE) -> np.ndarray:
    """Render to uint8 HxWx3."""
    return np.round(render_float(scene, size) * 255).astype(np.uint8)


def render_pil(scene: Scene, size: int = IMAGE_SIZE) -> Image.Image:
    return Image.fromarray(render(scene, size))
