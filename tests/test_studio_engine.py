"""The studio's engine without a browser: what is cached is never made again, cached answers are exactly the
sampler's, missing weights are messages, and bad knobs are refused with a sentence."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_studio_helpers import PROMPT, REWARD, studio_engine  # noqa: F401  (fixture)

from alignment.diffusion_sampler import sample_guided
from alignment.flow_sampler import sample_is
from alignment.presets import PRESETS
from studio.configs import Config, default_arena_configs
from studio.engine import Engine, tilt_collapse
from studio.resources import Unavailable
from studio.settings import StudioSettings
from studio.memo import Memo


def pixels(image):
    return np.asarray(image, dtype=np.int16)


def test_diffusion_pair_then_a_slider_reuses_the_baseline_and_matches_the_sampler(studio_engine):
    engine = studio_engine
    first = engine.explore("toy-sdxl", PROMPT, 11, beta=0.5, eta=1.0, alpha=1.0)
    assert first.family == "diffusion" and not first.baseline.cached and not first.aligned.cached
    assert set(first.baseline.rewards) == set(first.aligned.rewards) == {REWARD}
    unet = engine.resources.pipeline("toy-sdxl")[0].unet
    assert isinstance(unet, Memo)
    hits = unet.hits
    moved = engine.explore("toy-sdxl", PROMPT, 11, beta=0.2, eta=1.0, alpha=3.0)
    assert moved.baseline.cached and not moved.aligned.cached
    assert unet.hits == hits + 1  # the first denoiser step is the baseline's
    assert "β=0.2" in moved.aligned.title and "α=3" in moved.aligned.title
    # the memo's answer is the model's: the same image as a fresh sampler call on an unwrapped pipeline
    from alignment import load_pipeline

    pipe, preset = load_pipeline("toy-sdxl", device="cpu")
    direct = sample_guided(pipe, PROMPT, network=engine.resources.network("toy-sdxl"), beta=0.2, eta=1.0, alpha=3.0,
                           seed=11, preset=preset)
    assert np.array_equal(pixels(direct.images[0]), pixels(moved.aligned.image))
    again = engine.explore("toy-sdxl", PROMPT, 11, beta=0.5, eta=1.0, alpha=1.0)
    assert again.aligned.cached and np.array_equal(pixels(again.aligned.image), pixels(first.aligned.image))


def test_zero_strength_gives_the_baseline(studio_engine):
    view = studio_engine.explore("toy-sdxl", PROMPT, 12, beta=0.5, eta=1.0, alpha=0.0)
    assert np.array_equal(pixels(view.baseline.image), pixels(view.aligned.image))


def test_flow_bank_is_cached_beta_reruns_only_the_trajectory_and_n_extends_it(studio_engine):
    engine = studio_engine
    steps = []
    view = engine.explore("toy-sd3", PROMPT, 3, beta=0.5, n=4, progress=lambda f, desc: steps.append((f, desc)))
    bank = engine.resources.bank("toy-sd3")
    made = bank.samples_made
    assert view.family == "flow" and view.n == 4 and made >= 4
    assert view.best_of_n.rewards[REWARD] == pytest.approx(float(bank.get(PROMPT, 3, 4).rewards.max()))
    assert len(view.ess) == len(view.sigmas) == len(view.ess_posterior) == PRESETS["toy-sd3"].steps  # one per step
    assert all(1 - 1e-4 <= e <= 4 + 1e-4 for e in view.ess + view.ess_posterior)
    assert view.ess_posterior[0] == pytest.approx(4.0)  # at σ = 1 the posterior weights are uniform
    assert any("sample bank" in desc for _, desc in steps) and all(0 <= f <= 1 for f, _ in steps)

    moved = engine.explore("toy-sd3", PROMPT, 3, beta=2.0, n=4)
    assert bank.samples_made == made, "a β change makes no bank samples"
    assert moved.baseline.cached and moved.best_of_n.cached and not moved.aligned.cached
    fresh = sample_is(engine.resources.pipeline("toy-sd3")[0], PROMPT, seed=3, n=4, beta=2.0, bank=bank)
    assert np.array_equal(pixels(fresh.images[0]), pixels(moved.aligned.image))

    engine.explore("toy-sd3", PROMPT, 3, beta=2.0, n=6)
    assert bank.samples_made == made + 2, "raising N makes only the missing samples"


def test_a_tilt_collapse_is_told_apart_from_the_posterior_concentrating():
    assert tilt_collapse([1.1, 1.0], [8.0, 1.0]) == (1, 1.1, 8.0)  # the reward did it: warn
    assert tilt_collapse([3.0, 1.0, 1.0], [8.0, 1.01, 1.0]) is None  # small σ: every weight concentrates
    assert tilt_collapse([], []) is None


def test_missing_guidance_network_shows_the_baseline_with_a_note(tmp_path):
    engine = Engine(StudioSettings(device="cpu", reward=REWARD, guidance=str(tmp_path / "not-trained-yet")))
    view = engine.explore("toy-sdxl", PROMPT, 0)
    assert view.aligned is None and view.baseline.image is not None
    assert any("guidance network is not in" in note for note in view.notes)
    assert engine.available(Config.of("toy-sdxl", "guided", beta=0.5, eta=1.0, alpha=1.0)) is not None
    with pytest.raises(Unavailable, match="guidance network"):
        engine.render(Config.of("toy-sdxl", "guided", beta=0.5, eta=1.0, alpha=1.0), PROMPT, 0)


def test_missing_reward_leaves_images_unscored_with_a_note(tmp_path):
    engine = Engine(StudioSettings(device="cpu", reward="no-such-reward", guidance=str(tmp_path / "none")))
    view = engine.explore("toy-sdxl", PROMPT, 0)
    assert view.baseline.rewards == {} and view.baseline.caption().startswith("reward unavailable")
    assert any("no-such-reward" in note for note in view.notes)
    flow = engine.explore("toy-sd3", PROMPT, 0, n=2)
    assert flow.aligned is None and any("no-such-reward" in note for note in flow.notes)


@pytest.mark.parametrize("kwargs,match", [
    (dict(prompt=""), "prompt is empty"),
    (dict(prompt="x" * 5000), "characters"),
    (dict(seed=-1), "seed"), (dict(seed=1.5), "seed"), (dict(seed=None), "seed"), (dict(seed=float("nan")), "seed"),
    (dict(seed="abc"), "seed"), (dict(seed=2**31), "seed"), (dict(seed=True), "seed"),
    (dict(beta=0.0), "β"), (dict(beta=100.0), "β"), (dict(beta=float("nan")), "β"), (dict(beta="x"), "β"),
    (dict(eta=-1.0), "η"), (dict(eta=float("inf")), "η"), (dict(alpha=50.0), "α"),
    (dict(model="toy-sd3", n=0), "N"), (dict(model="toy-sd3", n=1000), "N"), (dict(model="toy-sd3", n=2.5), "N"),
    (dict(model="toy-sd3", beta=-1.0), "β"),
    (dict(model="no-such-model"), "unknown model"), (dict(model=None), "unknown model"),
])
def test_bad_knobs_are_refused_with_a_sentence(studio_engine, kwargs, match):
    args = dict(model="toy-sdxl", prompt=PROMPT, seed=0, beta=0.5, eta=1.0, alpha=1.0, n=4) | kwargs
    with pytest.raises(ValueError, match=match):
        studio_engine.explore(args.pop("model"), args.pop("prompt"), args.pop("seed"), **args)


def test_configs_check_and_label(studio_engine):
    config = studio_engine.check(Config.of("toy-sd3", "is", beta=0.5, n=8.0))
    assert config.config == {"beta": 0.5, "n": 8} and config.label == "toy-sd3 · is · β=0.5 N=8"
    with pytest.raises(ValueError, match="methods are"):
        studio_engine.check(Config.of("toy-sdxl", "is", beta=0.5, n=8))
    with pytest.raises(ValueError, match="unknown settings"):
        studio_engine.check(Config.of("toy-sdxl", "baseline", beta=0.5))
    fk = studio_engine.check(Config.of("toy-sd3", "fk", beta=0.3, particles=9.0))
    assert fk.config == {"beta": 0.3, "particles": 9} and fk.label == "toy-sd3 · fk · β=0.3 K=9"
    with pytest.raises(ValueError, match="particles"):
        studio_engine.check(Config.of("toy-sd3", "fk", beta=0.3, particles=0))
    assert studio_engine.check(Config.of("toy-sdxl", "bon", n=2)).config == {"n": 2}
    from alignment.defaults import FLOW_BETA, FLOW_N, FLOW_PARTICLES

    labels = [c.label for c in default_arena_configs()]
    assert "toy-sdxl · baseline" in labels and len(set(labels)) == len(labels)
    assert f"toy-sd3 · bon · N={FLOW_N + FLOW_PARTICLES}" in labels  # best-of-N at the default's trajectories
    assert f"toy-sd3 · is · β={FLOW_BETA:g} N={FLOW_N} τ=16 λ=3 K={FLOW_PARTICLES}" in labels
    assert "toy-sdxl · bon · N=2" in labels and f"toy-sd3 · fk · β={FLOW_BETA:g} K={FLOW_N + FLOW_PARTICLES}" in labels


def test_render_of_every_arena_config(studio_engine):
    for config in default_arena_configs():
        panel = studio_engine.render(config, PROMPT, 5)
        assert panel.image.size == (64, 64) and math.isfinite(panel.rewards[REWARD]) and panel.config.model


def test_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv("STUDIO_MODELS", "sdxl-turbo, ./my-folder")
    monkeypatch.setenv("STUDIO_MAX_N", "128")
    monkeypatch.delenv("STUDIO_DEVICE", raising=False)
    settings = StudioSettings.from_env()
    assert settings.models == ("toy-sdxl", "toy-sd3", "sdxl-turbo", "./my-folder")
    assert settings.device is None and settings.max_n == 128  # accelerate picks the device for real models
    assert settings.reward_for("toy-sd3") == "toy-pickscore" and settings.reward_for("sdxl-turbo") == "pickscore"
    assert settings.guidance_for("toy-sdxl").endswith("toy-guidance") and settings.guidance_for("sdxl-turbo") is None
    monkeypatch.delenv("STUDIO_MODELS")
    assert StudioSettings.from_env().device == "cpu"
    assert StudioSettings.from_env(real=True).models[2:] == ("sdxl-turbo", "sd3.5-large-turbo")


# ---- the memo ---------------------------------------------------------------------------------------------------

class Counting(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0
        self.weight = torch.nn.Parameter(torch.tensor(2.0))

    def forward(self, x, timestep, scale=1.0, extra=None):
        self.calls += 1
        return (x * self.weight * scale + timestep,)


def test_memo_answers_repeated_first_steps_only_and_exactly():
    model = Counting()
    memo = Memo(model, size=2)
    x = torch.randn(2, 3)
    first = memo(x, torch.tensor([999.0]), scale=1.0, extra={"ids": torch.arange(3)})[0]
    again = memo(x.clone(), torch.tensor([999.0]), scale=1.0, extra={"ids": torch.arange(3)})[0]
    assert model.calls == 1 and memo.hits == 1 and torch.equal(first, again)
    again.add_(1)  # a caller changing its answer in place does not change the memory
    assert torch.equal(memo(x, torch.tensor([999.0]), scale=1.0, extra={"ids": torch.arange(3)})[0], first)
    memo(x, torch.tensor([999.0]), scale=2.0, extra={"ids": torch.arange(3)})  # another argument: a new call
    memo(x, torch.tensor([500.0]))  # a later step: never remembered
    memo(x, torch.tensor([500.0]))
    assert model.calls == 4
    with memo.paused():
        memo(torch.randn(2, 3), torch.tensor([999.0]))
    assert len(memo._memory) == 2
    y = torch.randn(2, 3, requires_grad=True)
    memo(y, torch.tensor([999.0]))[0].sum().backward()  # gradients pass through, unremembered
    assert y.grad is not None and memo.weight is model.weight  # attributes come from the wrapped model


def test_the_estimator_choice_reaches_the_aligned_image(studio_engine):
    """Explore's estimator radio: "tuned" (the default) carries its options as knobs, "paper" none; a name that
    is not a setting is one sentence."""
    from alignment.defaults import FLOW_BETA, PARTICLES, TUNED

    tuned = studio_engine.explore("toy-sd3", PROMPT, 31, n=2)
    paper = studio_engine.explore("toy-sd3", PROMPT, 31, n=2, estimator="paper")
    assert tuned.aligned.config.config == {"beta": FLOW_BETA, "n": 2, "tau": TUNED.tau, "scale": TUNED.scale,
                                           "particles": PARTICLES["tuned"]}
    assert paper.aligned.config.config == {"beta": FLOW_BETA, "n": 2}
    assert paper.baseline.cached and "τ=" in tuned.aligned.title and "τ=" not in paper.aligned.title
    with pytest.raises(ValueError, match="estimator must be one of"):
        studio_engine.explore("toy-sd3", PROMPT, 31, n=2, estimator="magic")


def test_the_guidance_network_choice_reaches_the_aligned_image(studio_engine):
    """For a diffusion model the same radio picks the guidance network: "tuned" (trained through its sampler, the
    default) or "paper" (trained with the paper's loss), each image exactly its network's; the Arena lists both."""
    from alignment import defaults, load_pipeline

    tuned = studio_engine.explore("toy-sdxl", PROMPT, 32)
    paper = studio_engine.explore("toy-sdxl", PROMPT, 32, estimator="paper")
    assert tuned.aligned.config.method == "guided" and paper.aligned.config.method == "guided-paper"
    assert paper.baseline.cached and "paper" in paper.aligned.title
    assert not np.array_equal(pixels(tuned.aligned.image), pixels(paper.aligned.image))
    pipe, preset = load_pipeline("toy-sdxl", device="cpu")
    from alignment.guidance_network import GuidanceNetwork

    direct = sample_guided(pipe, PROMPT, network=GuidanceNetwork.from_pretrained(defaults.PAPER_GUIDANCE_NETWORK),
                           beta=defaults.DIFFUSION_BETA, eta=defaults.DIFFUSION_ETA, alpha=defaults.DIFFUSION_ALPHA,
                           seed=32, preset=preset)
    assert np.array_equal(pixels(direct.images[0]), pixels(paper.aligned.image))
    with pytest.raises(ValueError, match="estimator must be one of"):
        studio_engine.explore("toy-sdxl", PROMPT, 32, estimator="magic")
    settings = studio_engine.settings
    assert settings.guidance_for("toy-sdxl", paper=True) == str(defaults.PAPER_GUIDANCE_NETWORK)
    assert settings.guidance_for("sdxl-turbo", paper=True) is None
    configs = default_arena_configs(studio_engine.models, settings)
    expected = Config.of("toy-sdxl", "guided-paper", beta=defaults.PAPER_DIFFUSION_BETA, eta=1.0, alpha=1.0)
    assert expected in configs and expected not in default_arena_configs(studio_engine.models)
    assert math.isfinite(studio_engine.render(expected, PROMPT, 5).rewards[REWARD])
    missing = StudioSettings(models=("toy-sdxl",), paper_guidance="/nowhere/paper-network")
    assert "not in /nowhere/paper-network" in Engine(missing).available(expected)


def test_warm_up_loads_every_model_on_a_gpu_and_the_first_alone_on_a_cpu(monkeypatch):
    from studio.resources import Resources

    def loaded(device, compile):
        resources = Resources(StudioSettings(models=("toy-sdxl", "toy-sd3"), device=device, compile=compile))
        seen = []
        for part in ("pipeline", "reward", "network"):
            monkeypatch.setattr(resources, part, lambda model, *a, part=part: seen.append((part, model)))
        resources.warm_up()
        return {model for _, model in seen}

    assert loaded("cpu", "auto") == {"toy-sdxl"}  # the page is up in seconds; the others load when asked for
    assert loaded("cuda", "off") == {"toy-sdxl", "toy-sd3"}  # eager on a GPU: no click waits for loading
    assert loaded("cpu", "on") == {"toy-sdxl", "toy-sd3"}  # compiled: Engine.warm_up renders each
