"""Named models: the shipped toy presets and the real hub models they stand in for.

A preset says where the weights are and how the model is meant to be sampled (steps, classifier-free guidance,
resolution). Anything not named here (a hub id or a local folder) is loaded as given, with the pipeline's own
defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
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


def find_preset(name: str) -> Preset | None:
    return PRESETS.get(name) or BY_SOURCE.get(name)
