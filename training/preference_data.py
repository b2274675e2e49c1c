"""Preference pairs for the trainers: the Pick-a-Pic v1 format (``alignment.pickapic``, shared with the studio's
vote export) and the toy labelling, a Bradley–Terry draw from two scores.

    python -m training toy-preferences --captions 1000 --out data/toy-pickapic.parquet
"""

from __future__ import annotations

import math

import numpy as np

from alignment.pickapic import COLUMNS, LoadReport, PreferencePair, iter_pairs, jpeg_bytes, write_pickapic

__all__ = ["COLUMNS", "LoadReport", "PreferencePair", "bradley_terry_labels", "iter_pairs", "jpeg_bytes",
           "write_pickapic"]


def bradley_terry_labels(score_0: float, score_1: float, rng: np.random.Generator, temperature: float = 1.0,
                         tie_margin: float = 0.05) -> tuple[float, float]:
    """A human-like vote: P(0 preferred) = sigmoid((s0 - s1) / T); near-equal scores are a tie (0.5, 0.5)."""
    if abs(score_0 - score_1) < tie_margin:
        return 0.5, 0.5
    p = 1.0 / (1.0 + math.exp(-(score_0 - score_1) / temperature))
    return (1.0, 0.0) if rng.random() < p else (0.0, 1.0)

