"""Indexable, seeded streams of (image, caption) pairs for training and evaluation."""

from __future__ import annotations

import numpy as np

from .captions import caption_for
from .renderer import render
from .scene import Scene, sample_scene


class ToyScenes:
    """Item ``i`` is always the same (scene, image, caption) for a given seed and split; usable as a
    ``torch.utils.data.Dataset`` (it has ``__len__`` and ``__getitem__``)."""

    def __init__(self, length: int, seed: int = 0, split: str = "train", clean: bool = False):
        self.length, self.seed, self.split, self.clean = length, seed, split, clean

    def __len__(self) -> int:
        return self.length

    def scene(self, index: int) -> tuple[Scene, np.random.Generator]:
        rng = np.random.default_rng((self.seed, index))
        return sample_scene(rng, split=self.split, clean=self.clean), rng

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(index)
        scene, rng = self.scene(index)
        return {"image": render(scene), "caption": caption_for(scene, rng, allow_wrong=self.split == "train")}


def sample_captions(n: int, seed: int = 0, split: str = "heldout") -> list[str]:
    """``n`` captions (no wrong colour words), e.g. the held-out evaluation prompts."""
    data = ToyScenes(n, seed=seed, split=split)
    out = []
    for i in range(n):
        scene, rng = data.scene(i)
        out.append(caption_for(scene, rng, allow_wrong=False))
    return out
