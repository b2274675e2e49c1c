"""A toy scene: what is drawn, and how a scene is drawn at random.

Every attribute varies widely (size, position, rotation, contrast, blur, noise) so that a reward has something to
prefer. ``sample_scene`` never returns a held-out (colour, shape, background) combination unless asked to.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .splits import HELD_OUT, is_held_out
from .vocabulary import COLOURS, IMAGE_SIZE, SHAPES

MIN_RADIUS, MAX_RADIUS = 6.0, 26.0


@dataclass(frozen=True)
class Scene:
    colour: str
    shape: str
    background: str
    radius: float  # circumradius in pixels
    cx: float  # centre, pixels, x to the right
    cy: float  # centre, pixels, y downwards
    rotation: float  # radians
    contrast: float  # 1 = the named colour, lower = blended toward the background
    blur: float  # Gaussian sigma in pixels (0 = sharp)
    noise: float  # std of additive Gaussian noise in [0, 1] units (0 = clean)
    jitter: tuple[float, ...] = (0.0,) * 6  # per-channel colour jitter of object (3) and background (3)
    noise_seed: int = 0  # seed of the noise pattern, so a scene renders to the same pixels every time

    def to_dict(self) -> dict:
        return asdict(self)


def sample_scene(
    rng: np.random.Generator,
    *,
    split: str = "train",
    clean: bool = False,
    size: int = IMAGE_SIZE,
) -> Scene:
    """Draw a random scene.

    split: "train" excludes the held-out combinations, "heldout" draws only from them, "all" from everything.
    clean: no blur and no noise (what the oracle's accuracy test uses).
    """
    colours = list(COLOURS)
    if split == "heldout":
        colour, shape, background = sorted(HELD_OUT)[rng.integers(len(HELD_OUT))]
    else:
        while True:
            colour = colours[rng.integers(len(colours))]
            shape = SHAPES[rng.integers(len(SHAPES))]
            background = colours[rng.integers(len(colours))]
            if background == colour:
                continue
            if split == "train" and is_held_out(colour, shape, background):
                continue
            if split not in ("train", "all"):
                raise ValueError(f"unknown split {split!r}; use 'train', 'heldout' or 'all'")
            break
    # Size: favour the whole range, a little more mass on small and mid sizes as in web photos.
    radius = float(MIN_RADIUS + (MAX_RADIUS - MIN_RADIUS) * rng.beta(1.2, 1.5))
    margin = radius + 1.0
    cx = float(rng.uniform(margin, size - margin))
    cy = float(rng.uniform(margin, size - margin))
    rotation = float(rng.uniform(0, 2 * math.pi))
    contrast = float(rng.uniform(0.45, 1.0))
    blur = 0.0 if clean or rng.random() < 0.35 else float(rng.uniform(0.3, 2.5))
    noise = 0.0 if clean or rng.random() < 0.35 else float(rng.uniform(0.01, 0.12))
    jitter = tuple(float(v) for v in rng.uniform(-0.04, 0.04, size=6))
    noise_seed = int(rng.integers(2**31))
    return Scene(colour, shape, background, radius, cx, cy, rotation, contrast, blur, noise, jitter, noise_seed)
