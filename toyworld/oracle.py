"""The oracle: reads any 64x64 image back into attributes, and defines the hidden *taste*.

``analyse(image)`` finds the background colour (median of the border), segments the object by its colour distance
to the background, names its colour (the palette colour whose blend toward the background explains the object's
colour best), names its shape (the shape template, at the object's area and best rotation, with the highest
IoU), and measures area, centre, extent, contrast, sharpness and noise.

``taste(image, caption)`` plays the people who voted in Pick-a-Pic: prompt fidelity (right colour, shape and
background, plus size and position words when the caption has them) and an aesthetic (large, centred,
high-contrast, sharp, clean objects). It is for evaluation only; the alignment code never sees it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from .captions import CaptionAttributes, parse_caption, position_cell, size_class
from .shapes import SYMMETRY, UNIT_AREA, signed_distance
from .vocabulary import COLOURS, SHAPES

_PALETTE = np.array(list(COLOURS.values()))
_NAMES = list(COLOURS)
ROTATION_STEPS = 15
MIN_PEAK = 0.06  # below this colour distance from the background there is no object to read
SHARP_REFERENCE = 0.60  # edge gradient / contrast of a sharp anti-aliased edge (measured on clean renders)
FIDELITY_WEIGHT, AESTHETIC_WEIGHT = 6.0, 4.0


@dataclass(frozen=True)
class Reading:
    """What the oracle reads off one image."""

    found: bool
    colour: str | None
    shape: str | None
    background: str
    area_fraction: float
    cx: float
    cy: float
    extent: float  # robust max distance of object pixels from its centre, pixels
    contrast: float  # colour distance object-background, in [0, 1]
    sharpness: float  # in [0, 1], 1 = as sharp as an anti-aliased render
    noise: float  # estimated per-channel noise std, [0, 1] units
    shape_iou: float

    def to_dict(self) -> dict:
        return asdict(self)


def as_float_image(image) -> np.ndarray:
    """PIL image, uint8 array or float array in [0, 1] -> float64 HxWx3 in [0, 1]."""
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {image.shape}")
    if image.dtype == np.uint8:
        return image.astype(np.float64) / 255.0
    if image.size and float(np.nanmax(image)) > 1.5:
        raise ValueError("a float image must hold values in [0, 1]; pass uint8 for 0-255 data")
    return np.clip(np.nan_to_num(image.astype(np.float64)), 0.0, 1.0)


def _box3(a: np.ndarray) -> np.ndarray:
    p = np.pad(a, 1, mode="edge")
    h, w = a.shape
    return sum(p[i : i + h, j : j + w] for i in range(3) for j in range(3)) / 9.0


def _nearest_colour(rgb: np.ndarray) -> int:
    return int(np.argmin(((_PALETTE - rgb) ** 2).sum(axis=1)))


def _name_object_colour(obj: np.ndarray, bg: np.ndarray, bg_index: int) -> str:
    """The palette colour n minimising |obj - (bg + c (n - bg))| over a contrast c in [0.25, 1.15]."""
    best, best_err = None, math.inf
    for i, n in enumerate(_PALETTE):
        if i == bg_index:
            continue
        direction = n - bg
        c = float(np.clip(np.dot(obj - bg, direction) / max(np.dot(direction, direction), 1e-9), 0.25, 1.15))
        err = float(np.linalg.norm(obj - bg - c * direction))
        if err < best_err:
            best, best_err = _NAMES[i], err
    return best


def _name_shape(mask: np.ndarray, cx: float, cy: float) -> tuple[str, float]:
    area = float(mask.sum())
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min() - 2, ys.max() + 3, xs.min() - 2, xs.max() + 3
    crop = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    crop[ys - y0, xs - x0] = True
    mask = crop
    gy, gx = np.mgrid[y0:y1, x0:x1].astype(np.float64) + 0.5
    dx, dy = gx - cx, gy - cy
    best, best_iou = SHAPES[0], -1.0
    for shape in SHAPES:
        radius = math.sqrt(area / UNIT_AREA[shape])
        period = SYMMETRY[shape]
        angles = np.array([0.0]) if period == 0 else np.arange(ROTATION_STEPS) * period / ROTATION_STEPS
        c, s = np.cos(angles)[:, None, None], np.sin(angles)[:, None, None]
        u = (c * dx + s * dy) / radius
        v = -(-s * dx + c * dy) / radius
        template = signed_distance(shape, u, v) < 0
        inter = (template & mask).sum(axis=(1, 2))
        union = (template | mask).sum(axis=(1, 2))
        iou = float((inter / np.maximum(union, 1)).max())
        if iou > best_iou:
            best, best_iou = shape, iou
    return best, best_iou


def analyse(image) -> Reading:
    """Read colour, shape, background, area, centre, extent, contrast, sharpness and noise off an image."""
    img = as_float_image(image)
    h, w, _ = img.shape
    border = np.concatenate([img[:2].reshape(-1, 3), img[-2:].reshape(-1, 3), img[:, :2].reshape(-1, 3), img[:, -2:].reshape(-1, 3)])
    bg = np.median(border, axis=0)
    bg_index = _nearest_colour(bg)
    dist = np.linalg.norm(img - bg, axis=2)
    smooth = _box3(dist)
    residual = img - np.stack([_box3(img[..., k]) for k in range(3)], axis=2)
    rough_noise = float(np.median(np.abs(residual)) / 0.6745 / 0.943)
    if rough_noise < 0.02:  # clean enough: segment the unsmoothed distance, which keeps thin star points
        smooth = dist
    peak = float(np.percentile(smooth, 99.5))
    if peak < MIN_PEAK:
        noise = float(residual.std() / 0.943)
        return Reading(False, None, None, _NAMES[bg_index], 0.0, w / 2, h / 2, 0.0, 0.0, 0.0, noise, 0.0)
    mask = smooth > 0.5 * peak
    area = int(mask.sum())
    ys, xs = np.nonzero(mask)
    cx, cy = float(xs.mean() + 0.5), float(ys.mean() + 0.5)
    extent = float(np.percentile(np.hypot(xs + 0.5 - cx, ys + 0.5 - cy), 98)) if area else 0.0
    core = smooth > 0.8 * peak
    obj = img[core].mean(axis=0)
    colour = _name_object_colour(obj, bg, bg_index)
    shape, iou = _name_shape(mask, cx, cy)
    contrast = float(np.linalg.norm(obj - bg) / math.sqrt(3))
    gy, gx = np.gradient(smooth)
    grad = np.hypot(gx, gy)
    band = (smooth > 0.2 * peak) & (smooth < 0.8 * peak)
    edge = float(np.percentile(grad[band], 90)) if band.any() else 0.0
    sharpness = float(np.clip(edge / peak / SHARP_REFERENCE, 0.0, 1.0))
    # Noise is read on background pixels at least 2 px from the object: next to an edge, the 3x3 residual
    # measures the edge, not the noise.
    near = _box3(_box3(mask.astype(np.float64))) > 0
    far = (smooth < 0.15 * peak) & ~near
    noise = float(residual[far].std() / 0.943) if far.sum() > 16 else float(residual.std() / 0.943)
    return Reading(True, colour, shape, _NAMES[bg_index], area / (h * w), cx, cy, extent, contrast, sharpness, noise, iou)


@dataclass(frozen=True)
class Taste:
    """The hidden human taste of one image for one caption."""

    score: float  # FIDELITY_WEIGHT * fidelity + AESTHETIC_WEIGHT * aesthetic, in [0, 10]
    fidelity: float  # fraction of what the caption asks for that the image shows, in [0, 1]
    aesthetic: float  # in [0, 1]
    colour_ok: bool
    shape_ok: bool
    prompt_fidelity: bool  # colour and shape both right (the headline fidelity metric)
    reading: Reading

    def to_dict(self) -> dict:
        d = asdict(self)
        d["reading"] = self.reading.to_dict()
        return d


def aesthetic_of(reading: Reading, size: int = 64) -> float:
    """Large, centred, high-contrast, sharp and clean objects are preferred; each term in [0, 1]."""
    if not reading.found:
        return 0.0
    size_term = min(reading.extent / (0.375 * size), 1.0)
    offset = math.hypot(reading.cx - size / 2, reading.cy - size / 2)
    centred = 1.0 - min(offset / (0.35 * size), 1.0)
    contrast = min(reading.contrast / 0.45, 1.0)
    clean = 1.0 - min(reading.noise / 0.1, 1.0)
    return 0.3 * size_term + 0.25 * centred + 0.2 * contrast + 0.15 * reading.sharpness + 0.1 * clean


def taste(image, caption: str | CaptionAttributes) -> Taste:
    """Score ``image`` for ``caption`` as the toy world's people would (higher is better, in [0, 10])."""
    want = parse_caption(caption) if isinstance(caption, str) else caption
    r = analyse(image)
    h = as_float_image(image).shape[0]
    colour_ok = r.found and want.colour is not None and r.colour == want.colour
    shape_ok = r.found and want.shape is not None and r.shape == want.shape
    terms = []
    if want.colour is not None:
        terms.append(colour_ok)
    if want.shape is not None:
        terms.append(shape_ok)
    if want.background is not None:
        terms.append(r.background == want.background)
    if want.size is not None:
        terms.append(r.found and size_class(r.extent * 64 / h) == want.size)
    if want.position is not None:
        terms.append(r.found and position_cell(r.cx, r.cy, h) == want.position)
    fidelity = float(np.mean(terms)) if terms else float(r.found)
    aesthetic = aesthetic_of(r, h)
    score = FIDELITY_WEIGHT * fidelity + AESTHETIC_WEIGHT * aesthetic
    return Taste(score, fidelity, aesthetic, bool(colour_ok), bool(shape_ok), bool(colour_ok and shape_ok), r)
