"""What the studio generates, and what it keeps so that a slider never redoes cached work. Plain Python, no Gradio.

    engine = Engine()                                         # toy presets on CPU (or StudioSettings.from_env())
    view = engine.explore("toy-sdxl", "a red star on a blue background", seed=0)   # the defaults: alignment.defaults
    view.baseline.image, view.baseline.rewards, view.aligned.image, view.aligned.rewards
    view = engine.explore("toy-sd3", "a red star on a blue background", seed=0, beta=0.3, n=8, estimator="paper")
    view.best_of_n, view.ess                                  # flow: best-of-N from the same bank, ESS per step
    panel = engine.render(Config.of("toy-sd3", "is", beta=0.3, n=8), prompt, seed)   # one arena image

Caches (least recently used dropped): pipelines, rewards and guidance networks per model; the baseline per
(model, prompt, seed); every aligned image per (model, prompt, seed, knobs); and for flow models one
``SampleBank`` per model (its entries per (prompt, seed)), so moving β re-runs only the guided trajectory and
raising N only makes the missing samples. The pipeline's denoiser and text encoders are wrapped in a ``Memo``
(``studio.memo``): the first step of every trajectory from one (prompt, seed) is the same call, answered once.
All model work is serialised by one lock: a pipeline's scheduler is shared state, and two CPU cores gain nothing
from running two samplers at once.

A missing guidance network or reward is not a crash: the baseline still comes, and ``notes`` says what is missing
and how to make it. Bad knobs raise ``ValueError`` with a sentence meant for the person at the page.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from PIL import Image

from .memo import denoiser_memo, memoise
from .split_batch import SplitBatch
from .store import MAX_SEED, config_label

TOY_MODELS = ("toy-sdxl", "toy-sd3")
REAL_MODELS = ("sdxl-turbo", "sd3.5-large-turbo")
DEFAULT_MAX_N = 64  # bank size the page offers on CPU; STUDIO_MAX_N raises it on a GPU
METHODS = {"diffusion": ("baseline", "guided"), "flow": ("baseline", "is", "bon")}
METHOD_NAMES = {"baseline": "Baseline", "guided": "Aligned (guidance network)", "is": "Aligned (importance-sampled)",
                "bon": "Best-of-N"}
# An "is" configuration names the estimator by its options; absent options are the paper's (Estimator()).
ESTIMATOR_KNOBS = ("tau", "scale", "sigma_min", "sigma_max", "damping")
PARTICLE_KNOBS = ("particles", "rounds")


def estimator_knobs(name: str) -> dict:
    """The knobs of a named estimator setting (``alignment.defaults.ESTIMATORS``): only those that differ from
    the paper's, so the paper's configuration stays ``{beta, n}``."""
    from alignment.defaults import ESTIMATORS
    from alignment.flow_guidance import PAPER

    if name not in ESTIMATORS:
        raise ValueError(f"the estimator must be one of {', '.join(sorted(ESTIMATORS))}, not {name!r:.40}")
    chosen, paper = ESTIMATORS[name].describe(), PAPER.describe()
    return {k: v for k, v in chosen.items() if v != paper[k]}

Progress = Callable[[float, str], None]


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


def bank_workers(device) -> int:
    """Threads that make a sample bank's samples at once: on a CPU, one per core that torch's own threads leave
    (two on two cores with one torch thread: the bank is made about twice as fast, and stays fast when another
    process is busy, unlike two OpenMP threads); on a GPU, one."""
    import torch

    if torch.device(device).type != "cpu":
        return 1
    return max(1, (os.cpu_count() or 1) // torch.get_num_threads())


class Unavailable(RuntimeError):
    """A resource (guidance network, reward model) is missing; the message says where it was looked for and how
    to make it."""


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


@dataclass(frozen=True)
class Config:
    """One way of making an image: model, method (baseline, guided, is, bon) and its knobs (β, η, α, N)."""

    model: str
    method: str
    knobs: tuple[tuple[str, float], ...] = ()

    @classmethod
    def of(cls, model: str, method: str, **knobs) -> Config:
        return cls(model, method, tuple(sorted((k, v) for k, v in knobs.items())))

    @property
    def config(self) -> dict:
        return dict(self.knobs)

    @property
    def label(self) -> str:
        return config_label(self.model, self.method, self.config)


@dataclass
class Panel:
    """One image of the page, with its rewards and what it cost."""

    image: Image.Image
    title: str
    config: Config
    rewards: dict[str, float]
    seconds: float  # compute when it was made (a cached panel costs nothing now)
    cached: bool = False

    def caption(self) -> str:
        scores = " · ".join(f"{name} **{value:.3f}**" for name, value in self.rewards.items()) or "reward unavailable"
        return f"{scores} · {self.seconds:.2f} s" + (" · from the cache" if self.cached else "")


@dataclass
class ExploreView:
    model: str
    family: str
    prompt: str
    seed: int
    baseline: Panel
    aligned: Panel | None = None
    best_of_n: Panel | None = None
    ess: list[float] | None = None  # flow: ESS of the tilted weights b at every step
    ess_posterior: list[float] | None = None  # flow: ESS of the posterior weights a (no reward) at every step
    sigmas: list[float] | None = None
    n: int | None = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0  # wall-clock of the call


class _LRU(OrderedDict):
    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def get_fresh(self, key):
        value = self.pop(key, None)
        if value is not None:
            self[key] = value
        return value

    def put(self, key, value):
        self.pop(key, None)
        self[key] = value
        while len(self) > self.size:
            self.popitem(last=False)
        return value


def _number(value, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, not {value!r:.40}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, not {value!r}")
    return number


def check_seed(seed) -> int:
    """A whole number in 0..2³¹−1 (what the vote store keeps)."""
    if isinstance(seed, bool):
        raise ValueError("the seed must be a whole number")
    try:
        number = _number(seed, "the seed")
    except ValueError:
        raise ValueError(f"the seed must be a whole number between 0 and {MAX_SEED}, not {seed!r:.40}") from None
    if not number.is_integer() or not 0 <= number <= MAX_SEED:
        raise ValueError(f"the seed must be a whole number between 0 and {MAX_SEED}, not {seed!r:.40}")
    return int(number)


def check_n(n, max_n: int) -> int:
    number = _number(n, "N (the bank size)")
    if not number.is_integer() or not 1 <= number <= max_n:
        raise ValueError(f"N (the bank size) must be a whole number from 1 to {max_n}, not {n!r:.40}")
    return int(number)


def check_range(value, name: str, low: float, high: float, why: str = "") -> float:
    number = _number(value, name)
    if not low <= number <= high:
        raise ValueError(f"{name} must be between {low:g} and {high:g}{why}, not {number:g}")
    return number


class Engine:
    def __init__(self, settings: StudioSettings | None = None, *, cache_size: int = 256):
        self.settings = settings or StudioSettings()
        self.lock = threading.RLock()
        self._pipes: dict[str, tuple] = {}
        self._rewards: dict[str, object] = {}
        self._networks: dict[str, object] = {}
        self._banks: dict[str, object] = {}
        self._baselines = _LRU(cache_size)
        self._aligned = _LRU(cache_size)
        self._filled = _LRU(cache_size)  # (model, prompt, seed) -> bank samples made

    # -- resources ---------------------------------------------------------------------------------------------

    @property
    def models(self) -> tuple[str, ...]:
        return self.settings.models

    def family(self, model: str) -> str:
        """"diffusion" or "flow", from the preset, else from the loaded pipeline."""
        from alignment.presets import find_preset

        self._check_model(model)
        preset = find_preset(model)
        if preset is not None:
            return preset.family
        pipe, _ = self.pipeline(model)
        return "flow" if hasattr(pipe, "transformer") and pipe.transformer is not None else "diffusion"

    def _check_model(self, model) -> str:
        if not isinstance(model, str) or model not in self.models:
            raise ValueError(f"unknown model {model!r:.80}; this studio offers {', '.join(self.models)}")
        return model

    def pipeline(self, model: str):
        """(pipeline, preset), loaded once."""
        self._check_model(model)
        with self.lock:
            if model not in self._pipes:
                from alignment import load_pipeline
                from alignment.sampling import with_component

                pipe, preset = load_pipeline(model, device=self.settings.device)
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
                    device = self._device(model)
                    if hasattr(reward, "model") and device is not None:
                        reward.model.to(device)
                except (ModelLoadError, ValueError) as e:
                    raise Unavailable(f"The reward {spec!r} could not be loaded: {e}") from e
                self._rewards[spec] = reward
            return self._rewards[spec]

    def _device(self, model: str):
        pipe, _ = self.pipeline(model)
        return getattr(pipe, "device", None)

    def network(self, model: str):
        """The model's guidance network (diffusion models), loaded once; ``Unavailable`` when missing."""
        path = self.settings.guidance_for(model)
        if path is None:
            raise Unavailable(f"No guidance network is set for {model}: train one (python -m training guidance) "
                              "and name its folder in STUDIO_GUIDANCE. The baseline is shown alone.")
        with self.lock:
            if path not in self._networks:
                if not (Path(path) / "config.json").is_file():
                    raise Unavailable(f"The guidance network is not in {path} yet (it is made by `python -m "
                                      "training guidance --export …`); the baseline is shown alone until it is.")
                from alignment.guidance_network import GuidanceNetwork

                try:
                    network = GuidanceNetwork.from_pretrained(path).eval().requires_grad_(False)
                except Exception as e:  # noqa: BLE001 - a broken folder is one clear message
                    raise Unavailable(f"The guidance network in {path} can't be read ({type(e).__name__}: "
                                      f"{str(e)[:200]}); the baseline is shown alone.") from e
                self._networks[path] = network
            return self._networks[path]

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
            if config.method == "guided":
                self.network(config.model)
            if config.method in ("is", "bon"):
                self.reward(config.model)
        except Unavailable as e:
            return str(e)
        return None

    def beta_range(self, model: str) -> tuple[float, float]:
        """The β a model accepts: the guidance network's training range (diffusion), or any positive (flow)."""
        if self.family(model) == "diffusion":
            lo, hi = self.network(model).config.beta_range
            return float(lo), float(hi)
        return 1e-3, 1e3

    def warm_up(self, models: list[str] | None = None) -> None:
        """Load pipelines, rewards and networks ahead of the first click (errors are left for the click)."""
        for model in models or self.models[:1]:
            try:
                self.pipeline(model)
                self.reward(model)
                if self.family(model) == "diffusion":
                    self.network(model)
            except Exception:  # noqa: BLE001 - the page reports it when someone asks
                pass

    # -- checks --------------------------------------------------------------------------------------------------

    def check(self, config: Config) -> Config:
        """The config with its knobs checked and normalised (floats, N an int); ValueError says what is wrong."""
        model = self._check_model(config.model)
        family = self.family(model)
        if config.method not in METHODS[family]:
            raise ValueError(f"{model} is a {family} model: its methods are {', '.join(METHODS[family])}, "
                             f"not {config.method!r:.40}")
        knobs = config.config
        allowed = {"baseline": set(), "guided": {"beta", "eta", "alpha"},
                   "is": {"beta", "n", *ESTIMATOR_KNOBS, *PARTICLE_KNOBS}, "bon": {"n"}}
        if set(knobs) - allowed[config.method]:
            raise ValueError(f"unknown settings {sorted(set(knobs) - allowed[config.method])} for {config.method}")
        out = {}
        if config.method == "guided":
            network = self.network(model)
            lo, hi = network.config.beta_range
            out["beta"] = check_range(knobs.get("beta", 1.0), "β", lo, hi, " (the range the guidance network was "
                                      "trained for)")
            lo, hi = network.config.eta_range
            out["eta"] = check_range(knobs.get("eta", 1.0), "η", lo, hi, " (the range the guidance network was "
                                     "trained for)")
            out["alpha"] = check_range(knobs.get("alpha", 1.0), "α (guidance strength)", 0.0, 20.0)
        if config.method == "is":
            from alignment.flow_guidance import Estimator

            out["beta"] = check_range(knobs.get("beta", 1.0), "β", 1e-3, 1e3)
            options = {k: _number(knobs[k], k) for k in ESTIMATOR_KNOBS if k in knobs}
            Estimator(**options)  # a ValueError that names a bad option
            out.update(options)
            for k in PARTICLE_KNOBS:
                if k in knobs:
                    number = _number(knobs[k], k)
                    if not number.is_integer() or not 1 <= number <= 16:
                        raise ValueError(f"{k} must be a whole number from 1 to 16, not {knobs[k]!r:.40}")
                    out[k] = int(number)
        if config.method in ("is", "bon"):
            out["n"] = check_n(knobs.get("n", 8), self.settings.max_n)
        return Config.of(model, config.method, **out)

    # -- generation ----------------------------------------------------------------------------------------------

    def render(self, config: Config, prompt: str, seed: int, progress: Progress | None = None) -> Panel:
        """One image of ``config`` for (prompt, seed), from the cache when it was made before."""
        from alignment import check_prompt

        prompt, seed = check_prompt(prompt), check_seed(seed)
        config = self.check(config)
        if config.method == "baseline":
            return self._baseline(config.model, prompt, seed)
        return self._aligned_panel(config, prompt, seed, progress)[0]

    def _baseline(self, model: str, prompt: str, seed: int) -> Panel:
        key = (model, prompt, seed)
        with self.lock:
            cached = self._baselines.get_fresh(key)
            if cached is not None:
                return Panel(cached.image, cached.title, cached.config, cached.rewards, cached.seconds, cached=True)
            from alignment import generate

            pipe, preset = self.pipeline(model)
            start = time.perf_counter()
            image = generate(pipe, prompt, seed=seed, preset=preset).images[0]
            rewards = self._score(model, image, prompt)
            panel = Panel(image, METHOD_NAMES["baseline"], Config.of(model, "baseline"), rewards,
                          time.perf_counter() - start)
            return self._baselines.put(key, panel)

    def _score(self, model: str, image: Image.Image, prompt: str) -> dict[str, float]:
        try:
            reward = self.reward(model)
        except Unavailable:
            return {}
        return {reward.name: float(reward.score([image], [prompt])[0])}

    def _aligned_panel(self, config: Config, prompt: str, seed: int,
                       progress: Progress | None = None) -> tuple[Panel, dict]:
        """(panel, extras) for guided / is / bon; extras hold the ESS and σ of an IS run."""
        key = (config, prompt, seed)
        with self.lock:
            cached = self._aligned.get_fresh(key)
            if cached is not None:
                panel, extras = cached
                return Panel(panel.image, panel.title, panel.config, panel.rewards, panel.seconds, cached=True), extras
            knobs = config.config
            pipe, preset = self.pipeline(config.model)
            extras: dict = {}
            title = METHOD_NAMES[config.method]
            if config.method == "guided":
                from alignment.diffusion_sampler import sample_guided

                result = sample_guided(pipe, prompt, network=self.network(config.model), beta=knobs["beta"],
                                       eta=knobs["eta"], alpha=knobs["alpha"], seed=seed, preset=preset)
                image = result.images[0]
                seconds = result.seconds
                rewards = self._score(config.model, image, prompt)
            else:
                from alignment.flow_sampler import best_of_n, sample_is

                self._fill_bank(config.model, prompt, seed, knobs["n"], progress)
                bank = self.bank(config.model)
                if config.method == "is":
                    from alignment.flow_guidance import Estimator

                    estimator = Estimator(**{k: knobs[k] for k in ESTIMATOR_KNOBS if k in knobs})
                    result = sample_is(pipe, prompt, seed=seed, n=knobs["n"], beta=knobs["beta"], bank=bank,
                                       estimator=estimator, particles=knobs.get("particles", 1),
                                       rounds=knobs.get("rounds", 1))
                    extras = dict(ess=[float(e) for e in result.ess_b[:, 0]],
                                  ess_posterior=[float(e) for e in result.ess_a[:, 0]], sigmas=list(result.sigmas))
                    seconds = result.sample_seconds
                else:
                    result = best_of_n(pipe, prompt, seed=seed, n=knobs["n"], bank=bank)
                    title = f"Best-of-{knobs['n']}"
                    seconds = result.bank_seconds
                image = result.images[0]
                rewards = {bank.reward_name: float(result.rewards[0])}
            if config.method != "bon":
                title = f"{title} · {_knob_text(config)}"
            panel = Panel(image, title, config, rewards, seconds)
            self._aligned.put(key, (panel, extras))
            return panel, extras

    def _fill_bank(self, model: str, prompt: str, seed: int, n: int, progress: Progress | None) -> None:
        """Make the (prompt, seed) bank's missing samples up to ``n``, one batch at a time, reporting progress."""
        bank = self.bank(model)
        step = bank.batch_size
        with denoiser_memo(bank.pipe).paused():  # fresh noise seeds: nothing to remember
            for have in range(step, n + step, step):
                upto = min(have, n)
                if progress is not None:
                    progress(upto / n * 0.9, f"sample bank: {upto} of {n} samples")
                bank.get(prompt, seed, upto)
        key = (model, prompt, seed)
        self._filled.put(key, max(n, self._filled.get(key) or 0))

    def quick(self, model: str, prompt: str, seed, n=None) -> bool:
        """Whether ``explore`` will answer quickly: a diffusion model, or a flow model whose bank for (prompt, seed)
        already holds ``n`` samples (so only the guided trajectory is left to run)."""
        try:
            from alignment import check_prompt

            if self.family(model) == "diffusion":
                return True
            from alignment.defaults import FLOW_N

            key = (model, check_prompt(prompt), check_seed(seed))
            return (self._filled.get(key) or 0) >= check_n(FLOW_N if n is None else n, self.settings.max_n)
        except ValueError:
            return True  # explore will say what is wrong, at once

    def baseline(self, model: str, prompt: str, seed) -> Panel:
        """The baseline image of (model, prompt, seed), cached."""
        from alignment import check_prompt

        return self._baseline(self._check_model(model), check_prompt(prompt), check_seed(seed))

    def explore(self, model: str, prompt: str, seed, *, beta=None, eta=None, alpha=None, n=None, estimator=None,
                progress: Progress | None = None) -> ExploreView:
        """Baseline and aligned side by side (plus best-of-N and the ESS for flow), from the caches when possible.
        Knobs left out take the defaults of ``alignment.defaults`` for the model's family; ``estimator`` names a
        flow estimator setting (``"tuned"``, ``"paper"``)."""
        from alignment import check_prompt, defaults

        start = time.perf_counter()
        prompt, seed = check_prompt(prompt), check_seed(seed)
        family = self.family(model)
        notes: list[str] = []
        if family == "diffusion":
            aligned = Config.of(model, "guided", beta=defaults.DIFFUSION_BETA if beta is None else beta,
                                eta=defaults.DIFFUSION_ETA if eta is None else eta,
                                alpha=defaults.DIFFUSION_ALPHA if alpha is None else alpha)
        else:
            aligned = Config.of(model, "is", beta=defaults.FLOW_BETA if beta is None else beta,
                                n=defaults.FLOW_N if n is None else n,
                                **estimator_knobs(defaults.FLOW_ESTIMATOR if estimator is None else estimator))
        missing = self.available(aligned)
        if missing is not None:
            notes.append(missing)
            aligned = None
        else:
            aligned = self.check(aligned)
        if progress is not None:
            progress(0.0, f"loading {model}" if model not in self._pipes else "baseline")
        with self.lock:
            view = ExploreView(model, family, prompt, seed, self._baseline(model, prompt, seed), notes=notes)
            if not view.baseline.rewards:
                try:
                    self.reward(model)
                except Unavailable as e:
                    notes.append(str(e))
            if aligned is not None:
                if progress is not None:
                    progress(0.5 if family == "diffusion" else 0.05, "aligned sample")
                view.aligned, extras = self._aligned_panel(aligned, prompt, seed, progress)
                if family == "flow":
                    view.n = aligned.config["n"]
                    view.ess, view.ess_posterior = extras["ess"], extras["ess_posterior"]
                    view.sigmas = extras["sigmas"]
                    view.best_of_n, _ = self._aligned_panel(Config.of(model, "bon", n=view.n), prompt, seed)
                    collapsed = tilt_collapse(view.ess, view.ess_posterior)
                    if collapsed is not None:
                        step, b, a = collapsed
                        notes.append(f"The reward tilt put nearly all weight on one bank sample at step {step} (ESS "
                                     f"{b:.2f} of N={view.n}, while the posterior still spread over {a:.1f}): the "
                                     "aligned image leans on that sample. Raise β or N.")
        view.notes = list(dict.fromkeys(notes))
        view.seconds = time.perf_counter() - start
        return view


def tilt_collapse(ess_b: list[float], ess_a: list[float], floor: float = 1.5) -> tuple[int, float, float] | None:
    """The first step (1-based) where the tilted weights b sit on about one sample (ESS < ``floor``) although the
    posterior weights a still spread (ESS ≥ 2): the reward, not the geometry, degenerated the bank. At small σ the
    posterior itself concentrates on the nearest sample, so ESS(b) ≈ 1 there says nothing about β."""
    for step, (b, a) in enumerate(zip(ess_b, ess_a, strict=True), start=1):
        if b < floor and a >= 2.0:
            return step, b, a
    return None


def _knob_text(config: Config) -> str:
    from .store import LABEL_KEYS

    return " ".join(f"{LABEL_KEYS[k]}={v:g}" for k, v in config.knobs)


def default_arena_configs(models: tuple[str, ...] = TOY_MODELS) -> list[Config]:
    """Baseline and aligned configurations of each model (the arena's list)."""
    from alignment import defaults
    from alignment.presets import find_preset

    configs = []
    for model in models:
        preset = find_preset(model)
        family = preset.family if preset else None
        configs.append(Config.of(model, "baseline"))
        if family == "diffusion":
            configs += [Config.of(model, "guided", alpha=defaults.DIFFUSION_ALPHA, beta=defaults.DIFFUSION_BETA,
                                  eta=defaults.DIFFUSION_ETA),
                        Config.of(model, "guided", alpha=1.0, beta=0.5, eta=1.0)]
        elif family == "flow":  # the tuned and the paper's estimator, and best-of-N at the same compute (N + 1)
            configs += [Config.of(model, "is", beta=defaults.FLOW_BETA, n=defaults.FLOW_N,
                                  **estimator_knobs(defaults.FLOW_ESTIMATOR)),
                        Config.of(model, "is", beta=defaults.FLOW_BETA, n=defaults.FLOW_N),
                        Config.of(model, "bon", n=defaults.FLOW_N + 1)]
    return configs
