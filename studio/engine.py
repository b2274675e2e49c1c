"""What the studio generates, and what it keeps so that a slider never redoes cached work. Plain Python, no Gradio.

    engine = Engine()                                         # toy presets on CPU (or StudioSettings.from_env())
    view = engine.explore("toy-sdxl", "a red star on a blue background", seed=0)   # the defaults: alignment.defaults
    view.baseline.image, view.baseline.rewards, view.aligned.image, view.aligned.rewards
    view = engine.explore("toy-sd3", "a red star on a blue background", seed=0, beta=0.3, n=8, estimator="paper")
    view.best_of_n, view.ess                                  # flow: best-of-N from the same bank, ESS per step
    panel = engine.render(Config.of("toy-sd3", "is", beta=0.3, n=8), prompt, seed)   # one arena image

The studio's parts, by role: ``settings`` (what it offers, from the environment), ``resources`` (pipelines,
rewards, guidance networks and sample banks, loaded once per model: ``engine.resources``), ``configs`` (model,
method and knobs), ``checks`` (input rules) and this module, which makes the images.

Caches (least recently used dropped, ``alignment.lru.LRU``): the baseline per (model, prompt, seed); every aligned
image per (model, prompt, seed, knobs); and for flow models the samples made per (prompt, seed) in the model's
``SampleBank``, so moving β re-runs only the guided trajectory and raising N only makes the missing samples. The
pipeline's denoiser and text encoders are wrapped in a ``Memo`` (``studio.memo``): the first step of every
trajectory from one (prompt, seed) is the same call, answered once. All model work holds the resources' one lock.

A missing guidance network or reward is not a crash: the baseline still comes, and ``notes`` says what is missing
and how to make it. Bad knobs raise ``ValueError`` with a sentence meant for the person at the page.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Callable

from PIL import Image

from alignment.checks import check_seed
from alignment.lru import LRU
from alignment.sample_bank import check_n

from .checks import N_NAME, SEED_LIMIT, check_config
from .configs import ESTIMATOR_KNOBS, GUIDED, METHOD_NAMES, Config, estimator_knobs, guided_method
from .memo import denoiser_memo
from .resources import Resources, Unavailable
from .settings import StudioSettings

log = logging.getLogger("studio.engine")
WARM_LOG = "studio warm-up done"  # the log line that says the first click will not wait for loading or compiling

Progress = Callable[[float, str], None]


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


WARM_UP_PROMPT = "a red circle on a white background"  # rendered once per model at start-up when compiling


class Engine:
    """Generation over ``resources`` (made from ``settings`` when not given), with its caches."""

    def __init__(self, settings: StudioSettings | None = None, *, resources: Resources | None = None,
                 cache_size: int = 256):
        self.resources = resources or Resources(settings)
        self.lock = self.resources.lock
        self._baselines = LRU(cache_size)  # (model, prompt, seed) -> Panel
        self._aligned = LRU(cache_size)  # (config, prompt, seed) -> (Panel, extras)
        self._filled = LRU(cache_size)  # (model, prompt, seed) -> bank samples made

    @property
    def settings(self) -> StudioSettings:
        return self.resources.settings

    @property
    def models(self) -> tuple[str, ...]:
        return self.resources.models

    def family(self, model: str) -> str:
        return self.resources.family(model)

    def available(self, config: Config) -> str | None:
        """None when ``config`` can be rendered now, else why not (a missing guidance network or reward)."""
        return self.resources.available(config)

    def check(self, config: Config) -> Config:
        """The config with its knobs checked and normalised (floats, N an int); ValueError says what is wrong."""
        model = self.resources.check_model(config.model)
        return check_config(config, self.family(model), max_n=self.settings.max_n,
                            trained_ranges=lambda: self.resources.trained_ranges(model, config.method))

    def warm_up(self) -> None:
        """Load what the first click needs (``Resources.warm_up``); when the models are compiled, also render each
        model's Explore defaults once, so that the compiler runs now and not on someone's request. Errors are left
        for the click that meets them."""
        began = time.perf_counter()
        self.resources.warm_up()
        if self.settings.compiles(self.settings.device):
            for model in self.models:
                started = time.perf_counter()
                try:
                    self.explore(model, WARM_UP_PROMPT, 0)
                except Exception:  # noqa: BLE001 - the page reports it when someone asks; the log says it now
                    log.exception("warm-up render of %s failed", model)
                else:
                    log.info("%s compiled and rendered in %.1f s", model, time.perf_counter() - started)
        log.info("%s in %.1f s", WARM_LOG, time.perf_counter() - began)  # what scripts wait for

    def render(self, config: Config, prompt: str, seed: int, progress: Progress | None = None) -> Panel:
        """One image of ``config`` for (prompt, seed), from the cache when it was made before."""
        from alignment import check_prompt

        prompt, seed = check_prompt(prompt), check_seed(seed, SEED_LIMIT)
        config = self.check(config)
        if config.method == "baseline":
            return self._baseline(config.model, prompt, seed)
        return self._aligned_panel(config, prompt, seed, progress)[0]

    def _baseline(self, model: str, prompt: str, seed: int) -> Panel:
        key = (model, prompt, seed)
        with self.lock:
            cached = self._baselines.lookup(key)
            if cached is not None:
                return replace(cached, cached=True)
            from alignment import generate

            pipe, preset = self.resources.pipeline(model)
            start = time.perf_counter()
            image = generate(pipe, prompt, seed=seed, preset=preset).images[0]
            rewards = self._score(model, image, prompt)
            panel = Panel(image, METHOD_NAMES["baseline"], Config.of(model, "baseline"), rewards,
                          time.perf_counter() - start)
            return self._baselines.put(key, panel)

    def _score(self, model: str, image: Image.Image, prompt: str) -> dict[str, float]:
        try:
            reward = self.resources.reward(model)
        except Unavailable:
            return {}
        return {reward.name: float(reward.score([image], [prompt])[0])}

    def _aligned_panel(self, config: Config, prompt: str, seed: int,
                       progress: Progress | None = None) -> tuple[Panel, dict]:
        """(panel, extras) for guided / is / fk / bon; extras hold the ESS and σ of an IS run."""
        key = (config, prompt, seed)
        with self.lock:
            cached = self._aligned.lookup(key)
            if cached is not None:
                panel, extras = cached
                return replace(panel, cached=True), extras
            knobs = config.config
            pipe, preset = self.resources.pipeline(config.model)
            extras: dict = {}
            title = METHOD_NAMES[config.method]
            if config.method in GUIDED:
                from alignment.diffusion_sampler import sample_guided

                network = self.resources.network(config.model, config.method)
                result = sample_guided(pipe, prompt, network=network, beta=knobs["beta"], eta=knobs["eta"],
                                       alpha=knobs["alpha"], seed=seed, preset=preset)
                image = result.images[0]
                seconds = result.seconds
                rewards = self._score(config.model, image, prompt)
            elif config.method == "bon" and self.family(config.model) == "diffusion":
                from alignment.diffusion_sampler import best_of_n

                reward = self.resources.reward(config.model)
                result = best_of_n(pipe, prompt, n=knobs["n"], seed=seed, reward=reward, preset=preset)
                image, seconds = result.images[0], result.seconds
                rewards = {reward.name: float(result.rewards[0])}
                title = f"Best-of-{knobs['n']}"
            elif config.method == "fk":
                from alignment.fk_steering import sample_fk

                bank = self.resources.bank(config.model)  # lends its reward, settings and prompt encodings
                result = sample_fk(pipe, prompt, seed=seed, particles=knobs["particles"], beta=knobs["beta"],
                                   bank=bank)
                image, seconds = result.images[0], result.sample_seconds
                rewards = {bank.reward_name: float(result.rewards[0])}
            else:
                from alignment.flow_sampler import best_of_n, sample_is

                self._fill_bank(config.model, prompt, seed, knobs["n"], progress)
                bank = self.resources.bank(config.model)
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
                title = f"{title} · {config.knob_text()}"
            panel = Panel(image, title, config, rewards, seconds)
            self._aligned.put(key, (panel, extras))
            return panel, extras

    def _fill_bank(self, model: str, prompt: str, seed: int, n: int, progress: Progress | None) -> None:
        """Make the (prompt, seed) bank's missing samples up to ``n``, one batch at a time, reporting progress."""
        bank = self.resources.bank(model)
        step = bank.batch_size
        with denoiser_memo(bank.pipe).paused():  # fresh noise seeds: nothing to remember
            for have in range(step, n + step, step):
                upto = min(have, n)
                if progress is not None:
                    progress(upto / n * 0.9, f"sample bank: {upto} of {n} samples")
                bank.get(prompt, seed, upto)
        key = (model, prompt, seed)
        self._filled.put(key, max(n, self._filled.lookup(key, 0)))

    def bank_ready(self, model: str, prompt: str, seed, n=None) -> bool:
        """Whether no sample bank must be made before ``explore`` answers: a diffusion model (it has none), or a
        flow model whose bank for (prompt, seed) already holds ``n`` samples (only the guided trajectory is left
        to run). Bad input counts as ready: ``explore`` refuses it at once."""
        try:
            from alignment import check_prompt

            if self.family(model) == "diffusion":
                return True
            from alignment.defaults import FLOW_N

            key = (model, check_prompt(prompt), check_seed(seed, SEED_LIMIT))
            return self._filled.lookup(key, 0) >= check_n(FLOW_N if n is None else n, self.settings.max_n, N_NAME)
        except ValueError:
            return True  # explore will say what is wrong, at once

    def baseline(self, model: str, prompt: str, seed) -> Panel:
        """The baseline image of (model, prompt, seed), cached."""
        from alignment import check_prompt

        return self._baseline(self.resources.check_model(model), check_prompt(prompt), check_seed(seed, SEED_LIMIT))

    def explore(self, model: str, prompt: str, seed, *, beta=None, eta=None, alpha=None, n=None, estimator=None,
                progress: Progress | None = None) -> ExploreView:
        """Baseline and aligned side by side (plus best-of-N and the ESS for flow), from the caches when possible.
        Knobs left out take the defaults of ``alignment.defaults`` for the model's family; ``estimator`` names the
        setting, ``"tuned"`` (the default) or ``"paper"``: the flow estimator's options, or which guidance network a
        diffusion model follows (trained through its sampler, or with the paper's loss)."""
        from alignment import check_prompt, defaults

        start = time.perf_counter()
        prompt, seed = check_prompt(prompt), check_seed(seed, SEED_LIMIT)
        family = self.family(model)
        notes: list[str] = []
        if family == "diffusion":
            aligned = Config.of(model, guided_method(estimator),
                                beta=defaults.DIFFUSION_BETA if beta is None else beta,
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
            progress(0.0, "baseline" if self.resources.loaded(model) else f"loading {model}")
        with self.lock:
            view = ExploreView(model, family, prompt, seed, self._baseline(model, prompt, seed), notes=notes)
            if not view.baseline.rewards:
                try:
                    self.resources.reward(model)
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
                    # the paper's estimator then only copies that sample; the tuned one (τ, λ) still guides
                    paper = not {"tau", "scale"} & set(aligned.config)
                    if collapsed is not None and paper:
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
