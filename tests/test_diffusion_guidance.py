"""The diffusion half against closed forms: a 2-D Gaussian mixture as the "pretrained model" (exact score) and a
linear reward r(x) = w·x, whose tilt p*(x0) ∝ p(x0) exp(w·x0/β) is again a Gaussian mixture (tests/mixture.py).

Guided sampling ε̃ = ε − σ_t ∇log h with the exact h, and with an h_ψ trained by L_guidance, must reproduce the
tilted weights and means. Tolerances: with n samples the Monte Carlo standard error of a weight is
√(π(1−π)/n) ≤ 0.5/√n and of a component mean s/√(nπ); the bounds below are those errors times ~4, plus the
sampler's discretisation error (250 DDPM steps; measured below 0.01 on the untilted mixture) and, for h_ψ, its
regression error.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler
from mixture import Mixture

from alignment.diffusion_guidance import (
    check_alpha,
    check_beta,
    check_eta,
    consistency_loss,
    grad_log_h_of,
    guidance_loss,
    guided_eps,
    noised,
    vp_coefficients,
)

MIX = Mixture.of([0.5, 0.3, 0.2], [[-2.0, 0.0], [2.0, 0.0], [0.0, 2.5]], [0.5, 0.5, 0.5])
W = torch.tensor([1.0, 0.5], dtype=torch.float64)
BETA = 1.0


def vp_score(mix: Mixture, x: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """∇log p_t for x_t = √ᾱ x0 + √(1−ᾱ) ε: components N(√ᾱ μ_i, (ᾱ s_i² + 1 − ᾱ) I); ᾱ per row of x."""
    abar = abar.double().view(-1, 1, 1)
    m = abar.sqrt() * mix.means[None]  # (N, M, D)
    v = (abar[..., 0] * mix.stds[None] ** 2 + 1 - abar[..., 0])  # (N, M)
    diff = x.double()[:, None, :] - m
    log = mix.weights.log()[None] - (diff**2).sum(-1) / (2 * v) - 0.5 * mix.dim * torch.log(2 * math.pi * v)
    gamma = torch.softmax(log, dim=-1)
    return (gamma[..., None] * (-diff / v[..., None])).sum(1)


def sample(eps_fn, n: int, seed: int, steps: int = 250) -> torch.Tensor:
    sched = DDPMScheduler(num_train_timesteps=1000, clip_sample=False)
    sched.set_timesteps(steps)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g, dtype=torch.float64)
    for t in sched.timesteps:
        x = sched.step(eps_fn(x, t, sched.alphas_cumprod), t, x, generator=g).prev_sample
    return x


def base_eps(x, t, abar_all):
    abar = abar_all[t].expand(x.shape[0])
    return -(1 - abar).sqrt().double()[:, None] * vp_score(MIX, x, abar)


def fit(samples: torch.Tensor, mix: Mixture) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights and means of the samples, assigning each to its most responsible component of ``mix``."""
    k = mix.responsibilities(samples).argmax(1)
    weights = torch.bincount(k, minlength=len(mix.weights)).double() / len(samples)
    means = torch.stack([samples[k == i].mean(0) for i in range(len(mix.weights))])
    return weights, means


def test_the_sampler_reproduces_the_untilted_mixture():
    weights, means = fit(sample(base_eps, 4000, seed=0), MIX)
    assert torch.allclose(weights, MIX.weights, atol=0.03)
    assert torch.allclose(means, MIX.means, atol=0.1)


def test_exact_h_gives_the_tilted_mixture():
    tilted = MIX.tilted(W, BETA)

    def eps(x, t, abar_all):
        abar = abar_all[t].expand(x.shape[0])
        grad_log_h = vp_score(tilted, x, abar) - vp_score(MIX, x, abar)  # ∇log h = ∇log p*_t − ∇log p_t
        _, sigma_t = vp_coefficients(abar_all, t.expand(x.shape[0]))
        return guided_eps(base_eps(x, t, abar_all), grad_log_h, sigma_t.double())

    weights, means = fit(sample(eps, 4000, seed=1), tilted)
    assert torch.allclose(weights, tilted.weights, atol=0.03), (weights, tilted.weights)
    assert torch.allclose(means, tilted.means, atol=0.1), (means, tilted.means)
    # the tilt moved mass: the check above is not the untilted answer passing by accident
    assert (tilted.weights - MIX.weights).abs().max() > 0.2


class MLPLogH(torch.nn.Module):
    """h_ψ(x_t, t, β) → log h for the 2-D test, in reward units like GuidanceNetwork: log h = v / β."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(2 + 8 + 1, 128), torch.nn.SiLU(), torch.nn.Linear(128, 128),
                                       torch.nn.SiLU(), torch.nn.Linear(128, 1))

    def forward(self, x, t, beta):
        freqs = torch.tensor([1.0, 3.0, 9.0, 27.0], dtype=x.dtype)
        tt = (t.to(x.dtype) / 1000)[:, None] * freqs
        feats = torch.cat([x, tt.sin(), tt.cos(), beta.log()[:, None].to(x.dtype)], dim=-1)
        return self.net(feats).squeeze(-1) / beta


STEPS, BATCH = 1500, 512


@pytest.fixture(scope="module")
def trained_h():
    """Trained on x0 ~ p (the pretrained model's samples) with r = w·x0, β log-uniform on [0.5, 2]."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    net = MLPLogH().double()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    abar_all = DDPMScheduler(num_train_timesteps=1000, clip_sample=False).alphas_cumprod
    for step in range(STEPS):
        x0 = MIX.sample(BATCH, g)
        t = torch.randint(0, 1000, (BATCH,), generator=g)
        beta = torch.exp(torch.empty(BATCH, dtype=torch.float64).uniform_(math.log(0.5), math.log(2.0), generator=g))
        alpha_t, sigma_t = vp_coefficients(abar_all, t)
        x_t = noised(x0, torch.randn(x0.shape, generator=g, dtype=torch.float64), alpha_t.double(), sigma_t.double())
        loss = guidance_loss(net(x_t, t, beta), x0 @ W, beta).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        for group in opt.param_groups:
            group["lr"] = 2e-3 * 0.5 * (1 + math.cos(math.pi * step / STEPS))
    return net.eval()


def test_trained_h_gives_the_tilted_mixture(trained_h):
    """The regression adds its own error, hence wider bounds than with the exact h. Means are compared only for
    components holding more than 5 % of the mass (at β = 0.7 the left one holds 0.45 %: ~18 of 4000 samples)."""
    for beta in (1.0, 0.7):
        tilted = MIX.tilted(W, beta)

        def eps(x, t, abar_all):
            tt = t.expand(x.shape[0])
            b = torch.full((x.shape[0],), beta, dtype=torch.float64)
            _, grad = grad_log_h_of(trained_h, x, tt, b)
            _, sigma_t = vp_coefficients(abar_all, tt)
            return guided_eps(base_eps(x, t, abar_all), grad, sigma_t.double())

        weights, means = fit(sample(eps, 4000, seed=2), tilted)
        assert torch.allclose(weights, tilted.weights, atol=0.06), (beta, weights, tilted.weights)
        big = tilted.weights > 0.05  # a mean of a handful of samples says nothing
        assert torch.allclose(means[big], tilted.means[big], atol=0.2), (beta, means, tilted.means)


def test_the_guidance_loss_is_minimised_by_the_log_of_the_conditional_mean():
    """E[exp(r/β − u) + u] over r is minimal at u = log E[exp(r/β)] (checked on a grid)."""
    r = torch.tensor(np.random.default_rng(0).normal(0, 1, 20000))
    beta = 0.5
    best = math.log(torch.exp(r / beta).mean().item())
    grid = torch.linspace(best - 1, best + 1, 201, dtype=torch.float64)
    losses = torch.stack([guidance_loss(u.expand_as(r), r, torch.tensor(beta)).mean() for u in grid])
    assert abs(grid[losses.argmin()].item() - best) < 0.011


def test_the_consistency_term_is_smallest_at_the_exact_guidance():
    """On samples of the tilted distribution, ‖ε − σ∇log h − ε_true‖² is minimised by the exact ∇log h: scaling
    the guidance up or down raises it (the sign and the σ factor are right)."""
    tilted = MIX.tilted(W, BETA)
    g = torch.Generator().manual_seed(3)
    x0 = tilted.sample(20000, g)
    abar_all = DDPMScheduler(num_train_timesteps=1000, clip_sample=False).alphas_cumprod
    t = torch.randint(50, 900, (20000,), generator=g)
    alpha_t, sigma_t = vp_coefficients(abar_all, t)
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    x_t = noised(x0, noise, alpha_t.double(), sigma_t.double())
    abar = abar_all[t]
    eps = -(1 - abar).sqrt().double()[:, None] * vp_score(MIX, x_t, abar)
    grad = vp_score(tilted, x_t, abar) - vp_score(MIX, x_t, abar)
    losses = {k: consistency_loss(eps, k * grad, sigma_t.double(), noise).mean().item() for k in (0.0, 0.8, 1.0, 1.2)}
    assert losses[1.0] < losses[0.8] < losses[0.0]
    assert losses[1.0] < losses[1.2]


@pytest.mark.parametrize("check,bad", [(check_beta, 0.0), (check_beta, -1.0), (check_beta, float("nan")),
                                       (check_eta, -0.1), (check_eta, float("inf")), (check_alpha, 25.0),
                                       (check_alpha, float("nan"))])
def test_bad_slider_values_are_refused(check, bad):
    with pytest.raises(ValueError):
        check(bad)
