"""The options of the flow estimator (likelihood temperature τ, guidance scale λ, σ window, damped reward scale κ)
against closed forms on a Gaussian with a linear reward, and the guided particles / iterated tilting of
``sample_is`` on the toy SD3 pipeline."""

import math

import numpy as np
import pytest
import torch

from alignment import load_pipeline
from alignment.defaults import ESTIMATORS, TUNED
from alignment.flow_guidance import PAPER, Estimator, flow_guidance
from alignment.flow_sampler import best_of_n, particle_seed, resolve_estimator, sample_is
from alignment.rewards import Reward
from alignment.sample_bank import MAX_BANK, SampleBank, sample_seed

M, S = torch.tensor([0.5, -1.0], dtype=torch.float64), 0.8  # p(x0) = N(M, S² I)
W = torch.tensor([0.6, 0.4], dtype=torch.float64)  # r(x) = w·x; p*(x0) = N(M + S² w/β, S² I)


def closed_form(x_t, sigma, beta, tau=1.0, scale=1.0, damping=0.0):
    """λ (E_τ[x0|x_t] − E*_τ[x0|x_t]) / σ for the Gaussian, where E_τ is the posterior mean under a likelihood
    kernel of variance τσ² (x_t = (1−σ) x0 + √τ σ ε) and E* the same for the tilt at β_t = β + 2κ v(σ)."""
    c = 1 - sigma
    beta_t = beta + 2 * damping * sigma**2 / (c**2 + sigma**2)
    gain = c * S**2 / (c**2 * S**2 + tau * sigma**2)

    def mean(m):
        return m + gain * (x_t - c * m)

    return scale * (mean(M) - mean(M + S**2 * W / beta_t)) / sigma


@pytest.fixture(scope="module")
def bank():
    g = torch.Generator().manual_seed(0)
    return M + S * torch.randn(200_000, 2, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("sigma,tau,scale,damping", [(0.8, 1.0, 1.0, 0.0), (0.5, 4.0, 1.0, 0.0),
                                                     (0.3, 16.0, 3.0, 0.0), (0.6, 2.0, 1.0, 1.5)])
def test_options_match_the_gaussian_closed_form(bank, sigma, tau, scale, damping):
    """Each option against its exact answer. Tolerance: the self-normalised estimates err by about
    sqrt(Var/ESS); with 200 k draws, 5 % of the correction's size (the correction is O(1) here)."""
    beta = 1.0
    x_t = torch.tensor([[0.2, -0.5], [-0.4, 0.1], [0.9, -1.2]], dtype=torch.float64)
    est = Estimator(tau=tau, scale=scale, damping=damping)
    got = flow_guidance(x_t, bank, bank @ W, sigma, beta, est).delta_v
    want = closed_form(x_t, sigma, beta, tau, scale, damping)
    assert torch.allclose(got, want, rtol=0.05, atol=0.02 * scale), (got, want)
    if (tau, scale, damping) != (1.0, 1.0, 0.0):  # the option changes the answer by more than the tolerance
        assert (got - closed_form(x_t, sigma, beta)).abs().max() > 0.1


def test_a_larger_tau_keeps_the_weights_from_collapsing():
    """In high dimension the paper's weights collapse onto one bank sample; τ keeps many alive."""
    g = torch.Generator().manual_seed(1)
    common = torch.randn(1, 1024, generator=g)  # one prompt's samples: close to each other
    bank, r = common + 0.1 * torch.randn(16, 1024, generator=g), torch.randn(16, generator=g)
    x_t = 0.7 * bank[:1] + 0.3 * torch.randn(1, 1024, generator=g)
    paper = flow_guidance(x_t, bank, r, 0.3, 1.0)
    tempered = flow_guidance(x_t, bank, r, 0.3, 1.0, Estimator(tau=64.0))
    assert paper.ess_b.item() < 1.01 and tempered.ess_b.item() > 3
    assert paper.delta_v.norm() < 1e-6 < tempered.delta_v.norm()


def test_the_sigma_window_and_the_paper_setting():
    g = torch.Generator().manual_seed(2)
    bank, x_t, r = torch.randn(32, 3, 4, 4, generator=g), torch.randn(4, 3, 4, 4, generator=g), torch.randn(32)
    window = Estimator(tau=4.0, sigma_min=0.4, sigma_max=0.8)
    inside = flow_guidance(x_t, bank, r, 0.6, 0.5, window).delta_v
    assert torch.allclose(inside, flow_guidance(x_t, bank, r, 0.6, 0.5, Estimator(tau=4.0)).delta_v)
    for sigma in (0.2, 0.95):
        assert flow_guidance(x_t, bank, r, sigma, 0.5, window).delta_v.abs().max() == 0
    # per-image σ: the window applies image by image
    mixed = flow_guidance(x_t, bank, r, torch.tensor([0.2, 0.6, 0.6, 0.95], dtype=torch.float64), 0.5, window).delta_v
    assert mixed[0].abs().max() == 0 and mixed[3].abs().max() == 0 and torch.allclose(mixed[1], inside[1])
    # the default is the paper's estimator, exactly
    assert torch.equal(flow_guidance(x_t, bank, r, 0.6, 0.5).delta_v, flow_guidance(x_t, bank, r, 0.6, 0.5, PAPER).delta_v)
    assert PAPER == Estimator(1.0, 1.0, 0.0, 1.0, 0.0) and ESTIMATORS["paper"] is PAPER and ESTIMATORS["tuned"] is TUNED


@pytest.mark.parametrize("kwargs,word", [(dict(tau=0), "tau"), (dict(tau=float("nan")), "tau"),
                                         (dict(scale=-1), "scale"), (dict(sigma_min=0.5, sigma_max=0.2), "window"),
                                         (dict(damping=-1), "damping"), (dict(scale="3"), "scale"),
                                         (dict(sigma_max=1.5), "window")])
def test_bad_estimator_options_are_refused(kwargs, word):
    with pytest.raises(ValueError, match=word):
        Estimator(**kwargs)


def test_estimators_resolve_by_name_dict_or_value():
    assert resolve_estimator("paper") is PAPER and resolve_estimator(None) is PAPER
    assert resolve_estimator({"tau": 2.0}) == Estimator(tau=2.0)
    with pytest.raises(ValueError, match="unknown estimator"):
        resolve_estimator("best")


# ---- particles and iterated tilting on the toy pipeline -------------------------------------------------------------

class Redness(Reward):
    name = "test-redness-particles"

    def _score(self, x, prompts):
        return (x[:, 0].mean((1, 2)) - x[:, 2].mean((1, 2))).float()


PROMPTS = ["a red star on a blue background", "a white ring on a black background"]


@pytest.fixture(scope="module")
def toy():
    pipe, preset = load_pipeline("toy-sd3", device="cpu")
    return pipe, SampleBank(pipe, Redness(), preset=preset, steps=2, batch_size=4)


def test_particles_return_the_best_guided_sample(toy):
    pipe, bank = toy
    one = sample_is(pipe, PROMPTS, seed=4, n=3, beta=0.3, bank=bank, estimator=TUNED)
    three = sample_is(pipe, PROMPTS, seed=4, n=3, beta=0.3, bank=bank, estimator=TUNED, particles=3)
    assert one.trajectories == 4 and three.trajectories == 6 and three.estimator["particles"] == 3
    assert one.picks is None and len(three.picks) == 2
    # particle 0 starts from the seed's noise: with K = 3 the winner is never worse than the single particle
    assert (three.rewards >= one.rewards - 1e-5).all()
    assert torch.allclose(three.rewards, Redness().score(three.images, PROMPTS), atol=1e-5)
    assert three.ess_b.shape == one.ess_b.shape == (2, 2)  # the ESS of particle 0, per prompt
    assert particle_seed(4, 1) == sample_seed(4, MAX_BANK + 1)
    calls = bank.pipeline_calls
    sample_is(pipe, PROMPTS, seed=4, n=3, beta=0.3, bank=bank, estimator=TUNED, particles=2, rounds=2)
    assert bank.pipeline_calls == calls  # rounds grow a private copy of the bank, never the cache
    assert len(bank.get(PROMPTS[0], 4, 3)) == 3


def test_iterated_tilting_guides_with_the_grown_bank(toy):
    pipe, bank = toy
    twice = sample_is(pipe, PROMPTS[:1], seed=5, n=2, beta=0.3, bank=bank, estimator=TUNED, rounds=2)
    assert twice.trajectories == 4 and twice.picks is not None and twice.picks[0] in (0, 1)
    once = sample_is(pipe, PROMPTS[:1], seed=5, n=2, beta=0.3, bank=bank, estimator=TUNED)
    if twice.picks[0] == 0:  # round 0 is the single-round run
        assert np.array_equal(np.asarray(twice.images[0]), np.asarray(once.images[0]))
    assert twice.rewards[0] >= once.rewards[0] - 1e-5
    assert best_of_n(pipe, PROMPTS[:1], seed=5, n=2, bank=bank).trajectories == 2


@pytest.mark.parametrize("kwargs,word", [(dict(particles=0), "particles"), (dict(rounds=17), "rounds"),
                                         (dict(particles=1.5), "particles"), (dict(estimator="nope"), "estimator")])
def test_bad_particle_settings_are_refused_before_any_work(toy, kwargs, word):
    pipe, bank = toy
    calls = bank.pipeline_calls
    with pytest.raises(ValueError, match=word):
        sample_is(pipe, PROMPTS[0], seed=99, n=2, beta=0.3, bank=bank, **kwargs)
    assert bank.pipeline_calls == calls


# ---- FK steering (SMC) ----------------------------------------------------------------------------------------------

def test_the_stochastic_step_is_euler_at_eta_zero_and_matches_its_closed_form_on_a_gaussian():
    from alignment.fk_steering import stochastic_step

    g = torch.Generator().manual_seed(3)
    x, v, z = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    assert torch.allclose(stochastic_step(x, v, 0.8, 0.5, z, 0.0), x + (0.5 - 0.8) * v, atol=1e-6)
    # data N(m, s²) in 1-D with the exact posterior mean: the step is linear in x_σ, x' = a·x_σ + b + σ'η z, so
    # from x_σ ~ N(c m, c² s² + σ²) it lands on mean a·c·m + b and variance a²(c² s² + σ²) + σ'² η²
    m, s, sigma, sigma_next, eta = 0.7, 0.5, 0.8, 0.4, 0.6
    c, c2, n = 1 - sigma, 1 - sigma_next, 400_000
    k = c * s**2 / (c**2 * s**2 + sigma**2)  # E[x0 | x_σ] = m + k (x_σ − c m)
    a = c2 * k + sigma_next * math.sqrt(1 - eta**2) * (1 - c * k) / sigma
    b = (c2 - sigma_next * math.sqrt(1 - eta**2) * c / sigma) * (m - k * c * m)
    x0 = m + s * torch.randn(n, generator=g, dtype=torch.float64)
    x = c * x0 + sigma * torch.randn(n, generator=g, dtype=torch.float64)
    v = (x - (m + k * (x - c * m))) / sigma
    out = stochastic_step(x, v, sigma, sigma_next, torch.randn(n, generator=g, dtype=torch.float64), eta)
    var = a**2 * (c**2 * s**2 + sigma**2) + sigma_next**2 * eta**2
    assert abs(float(out.mean()) - (a * c * m + b)) < 4 * math.sqrt(var / n)
    assert abs(float(out.var()) / var - 1) < 4 * math.sqrt(2 / n)


def test_systematic_resampling_copies_in_proportion_to_the_weights():
    from alignment.fk_steering import systematic_resample

    w = torch.tensor([[0.5, 0.25, 0.25, 0.0], [0.0, 0.0, 0.0, 1.0]])
    rows = systematic_resample(w, torch.Generator().manual_seed(0))
    assert sorted(rows[0].tolist()) == [0, 0, 1, 2] and rows[1].tolist() == [3, 3, 3, 3]


def test_fk_steering_runs_the_pipeline_and_keeps_the_best_particle(toy):
    from alignment.fk_steering import sample_fk

    pipe, bank = toy
    calls = bank.pipeline_calls
    out = sample_fk(pipe, PROMPTS, seed=6, particles=3, beta=0.05, bank=bank)
    assert bank.pipeline_calls == calls  # the bank's samples are not used
    assert out.method == "fk" and out.trajectories == 3 and len(out.images) == 2 and len(out.picks) == 2
    assert out.particle_ess.shape == (2, 2) and len(out.resampled) == 2
    assert torch.allclose(out.rewards, Redness().score(out.images, PROMPTS), atol=1e-5)
    with pytest.raises(ValueError, match="eta"):
        sample_fk(pipe, PROMPTS[0], particles=2, eta=0.0, bank=bank)


def test_command_line_fk_and_diffusion_best_of_n(tmp_path, capsys):
    import json as _json

    from alignment.__main__ import main

    common = ["generate", "--device", "cpu", "--prompt", PROMPTS[0], "--reward", "toy-pickscore"]
    assert main(common + ["--model", "toy-sd3", "--steps", "2", "--method", "fk", "--particles", "2",
                          "--out", str(tmp_path / "fk.png")]) == 0
    line = _json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["method"] == "fk" and line["particles"] == 2 and len(line["resampled"]) == 2
    assert main(common + ["--model", "toy-sdxl", "--steps", "1", "--method", "bon", "--n", "2",
                          "--out", str(tmp_path / "bon.png")]) == 0
    line = _json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["method"] == "bon" and line["n"] == 2 and (tmp_path / "bon.png").is_file()
    assert main(common + ["--model", "toy-sdxl", "--method", "fk", "--out", str(tmp_path / "x.png")]) == 2
    assert "flow model" in capsys.readouterr().err
