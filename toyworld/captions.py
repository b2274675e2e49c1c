"""The caption grammar: write a caption for a scene, and parse a caption back into attributes.

Captions read like short web alt-texts: "a small red star on a blue background in the top left". Size and
position words are optional; a few percent of captions name a wrong object colour, as web data does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .scene import Scene
from .splits import is_held_out
from .vocabulary import COLOURS, LARGE_ABOVE_PX, POSITION_WORDS, SHAPES, SIZE_WORDS, SMALL_BELOW_PX

WRONG_COLOUR_RATE = 0.04
SIZE_WORD_RATE = 0.5
POSITION_WORD_RATE = 0.35

TEMPLATES = (
    "{a} {size}{colour} {shape} on {b} {background} background{position}",
    "{size}{colour} {shape}, {background} background{position}",
    "a picture of {a} {size}{colour} {shape} on {b} {background} background{position}",
)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def size_class(radius: float) -> str | None:
    if radius < SMALL_BELOW_PX:
        return "small"
    if radius > LARGE_ABOVE_PX:
        return "large"
    return None


def position_cell(cx: float, cy: float, size: int = 64) -> tuple[int, int]:
    return (min(2, int(3 * cy / size)), min(2, int(3 * cx / size)))


def caption_for(scene: Scene, rng: np.random.Generator, *, allow_wrong: bool = True) -> str:
    """Write a caption for ``scene``. With ``allow_wrong``, WRONG_COLOUR_RATE of captions misname the colour
    (never into a held-out combination, so training never sees a held-out caption)."""
    colour = scene.colour
    if allow_wrong and rng.random() < WRONG_COLOUR_RATE:
        options = [
            c
            for c in COLOURS
            if c not in (scene.colour, scene.background) and not is_held_out(c, scene.shape, scene.background)
        ]
        colour = options[rng.integers(len(options))]
    size = ""
    cls = size_class(scene.radius)
    if cls is not None and rng.random() < SIZE_WORD_RATE:
        words = SIZE_WORDS[cls]
        size = words[rng.integers(len(words))] + " "
    position = ""
    if rng.random() < POSITION_WORD_RATE:
        position = " " + POSITION_WORDS[position_cell(scene.cx, scene.cy)]
    template = TEMPLATES[rng.integers(len(TEMPLATES))]
    first = (size or colour)
    return template.format(
        a=_article(first),
        b=_article(scene.background),
        size=size,
        colour=colour,
        shape=scene.shape,
        background=scene.background,
        position=position,
    )


@dataclass(frozen=True)
class CaptionAttributes:
    """What a caption asks for; None where it does not say."""

    colour: str | None = None
    shape: str | None = None
    background: str | None = None
    size: str | None = None  # "small" | "large"
    position: tuple[int, int] | None = None


_WORD = re.compile(r"[a-z]+")
_SIZE_LOOKUP = {w: cls for cls, words in SIZE_WORDS.items() for w in words}
_SHAPE_PLURALS = {s + "s": s for s in SHAPES}


def parse_caption(text: str) -> CaptionAttributes:
    """Read the attributes a caption asks for. Works on any text: unknown words are ignored.

    The colour word right before "background" is the background; the first other colour word is the object's.
    """
    lowered = text.lower()
    words = _WORD.findall(lowered)
    colour = background = shape = size = None
    for i, w in enumerate(words):
        if w in COLOURS:
            nxt = words[i + 1] if i + 1 < len(words) else ""
            if nxt in ("background", "backdrop"):
                background = background or w
            elif colour is None:
                colour = w
        elif shape is None and (w in SHAPES or w in _SHAPE_PLURALS):
            shape = _SHAPE_PLURALS.get(w, w)
        elif size is None and w in _SIZE_LOOKUP:
            size = _SIZE_LOOKUP[w]
    position = None
    for cell, phrase in POSITION_WORDS.items():
        if phrase in lowered or (phrase.replace("centre", "center") in lowered):
            position = cell
    return CaptionAttributes(colour, shape, background, size, position)
