"""Rewards r(x0, y): one scoring interface, a registry by name, and weighted sums."""

from .base import Reward, WeightedSum, clip_preprocess, to_pixels
from .open_clip_rewards import OpenClipReward
from .clip_model import CLIPModelReward
from .registry import REWARDS, load_reward, parse_spec, register

__all__ = ["CLIPModelReward", "OpenClipReward", "REWARDS", "Reward", "WeightedSum", "clip_preprocess", "load_reward",
           "parse_spec", "register", "to_pixels"]
