"""The toy world: a procedural renderer of 64x64 scenes, their caption grammar, and the oracle that reads images
back and defines the hidden taste. Deterministic from a seed. Used by training, evaluations and tests; never by
``alignment``."""

from .captions import CaptionAttributes, caption_for, parse_caption
from .dataset import ToyScenes, sample_captions
from .oracle import Reading, Taste, analyse, taste
from .renderer import render, render_float, render_pil
from .scene import Scene, sample_scene
from .splits import HELD_OUT, is_held_out
from .vocabulary import COLOURS, IMAGE_SIZE, SHAPES

__all__ = [
    "COLOURS", "SHAPES", "IMAGE_SIZE", "HELD_OUT", "CaptionAttributes", "Reading", "Scene", "Taste", "ToyScenes",
    "analyse", "caption_for", "is_held_out", "parse_caption", "render", "render_float", "render_pil",
    "sample_captions", "sample_scene", "taste",
]
