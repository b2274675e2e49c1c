"""What the studio offers and where it runs: ``StudioSettings`` (models, device, reward, guidance network, the
largest bank, the hub dataset that keeps the votes), given or read from the environment; the process's torch thread
count; and ``gpu``, which runs the page's model handlers on a Hugging Face ZeroGPU where there is one.

    settings = StudioSettings.from_env()        # STUDIO_MODELS, STUDIO_REAL, STUDIO_DEVICE, STUDIO_REWARD, ...
    set_threads(settings.device)                # STUDIO_TORCH_THREADS, else one thread on a CPU of two cores
"""

from __future__ import annotations

import os
from dataclasses import dataclass

TOY_MODELS = ("toy-sdxl", "toy-sd3")
REAL_MODELS = ("sdxl-turbo", "sd3.5-large-turbo")
DEFAULT_MAX_N = 64  # bank size the page offers on CPU; STUDIO_MAX_N raises it on a GPU
COMPILE_CHOICES = ("auto", "on", "off")  # STUDIO_COMPILE
# ZeroGPU seconds asked per handler (spaces.GPU's duration; its default is 60 s and 120 s the most a visitor gets;
# a shorter one queues first). Sized from SD3.5-Large-Turbo on one H100 (docs/performance.md): a bank of 64 takes
# 31 s, a β change on a made bank under 1 s, an arena pair (two configurations of about 9 trajectories) about 10 s.
GPU_SECONDS = {
    "explore": 90,  # baseline, a bank of up to N = 64, the aligned image and best-of-N; models moved onto the GPU
    "retune": 60,  # one guided trajectory, or the bank's missing samples when N grows
    "make_pair": 60,  # the arena's two configurations
}
GPU_DEFAULT_SECONDS = 60
GPU_MAX_SECONDS = 120


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


def gpu(fn=None, *, duration: int | None = None):
    """``spaces.GPU(duration=…)`` when the ``spaces`` package is installed (Hugging Face ZeroGPU), else ``fn``
    unchanged. ``duration`` defaults to ``GPU_SECONDS`` by the handler's name; ``@gpu`` and ``@gpu(duration=30)``."""
    if fn is None:
        return lambda f: gpu(f, duration=duration)
    seconds = duration or GPU_SECONDS.get(getattr(fn, "__name__", ""), GPU_DEFAULT_SECONDS)
    if not 0 < seconds <= GPU_MAX_SECONDS:
        raise ValueError(f"a ZeroGPU duration must be 1..{GPU_MAX_SECONDS} s, not {seconds}")
    try:
        import spaces
    except ImportError:
        return fn
    return spaces.GPU(duration=seconds)(fn)


@dataclass(frozen=True)
class StudioSettings:
    """Which models the studio offers, on which device, scored by which reward, guided by which network.

    ``reward``: one reward spec for every model (default: ``toy-pickscore`` for the toy presets, ``pickscore``
    otherwise). ``guidance``: the guidance network folder for the diffusion models (default:
    ``checkpoints/toy-guidance`` for ``toy-sdxl``; none for others); ``paper_guidance``: a second one, trained with
    the paper's objective, offered as the "paper" setting (default: ``checkpoints/toy-guidance-paper`` for
    ``toy-sdxl``). ``hub_dataset``: a dataset repo id that keeps the
    votes across restarts (``studio/hub_sync.py``; off when None), committed every ``hub_every`` minutes, with the
    images unless ``hub_images`` is False. ``compile``: ``"auto"`` (on CUDA, outside ZeroGPU), ``"on"`` or ``"off"``: whether
    the models are accelerated and compiled (``alignment/acceleration.py``) and rendered once at start-up so that
    no request waits for the compiler. ``fp8``: compiled bf16 models run their transformer blocks' linear layers as
    FP8 matmuls (torchao, an Ada or Hopper GPU; ``alignment.acceleration.quantize_fp8``); off by default."""

    models: tuple[str, ...] = TOY_MODELS
    device: str | None = "cpu"
    reward: str | None = None
    guidance: str | None = None
    paper_guidance: str | None = None
    max_n: int = DEFAULT_MAX_N
    hub_dataset: str | None = None
    hub_every: float = 5.0
    hub_images: bool = True
    compile: str = "auto"
    fp8: bool = False

    @classmethod
    def from_env(cls, real: bool = False, models: list[str] | None = None, device: str | None = None,
                 compile: str | None = None, fp8: bool | None = None) -> StudioSettings:
        """``STUDIO_MODELS`` (comma-separated presets, hub ids or folders, added to the toy ones),
        ``STUDIO_REAL=1`` (add sdxl-turbo and sd3.5-large-turbo), ``STUDIO_DEVICE`` (default: CPU for the toy
        presets alone, else what accelerate picks), ``STUDIO_REWARD``, ``STUDIO_GUIDANCE``,
        ``STUDIO_PAPER_GUIDANCE``, ``STUDIO_MAX_N``;
        ``STUDIO_HUB_DATASET``, ``STUDIO_HUB_EVERY`` (minutes, default 5), ``STUDIO_HUB_IMAGES=0``;
        ``STUDIO_COMPILE`` (auto, on, off; ``compile`` overrides it); ``STUDIO_FP8=1`` (``fp8`` overrides it)."""
        extra = list(models or []) + [m.strip() for m in os.environ.get("STUDIO_MODELS", "").split(",") if m.strip()]
        if real or os.environ.get("STUDIO_REAL", "").lower() in ("1", "true", "yes"):
            extra += list(REAL_MODELS)
        chosen = tuple(dict.fromkeys(list(TOY_MODELS) + extra))
        device = device or os.environ.get("STUDIO_DEVICE") or ("cpu" if chosen == TOY_MODELS else None)
        max_n = int(os.environ.get("STUDIO_MAX_N", DEFAULT_MAX_N))
        hub_every = float(os.environ.get("STUDIO_HUB_EVERY") or 5)
        if not 0 < hub_every < float("inf"):
            raise ValueError(f"STUDIO_HUB_EVERY must be a number of minutes > 0, not {hub_every}")
        compile = (compile or os.environ.get("STUDIO_COMPILE") or "auto").strip().lower()
        if compile not in COMPILE_CHOICES:
            raise ValueError(f"STUDIO_COMPILE must be one of {', '.join(COMPILE_CHOICES)}, not {compile!r}")
        return cls(chosen, device, os.environ.get("STUDIO_REWARD") or None, os.environ.get("STUDIO_GUIDANCE") or None,
                   os.environ.get("STUDIO_PAPER_GUIDANCE") or None, max_n,
                   hub_dataset=os.environ.get("STUDIO_HUB_DATASET", "").strip() or None, hub_every=hub_every,
                   hub_images=os.environ.get("STUDIO_HUB_IMAGES", "1").lower() not in ("0", "false", "no"),
                   compile=compile,
                   fp8=fp8 if fp8 is not None else os.environ.get("STUDIO_FP8", "0").lower() in ("1", "true", "yes"))

    @staticmethod
    def on_gpu(device) -> bool:
        """Whether models go to a CUDA device (``device`` None: CUDA when there is one, as the loaders pick)."""
        if device is None:
            import torch

            return torch.cuda.is_available()
        return getattr(device, "type", str(device)).startswith("cuda")

    def compiles(self, device) -> bool:
        """Whether models on ``device`` are accelerated and compiled: ``compile`` "on", or "auto" on CUDA outside
        ZeroGPU (on a CPU the toy models gain nothing from it and the compiler would take minutes)."""
        if self.compile != "auto":
            return self.compile == "on"
        if os.environ.get("SPACES_ZERO_GPU"):  # ZeroGPU lends the GPU per call and does not support torch.compile
            return False
        return self.on_gpu(device)

    def fp8_problem(self) -> str | None:
        """Why ``fp8`` can't be served here (the models not compiled, no torchao, no Ada or Hopper GPU), checked
        before any model loads; None when it can, or when ``fp8`` is off."""
        if not self.fp8:
            return None
        if not self.compiles(self.device):
            return "FP8 needs the compiled models: drop --no-compile / STUDIO_COMPILE=off"
        from alignment.acceleration import fp8_unavailable

        return fp8_unavailable(self.device)

    def reward_for(self, model: str) -> str:
        return self.reward or ("toy-pickscore" if model.startswith("toy-") else "pickscore")

    def guidance_for(self, model: str, paper: bool = False) -> str | None:
        """The guidance network folder of a diffusion model: the default one, or with ``paper`` the one trained with
        the paper's objective; None when there is none."""
        from alignment import defaults

        chosen = self.paper_guidance if paper else self.guidance
        if chosen:
            return chosen
        if model != "toy-sdxl":
            return None
        return str(defaults.PAPER_GUIDANCE_NETWORK if paper else defaults.GUIDANCE_NETWORK)
