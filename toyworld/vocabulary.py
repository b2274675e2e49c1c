"""The words of the toy world: named colours, shapes, size and position words.

One table for the renderer, the caption grammar and the oracle, so the three can never disagree.
"""

from __future__ import annotations

# sRGB values in [0, 1]. Chosen to be far apart from each other, also when blended toward any other
# palette colour as a background (the renderer's contrast control).
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.86, 0.12, 0.12),
    "orange": (0.96, 0.52, 0.08),
    "yellow": (0.95, 0.88, 0.12),
    "green": (0.16, 0.67, 0.24),
    "blue": (0.12, 0.28, 0.86),
    "purple": (0.52, 0.20, 0.71),
    "pink": (0.96, 0.50, 0.76),
    "cyan": (0.10, 0.78, 0.84),
    "white": (0.96, 0.96, 0.96),
    "black": (0.08, 0.08, 0.08),
}

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "ring", "cross")

# Size words by the object's extent (circumradius in pixels of a 64x64 image).
SIZE_WORDS: dict[str, tuple[str, ...]] = {
    "small": ("small", "tiny", "little"),
    "large": ("large", "big", "huge"),
}
SMALL_BELOW_PX = 10.0
LARGE_ABOVE_PX = 19.0

# Position words by the 3x3 cell the object's centre falls in: (row, col) -> phrase.
POSITION_WORDS: dict[tuple[int, int], str] = {
    (0, 0): "in the top left",
    (0, 1): "at the top",
    (0, 2): "in the top right",
    (1, 0): "on the left",
    (1, 1): "in the centre",
    (1, 2): "on the right",
    (2, 0): "in the bottom left",
    (2, 1): "at the bottom",
    (2, 2): "in the bottom right",
}

IMAGE_SIZE = 64
