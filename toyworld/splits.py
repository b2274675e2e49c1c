"""Held-out (colour, shape, background) combinations: never drawn for training, used for evaluation.

The set is fixed by a seed so every machine agrees on it. It holds about a tenth of all combinations; every
pair of attributes inside a held-out triple still appears in training, so the held-out captions test
composition, not unseen words.
"""

from __future__ import annotations

import itertools

import numpy as np

from .vocabulary import COLOURS, SHAPES

HELD_OUT_SEED = 20261127
HELD_OUT_FRACTION = 0.1


def _all_combinations() -> list[tuple[str, str, str]]:
    return [(c, s, b) for c, s, b in itertools.product(COLOURS, SHAPES, COLOURS) if c != b]


def _choose_held_out() -> frozenset[tuple[str, str, str]]:
    combos = _all_combinations()
    rng = np.random.default_rng(HELD_OUT_SEED)
    order = rng.permutation(len(combos))
    chosen = [combos[i] for i in order[: int(round(HELD_OUT_FRACTION * len(combos)))]]
    return frozenset(chosen)


HELD_OUT: frozenset[tuple[str, str, str]] = _choose_held_out()


def is_held_out(colour: str, shape: str, background: str) -> bool:
    return (colour, shape, background) in HELD_OUT
