"""The diffusion half of the method as pure functions (DESIGN §1), in the ε-prediction (VP) convention of
SDXL: ``x_t = α_t x0 + σ_t ε`` with ``α_t = √ᾱ_t``, ``σ_t = √(1 − ᾱ_t)``, and the score ``∇log p_t = −ε / σ_t``.

Target ``p*(x0|y) ∝ p(x0|y) exp(r(x0, y)/β)``. With ``h(x_t) = E[exp(r(x0, y)/β) | x_t]`` the aligned score is
``∇log p_t + ∇log h``, i.e. the aligned noise prediction is ``ε̃ = ε_θ − σ_t ∇log h`` (``guided_eps``).
"""

from __future__ import annotations

import math

import torch

from .checks import check_beta  # noqa: F401  (the samplers' one rule for β, imported from here too)

MAX_EXPONENT = 30.0  # exp(30) ≈ 1e13: beyond it a float32 loss is noise; clamp, never overflow


def check_eta(eta: float) -> float:
    eta = float(eta)
    if not math.isfinite(eta) or eta < 0:
        raise ValueError(f"η must be a non-negative number (the weight of the consistency term), got {eta}")
    return eta


def check_alpha(alpha: float) -> float:
    alpha = float(alpha)
    if not math.isfinite(alpha) or not 0 <= alpha <= 20:
        raise ValueError(f"the guidance strength α must be between 0 and 20, got {alpha}")
    return alpha


def vp_coefficients(alphas_cumprod: torch.Tensor, timesteps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``α_t = √ᾱ_t`` and ``σ_t = √(1 − ᾱ_t)`` for integer (or float, rounded) training timesteps."""
    t = torch.as_tensor(timesteps, device=alphas_cumprod.device).round().long().clamp(0, len(alphas_cumprod) - 1)
    a = alphas_cumprod[t].double()
    return a.sqrt().float(), (1 - a).sqrt().float()


def noised(x0: torch.Tensor, noise: torch.Tensor, alpha_t: torch.Tensor, sigma_t: torch.Tensor) -> torch.Tensor:
    """``x_t = α_t x0 + σ_t ε`` (α_t, σ_t per example)."""
    shape = (-1,) + (1,) * (x0.ndim - 1)
    return alpha_t.view(shape) * x0 + sigma_t.view(shape) * noise


def guidance_loss(log_h: torch.Tensor, reward: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """``L_guidance = exp(r/β − u) + u`` per example, for ``u = log h_ψ(x_t)``.

    For fixed ``x_t`` its expectation over ``x0 ~ p(x0|x_t)`` is minimised by ``u = log E[exp(r/β) | x_t]``
    (set the derivative ``1 − E[exp(r/β)]·e^(−u)`` to zero), so it regresses ``log h`` without ever forming
    ``exp(r/β)`` alone. The exponent is clamped at ``MAX_EXPONENT`` against overflow."""
    d = (reward / beta - log_h).clamp(max=MAX_EXPONENT)
    return d.exp() + log_h


def consistency_loss(eps_pred: torch.Tensor, grad_log_h: torch.Tensor, sigma_t: torch.Tensor,
                     noise: torch.Tensor) -> torch.Tensor:
    """``L_consistency = ‖ε_θ(x_t) − σ_t ∇log h_ψ(x_t) − ε‖²`` per example (mean over elements): on preferred
    images, the guided noise prediction must do denoising score matching with the pretrained ``ε_θ`` frozen."""
    shape = (-1,) + (1,) * (eps_pred.ndim - 1)
    residual = eps_pred - sigma_t.view(shape) * grad_log_h - noise
    return residual.pow(2).flatten(1).mean(1)


def guided_eps(eps: torch.Tensor, grad_log_h: torch.Tensor, sigma_t, alpha: float = 1.0) -> torch.Tensor:
    """``ε̃ = ε_θ − α σ_t ∇_{x_t} log h`` — the pretrained score plus α times the guidance term."""
    sigma_t = torch.as_tensor(sigma_t, device=eps.device, dtype=eps.dtype)
    if sigma_t.ndim:
        sigma_t = sigma_t.view((-1,) + (1,) * (eps.ndim - 1))
    return eps - alpha * sigma_t * grad_log_h.to(eps.dtype)


def tweedie_x0(x_t: torch.Tensor, eps: torch.Tensor, alpha_t, sigma_t) -> torch.Tensor:
    """Tweedie's estimate ``x̂0 = (x_t − σ_t ε_θ) / α_t`` (the posterior mean under the pretrained model)."""
    return (x_t - sigma_t * eps) / alpha_t


def grad_log_h_of(log_h_fn, x_t: torch.Tensor, *args, create_graph: bool = False, **kwargs):
    """``(log h, ∇_{x_t} log h)`` of a network ``log_h_fn(x_t, *args, **kwargs)`` returning one value per example."""
    with torch.enable_grad():
        x = x_t if x_t.requires_grad else x_t.detach().requires_grad_(True)
        u = log_h_fn(x, *args, **kwargs)
        (grad,) = torch.autograd.grad(u.sum(), x, create_graph=create_graph)
    return u, grad
