"""What the studio offers and where it runs: ``StudioSettings`` (models, device, reward, guidance network, the
largest bank), given or read from the environment; the process's torch thread count; and ``gpu``, which runs the
page's model handlers on a Hugging Face ZeroGPU where there is one.

    settings = StudioSettings.from_env()        # STUDIO_MODELS, STUDIO_REAL, STUDIO_DEVICE, STUDIO_REWARD, ...
    set_threads(settings.device)                # STUDIO_TORCH_THREADS, else one thread on a CPU of two cores
"""

from __future__ import annotations

import os
from dataclasses import dataclass

TOY_MODELS = ("toy-sdxl", "toy-sd3")
REAL_MODELS = ("sdxl-turbo", "sd3.5-large-turbo")
DEFAULT_MAX_N = 64  # bank size the page offers on CPU; STUDIO_MAX_N raises it on a GPU


def set_threads(device: str | None) -> int:
    """On a CPU of two cores or fewer, one torch thread: the other core serves the page, and two threads that
    compete with any other busy process run many times slower (OpenMP threads wait for each other).
    ``STUDIO_TORCH_THREADS`` overrides. Returns the number of threads."""
    import torch

    threads = os.environ.get("STUDIO_TORCH_THREADS")
    if threads:
        torch.set_num_threads(int(threads))
    elif device in (None, "cpu") and (os.cpu_count() or 1) <= 2:
        torch.set_num_threads(1)
    return torch.get_num_threads()


def gpu(fn):
    """``spaces.GPU`` when the ``spaces`` package is installed (Hugging Face ZeroGPU), else ``fn`` unchanged."""
    try:
        import spaces
    except ImportError:
        return fn
    return spaces.GPU(fn)


@dataclass(frozen=True)
class StudioSettings:
    """Which models the studio offers, on which device, scored by which reward, guided by which network.

    ``reward``: one reward spec for every model (default: ``toy-pickscore`` for the toy presets, ``pickscore``
    otherwise). ``guidance``: the guidance network folder for the diffusion models (default:
    ``checkpoints/toy-guidance`` for ``toy-sdxl``; none for others)."""

    models: tuple[str, ...] = TOY_MODELS
    device: str | None = "cpu"
    reward: str | None = None
    guidance: str | None = None
    max_n: int = DEFAULT_MAX_N

    @classmethod
    def from_env(cls, real: bool = False, models: list[str] | None = None, device: str | None = None) -> StudioSettings:
        """``STUDIO_MODELS`` (comma-separated presets, hub ids or folders, added to the toy ones),
        ``STUDIO_REAL=1`` (add sdxl-turbo and sd3.5-large-turbo), ``STUDIO_DEVICE`` (default: CPU for the toy
        presets alone, else what accelerate picks), ``STUDIO_REWARD``, ``STUDIO_GUIDANCE``, ``STUDIO_MAX_N``."""
        extra = list(models or []) + [m.strip() for m in os.environ.get("STUDIO_MODELS", "").split(",") if m.strip()]
        if real or os.environ.get("STUDIO_REAL", "").lower() in ("1", "true", "yes"):
            extra += list(REAL_MODELS)
        chosen = tuple(dict.fromkeys(list(TOY_MODELS) + extra))
        device = device or os.environ.get("STUDIO_DEVICE") or ("cpu" if chosen == TOY_MODELS else None)
        max_n = int(os.environ.get("STUDIO_MAX_N", DEFAULT_MAX_N))
        return cls(chosen, device, os.environ.get("STUDIO_REWARD") or None, os.environ.get("STUDIO_GUIDANCE") or None,
                   max_n)

    def reward_for(self, model: str) -> str:
        return self.reward or ("toy-pickscore" if model.startswith("toy-") else "pickscore")

    def guidance_for(self, model: str) -> str | None:
        if self.guidance:
            return self.guidance
        from alignment.presets import CHECKPOINTS

        return str(CHECKPOINTS / "toy-guidance") if model == "toy-sdxl" else None
