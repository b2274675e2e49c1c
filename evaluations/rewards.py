"""The rewards an evaluation can name: alignment's (``pickscore``, ``toy-pickscore``, …, weighted sums) and the toy
world's oracle ``toy-taste`` (for smoke runs and for scoring against the taste).

    reward = load_reward("toy-taste")       # as alignment.rewards.load_reward, with the oracle registered first
"""

from __future__ import annotations

from alignment.rewards import Reward
from alignment.rewards import load_reward as load_alignment_reward
from toyworld.taste_reward import register_toy_taste


def load_reward(spec: str, **kwargs) -> Reward:
    """``alignment.rewards.load_reward(spec, **kwargs)``, after registering ``toy-taste``."""
    register_toy_taste()
    return load_alignment_reward(spec, **kwargs)
