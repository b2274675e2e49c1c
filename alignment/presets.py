"""Named models: the shipped toy presets and the real hub models they stand in for.

A preset says where the weights are and how the model is meant to be sampled (steps, classifier-free guidance,
resolution). ``NAME=FOLDER`` names a local copy of a preset's weights (``sdxl-turbo=/models/sdxl-turbo``): the
folder is loaded, sampled as the preset says. Anything else (a hub id or a local folder) is loaded as given and
sampled with ``FALLBACK_STEPS`` steps, no classifier-free guidance, at the pipeline's own size.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"


@dataclass(frozen=True)
class Preset:
    name: str
    source: str  # a hub id or a local folder
    family: str  # "diffusion" (SDXL class) or "flow" (SD3 class)
    steps: int
    guidance_scale: float
    resolution: int
    description: str = ""


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("toy-sdxl", str(CHECKPOINTS / "toy-sdxl"), "diffusion", 4, 3.0, 64,
               "embedded StableDiffusionXLPipeline trained on the toy world"),
        Preset("toy-sd3", str(CHECKPOINTS / "toy-sd3"), "flow", 6, 3.0, 64,
               "embedded StableDiffusion3Pipeline (no T5) trained on the toy world"),
        Preset("sdxl-turbo", "stabilityai/sdxl-turbo", "diffusion", 1, 0.0, 512,
               "SDXL-Turbo: one-step diffusion"),
        Preset("sd3.5-large-turbo", "stabilityai/stable-diffusion-3.5-large-turbo", "flow", 4, 0.0, 1024,
               "SD3.5-Large-Turbo: four-step flow matching (gated on the hub)"),
    )
}
# Hub ids resolve to their preset too, so `--model stabilityai/sdxl-turbo` gets SDXL-Turbo's sampling defaults.
BY_SOURCE: dict[str, Preset] = {p.source: p for p in PRESETS.values() if not p.name.startswith("toy-")}


FALLBACK_STEPS = 4  # a model no preset names


def find_preset(name: str) -> Preset | None:
    """The preset of a name, a hub id, or ``NAME=FOLDER`` (the preset with its weights read from FOLDER)."""
    alias, eq, folder = name.partition("=")
    if eq and alias in PRESETS and folder.strip():
        return replace(PRESETS[alias], source=folder.strip())
    return PRESETS.get(name) or BY_SOURCE.get(name)


def sampling_settings(preset: Preset | None, steps: int | None = None,
                      guidance_scale: float | None = None) -> tuple[int, float]:
    """Steps and classifier-free guidance scale: the given values, else the preset's, else ``FALLBACK_STEPS``
    without guidance; a ValueError if out of range. The one rule every sampler follows."""
    steps = int(steps if steps is not None else (preset.steps if preset else FALLBACK_STEPS))
    guidance = float(guidance_scale if guidance_scale is not None else (preset.guidance_scale if preset else 0.0))
    if not 1 <= steps <= 1000:
        raise ValueError(f"steps must be between 1 and 1000, got {steps}")
    if not 0.0 <= guidance <= 30.0:
        raise ValueError(f"guidance_scale must be between 0 and 30, got {guidance}")
    return steps, guidance
