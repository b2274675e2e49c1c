"""What the studio loads once per model and keeps: the pipeline, the reward, the guidance network (diffusion) and
the sample bank (flow). Plain Python, no Gradio.

    resources = Resources(StudioSettings())
    pipe, preset = resources.pipeline("toy-sdxl")    # loaded once; its denoiser memoised, its transformer split
    resources.reward("toy-sdxl"), resources.network("toy-sdxl"), resources.bank("toy-sd3")

A missing guidance network or reward is not a crash: it raises :class:`Unavailable`, whose message says where it
was looked for and how to make it, and the page shows the baseline with that note. All model work is serialised by
``lock``: a pipeline's scheduler is shared state, and two CPU cores gain nothing from two samplers at once.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from .checks import FLOW_BETA_RANGE, check_model
from .configs import GUIDED, Config
from .memo import memoise
from .settings import StudioSettings
from .split_batch import SplitBatch


class Unavailable(RuntimeError):
    """A resource (guidance network, reward model) is missing; the message says where it was looked for and how
    to make it."""


def bank_workers(device) -> int:
    """Threads that make a sample bank's samples at once: on a CPU, one per core that torch's own threads leave
    (two on two cores with one torch thread: the bank is made about twice as fast, and stays fast when another
    process is busy, unlike two OpenMP threads); on a GPU, one."""
    import torch

    if torch.device(device).type != "cpu":
        return 1
    return max(1, (os.cpu_count() or 1) // torch.get_num_threads())


class Resources:
    def __init__(self, settings: StudioSettings | None = None):
        self.settings = settings or StudioSettings()
        self.lock = threading.RLock()
        self._pipes: dict[str, tuple] = {}
        self._rewards: dict[str, object] = {}
        self._networks: dict[str, object] = {}
        self._banks: dict[str, object] = {}

    @property
    def models(self) -> tuple[str, ...]:
        return self.settings.models

    def check_model(self, model) -> str:
        return check_model(model, self.models)

    def family(self, model: str) -> str:
        """"diffusion" or "flow", from the preset, else from the loaded pipeline."""
        from alignment.presets import find_preset

        self.check_model(model)
        preset = find_preset(model)
        if preset is not None:
            return preset.family
        pipe, _ = self.pipeline(model)
        return "flow" if hasattr(pipe, "transformer") and pipe.transformer is not None else "diffusion"

    def loaded(self, model: str) -> bool:
        """Whether the model's pipeline is loaded already."""
        return model in self._pipes

    def pipeline(self, model: str):
        """(pipeline, preset), loaded once."""
        self.check_model(model)
        with self.lock:
            if model not in self._pipes:
                from alignment import load_pipeline
                from alignment.sampling import with_component

                pipe, preset = load_pipeline(model, device=self.settings.device)
                self._accelerate(pipe.device, pipe=pipe)  # before the wrappers below; compiled by Engine.warm_up
                workers = bank_workers(pipe.device)
                if workers > 1 and getattr(pipe, "transformer", None) is not None:
                    # one image's transformer calls use the spare cores too (studio/split_batch.py). Measured on 2
                    # cores: toy-sd3 β change 0.29 -> 0.24 s; the toy UNet's many small ops got slower (0.23 ->
                    # 0.28 s: the two threads queue for the GIL), so UNets are left whole.
                    pipe.transformer = SplitBatch(pipe.transformer, workers)
                memoise(pipe)
                # the studio never moves or offloads a loaded pipeline, so its execution device is read once
                pipe = with_component(pipe)
                self._pipes[model] = pipe, preset
            return self._pipes[model]

    def _accelerate(self, device, **parts) -> None:
        """``alignment.acceleration.accelerate(**parts)`` when the settings compile on ``device``, with
        ``fullgraph=False``: a graph break then runs part of a block eagerly instead of failing a request; with the
        settings' ``fp8`` for a pipeline's denoiser."""
        if self.settings.compiles(device):
            from alignment.acceleration import accelerate

            fp8 = {"fp8": True} if self.settings.fp8 and "pipe" in parts else {}
            accelerate(**parts, fullgraph=False, **fp8)

    def device(self, model: str):
        pipe, _ = self.pipeline(model)
        return getattr(pipe, "device", None)

    def reward(self, model: str):
        """The model's reward, loaded once; ``Unavailable`` when it can't be."""
        spec = self.settings.reward_for(model)
        with self.lock:
            if spec not in self._rewards:
                from alignment.presets import CHECKPOINTS

                if spec == "toy-pickscore" and not (CHECKPOINTS / "toy-pickscore" / "config.json").is_file():
                    raise Unavailable("The reward model toy-pickscore is not in checkpoints/toy-pickscore yet (make "
                                      "it with `python -m training toy-pickscore`); images are shown unscored.")
                from alignment import ModelLoadError
                from alignment.rewards import load_reward
                from toyworld.taste_reward import TOY_TASTE, register_toy_taste

                if TOY_TASTE in spec:  # the toy world's oracle (STUDIO_REWARD=toy-taste), known once registered
                    register_toy_taste()
                try:
                    reward = load_reward(spec)
                    device = self.device(model)
                    if hasattr(reward, "model") and device is not None:
                        reward.model.to(device)
                        self._accelerate(device, reward=reward)
                except (ModelLoadError, ValueError) as e:
                    raise Unavailable(f"The reward {spec!r} could not be loaded: {e}") from e
                self._rewards[spec] = reward
            return self._rewards[spec]

    def network(self, model: str, method: str = "guided"):
        """The guidance network a guided ``method`` of a diffusion model follows (``"guided-paper"``: the one
        trained with the paper's objective), loaded once; ``Unavailable`` when missing."""
        paper = method == "guided-paper"
        path = self.settings.guidance_for(model, paper=paper)
        if path is None:
            variable = "STUDIO_PAPER_GUIDANCE" if paper else "STUDIO_GUIDANCE"
            raise Unavailable(f"No guidance network{' (paper objective)' if paper else ''} is set for {model}: train "
                              f"one (python -m training guidance) and name its folder in {variable}. The baseline is "
                              "shown alone.")
        with self.lock:
            if path not in self._networks:
                if not (Path(path) / "config.json").is_file():
                    raise Unavailable(f"The guidance network is not in {path} yet (it is made by `python -m "
                                      "training guidance --export …`); the baseline is shown alone until it is.")
                from alignment.guidance_network import GuidanceNetwork

                try:
                    network = GuidanceNetwork.from_pretrained(path).eval().requires_grad_(False)
                    device = self.device(model)
                    self._accelerate(device, network=network.to(device))
                except Exception as e:  # noqa: BLE001 - a broken folder is one clear message
                    raise Unavailable(f"The guidance network in {path} can't be read ({type(e).__name__}: "
                                      f"{str(e)[:200]}); the baseline is shown alone.") from e
                self._networks[path] = network
            return self._networks[path]

    def trained_ranges(self, model: str, method: str = "guided") -> tuple[tuple[float, float], tuple[float, float]]:
        """(β range, η range) the guidance network of ``method`` was trained for; ``Unavailable`` when missing."""
        config = self.network(model, method).config
        return tuple(map(float, config.beta_range)), tuple(map(float, config.eta_range))

    def bank(self, model: str):
        """The flow model's sample bank (one per model; its entries are per (prompt, seed))."""
        with self.lock:
            if model not in self._banks:
                from alignment.sample_bank import SampleBank

                pipe, preset = self.pipeline(model)
                self._banks[model] = SampleBank(pipe, self.reward(model), preset=preset, model=model,
                                                workers=bank_workers(pipe.device))
            return self._banks[model]

    def available(self, config: Config) -> str | None:
        """None when ``config`` can be rendered now, else why not."""
        try:
            if config.method in GUIDED:
                self.network(config.model, config.method)
            if config.method in ("is", "fk", "bon"):
                self.reward(config.model)
        except Unavailable as e:
            return str(e)
        return None

    def beta_range(self, model: str) -> tuple[float, float]:
        """The β a model accepts: the guidance network's training range (diffusion), or any positive (flow)."""
        if self.family(model) == "diffusion":
            return self.trained_ranges(model)[0]
        return FLOW_BETA_RANGE

    def warm_up(self, models: list[str] | None = None) -> None:
        """Load pipelines, rewards and networks ahead of the first click (errors are left for the click): every
        model's on a GPU, so that the first click on any model waits for no loading (and, when the models are
        compiled, ``Engine.warm_up`` then renders each once); on a CPU the first model's alone, so that the page
        is up in seconds (the toy models load in about a second each when first asked for)."""
        device = self.settings.device
        every = self.settings.compiles(device) or self.settings.on_gpu(device)
        for model in models or (self.models if every else self.models[:1]):
            try:
                self.pipeline(model)
                self.reward(model)
                if self.family(model) == "diffusion":
                    self.network(model)
            except Exception:  # noqa: BLE001 - the page reports it when someone asks
                pass
