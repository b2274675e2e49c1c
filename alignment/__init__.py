"""Inference-time alignment of text-to-image models: model loading, sampling, and (in later modules) rewards,
guidance networks and guided samplers."""

from .loading import ModelLoadError, load_pipeline
from .presets import PRESETS, Preset, find_preset
from .sampling import Generation, check_prompt, generate

__all__ = ["PRESETS", "Generation", "ModelLoadError", "Preset", "check_prompt", "find_preset", "generate",
           "load_pipeline"]
