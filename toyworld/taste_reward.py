"""``toy-taste``: the toy world's hidden taste as a reward, for evaluation only (not differentiable).

Registered into ``alignment.rewards`` here, because ``alignment`` never imports the toy world.
"""

from __future__ import annotations

import numpy as np
import torch

from alignment.rewards import Reward, register
from toyworld import taste


@register("toy-taste")
class ToyTaste(Reward):
    name = "toy-taste"
    differentiable = False

    def __init__(self, **_):
        pass

    def _score(self, x, prompts):
        arrays = (x.detach().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
        return torch.tensor([taste(a, p).score for a, p in zip(arrays, prompts)], dtype=torch.float32)
