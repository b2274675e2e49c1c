"""``toy-taste``: the toy world's hidden taste as a reward, for evaluation only (not differentiable).

    register_toy_taste()            # explicitly, where a spec may name it; importing this module registers nothing
    reward = load_reward("toy-taste")

It lives with the toy world because ``alignment`` never imports the toy world: whoever needs the oracle as a
reward (the evaluations' ``load_reward``, the studio when ``STUDIO_REWARD`` names it, tests) registers it first.
This is the one module of ``toyworld`` that imports ``alignment`` (for the ``Reward`` interface).
"""

from __future__ import annotations

import numpy as np
import torch

from alignment.rewards import REWARDS, Reward, register

from .oracle import taste

TOY_TASTE = "toy-taste"


class ToyTaste(Reward):
    name = TOY_TASTE
    differentiable = False

    def __init__(self, **_):
        pass

    def _score(self, x, prompts):
        arrays = (x.detach().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
        return torch.tensor([taste(a, p).score for a, p in zip(arrays, prompts)], dtype=torch.float32)


def register_toy_taste() -> str:
    """Make ``toy-taste`` known to ``alignment.rewards.load_reward`` (again is harmless); returns the name."""
    if REWARDS.get(TOY_TASTE) is not ToyTaste:
        register(TOY_TASTE)(ToyTaste)
    return TOY_TASTE

