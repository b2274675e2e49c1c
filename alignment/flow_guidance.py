"""Training-free importance-sampled velocity guidance for flow matching (DESIGN §1), as pure functions.

diffusers' flow convention: ``x_t = (1 − σ) x0 + σ ε`` and the model predicts ``v = ε − x0``, so

    v(x_t) = (x_t − E[x0 | x_t]) / σ.

A bank ``x0^(k) ~ p(x0|y)``, k = 1..K, with rewards ``r_k`` gives self-normalised importance estimates of the
posterior mean under the pretrained model (weights ``a``) and under the reward-tilted ``p* ∝ p · exp(r/β)``
(weights ``b``). Swapping E for E* in v gives the aligned velocity

    v*(x_t) = v(x_t) + Δv,    Δv = (E[x0|x_t] − E*[x0|x_t]) / σ = Σ_k (a_k − b_k) x0^(k) / σ,

so moving the posterior mean toward the tilted mean *subtracts* from v.

In high dimension the logits ℓ_k spread by tens to hundreds of nats, so a and b collapse onto the nearest bank
sample after the first steps and Δv ≈ 0 (the ESS of b falls to ~1). ``Estimator`` holds the options that keep
the correction alive; ``Estimator()`` (named ``"paper"``) is the paper's exact estimator:

* likelihood temperature τ: ``a = softmax(ℓ/τ)``, ``b = softmax(ℓ/τ + r/β_t)`` (a smoother empirical posterior:
  the kernel's variance is τσ² instead of σ²);
* guidance scale λ: ``v* = v + λ Δv``;
* a σ window: Δv only where ``sigma_min ≤ σ ≤ sigma_max`` (guide at high noise only);
* a damped reward scale κ: ``β_t = β + 2κ·v(σ)`` with ``v(σ) = σ² / ((1−σ)² + σ²)``, the posterior variance of
  x0 under unit-variance data, i.e. ``1/β_t = λ_r / (1 + 2 λ_r κ v(σ))`` for the reward scale ``λ_r = 1/β``
  (arXiv 2606.02884): a weaker tilt while x_t says little about x0.

``flow_guidance`` takes images of any shape: ``x_t`` (B, ...), a bank shared by all images (K, ...) or one bank
per image (B, K, ...), rewards (K,) or (B, K), σ a number or (B,). The steps below it work on flattened vectors:
x_t (B, D), bank (K, D) or (B, K, D). Sums run in float64 (float32 on MPS, which has none) whatever the input
dtype, bf16 included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .checks import check_beta

SIGMA_FLOOR = 1e-12  # at σ = 0 both posteriors are one point mass: a = b and Δv = 0, the σ -> 0 limit


def accumulation_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


def _sigma(sigma, batch: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """σ as a (B, 1) column, floored at SIGMA_FLOOR; a ValueError outside [0, 1]."""
    s = torch.as_tensor(sigma, dtype=dtype, device=device).reshape(-1, 1).expand(batch, 1)
    if not torch.isfinite(s).all() or (s < 0).any() or (s > 1).any():
        raise ValueError(f"sigma must lie in [0, 1], got {sigma}")
    return s.clamp(min=SIGMA_FLOOR)


def posterior_logits(x_t: torch.Tensor, x0: torch.Tensor, sigma) -> torch.Tensor:
    """ℓ_k = −‖x_t − (1−σ) x0^(k)‖² / (2σ²): the log-likelihood of x_t under each bank sample, up to a constant.

    x_t (B, D), bank (K, D) or (B, K, D) -> (B, K). Expanded as −(‖x_t‖² − 2(1−σ) x_t·x0^(k) + (1−σ)² ‖x0^(k)‖²)
    / (2σ²) so that no (B, K, D) temporary is made; in float64 the cancellation costs ~1e-16 · ‖x‖² / σ², harmless."""
    s = _sigma(sigma, x_t.shape[0], x_t.dtype, x_t.device)
    cross = x_t @ x0.T if x0.ndim == 2 else torch.einsum("bd,bkd->bk", x_t, x0)
    sq_bank = (x0 * x0).sum(-1)  # (K,) or (B, K)
    sq_x = (x_t * x_t).sum(-1, keepdim=True)
    dist = (sq_x - 2 * (1 - s) * cross + (1 - s) ** 2 * sq_bank).clamp(min=0)
    return -dist / (2 * s * s)


def importance_weights(logits: torch.Tensor, rewards: torch.Tensor, beta) -> tuple[torch.Tensor, torch.Tensor]:
    """a = softmax(ℓ), b = softmax(ℓ + r/β) over the bank (the last dimension); (B, K) each, rows summing to 1.

    ``a`` weighs the bank by the posterior p(x0|x_t), ``b`` by the tilted posterior p*(x0|x_t) ∝ p(x0|x_t) exp(r/β).
    softmax subtracts each row's maximum (logsumexp), so large |ℓ| (small σ) and large r/β (small β) are safe."""
    beta = check_beta(beta)
    r = torch.as_tensor(rewards).to(device=logits.device, dtype=logits.dtype)
    if r.shape not in (logits.shape[-1:], logits.shape):
        raise ValueError(f"rewards must be ({logits.shape[-1]},) or {tuple(logits.shape)}, got {tuple(r.shape)}")
    if not torch.isfinite(r).all():
        raise ValueError("the bank's rewards must be finite numbers")
    tilt = r / beta
    if not torch.isfinite(tilt).all():
        raise ValueError(f"beta={beta} is too small for rewards of this size: r/β overflows")
    return torch.softmax(logits, dim=-1), torch.softmax(logits + tilt, dim=-1)


def velocity_correction(a: torch.Tensor, b: torch.Tensor, x0: torch.Tensor, sigma) -> torch.Tensor:
    """Δv = Σ_k (a_k − b_k) x0^(k) / σ = (E[x0|x_t] − E*[x0|x_t]) / σ.

    a, b (B, K), bank (K, D) or (B, K, D) -> (B, D). At σ = 0 (floored) a = b, so Δv = 0: the σ -> 0 limit."""
    diff = a - b
    dv = diff @ x0 if x0.ndim == 2 else torch.einsum("bk,bkd->bd", diff, x0)
    return dv / _sigma(sigma, diff.shape[0], dv.dtype, dv.device)


def effective_sample_size(w: torch.Tensor) -> torch.Tensor:
    """ESS = (Σ_k w_k)² / Σ_k w_k² over the last dimension: K for uniform weights, 1 when one sample has them all."""
    w = w.to(accumulation_dtype(w.device))
    return w.sum(-1) ** 2 / (w * w).sum(-1)


@dataclass(frozen=True)
class Estimator:
    """Options of the bank estimator; the defaults are the paper's exact estimator (see the module docstring)."""

    tau: float = 1.0  # likelihood temperature τ ≥ 1 (1: the paper)
    scale: float = 1.0  # guidance scale λ on Δv (1: the paper)
    sigma_min: float = 0.0  # guide only where sigma_min ≤ σ ≤ sigma_max
    sigma_max: float = 1.0
    damping: float = 0.0  # κ ≥ 0 of the damped reward scale (0: the paper)

    def __post_init__(self):
        for name in ("tau", "scale", "sigma_min", "sigma_max", "damping"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"estimator option {name} must be a finite number, got {value!r}")
        if not 0 < self.tau <= 1e6:
            raise ValueError(f"the likelihood temperature tau must be in (0, 1e6], got {self.tau}")
        if not 0 <= self.scale <= 100:
            raise ValueError(f"the guidance scale must be in [0, 100], got {self.scale}")
        if not 0 <= self.sigma_min <= self.sigma_max <= 1:
            raise ValueError(f"the σ window must satisfy 0 ≤ sigma_min ≤ sigma_max ≤ 1, got "
                             f"[{self.sigma_min}, {self.sigma_max}]")
        if not 0 <= self.damping <= 1e6:
            raise ValueError(f"the damping κ must be in [0, 1e6], got {self.damping}")

    def tilt_temperature(self, sigma: torch.Tensor, beta: float) -> torch.Tensor:
        """β_t = β + 2κ σ² / ((1−σ)² + σ²) per image (a (B, 1) column for σ (B, 1))."""
        if self.damping == 0:
            return torch.full_like(sigma, beta)
        return beta + 2 * self.damping * sigma**2 / ((1 - sigma) ** 2 + sigma**2)

    def active(self, sigma: torch.Tensor) -> torch.Tensor:
        """Where σ lies in the window: a 0/1 mask like σ."""
        return ((sigma >= self.sigma_min - 1e-9) & (sigma <= self.sigma_max + 1e-9)).to(sigma.dtype)

    def describe(self) -> dict:
        return {"tau": self.tau, "scale": self.scale, "sigma_min": self.sigma_min, "sigma_max": self.sigma_max,
                "damping": self.damping}


PAPER = Estimator()


@dataclass
class FlowGuidance:
    delta_v: torch.Tensor  # like x_t: shape and dtype
    ess_a: torch.Tensor  # (B,)
    ess_b: torch.Tensor  # (B,)


def flow_guidance(x_t: torch.Tensor, x0: torch.Tensor, rewards: torch.Tensor, sigma, beta,
                  estimator: Estimator = PAPER) -> FlowGuidance:
    """The estimator end to end: ℓ_k = −‖x_t − (1−σ) x0^(k)‖² / (2σ²), a = softmax(ℓ/τ), b = softmax(ℓ/τ + r/β_t),
    Δv = λ · Σ_k (a_k − b_k) x0^(k) / σ inside the σ window (0 outside), and the ESS (Σw)²/Σw² of a and of b.
    With the default ``estimator`` (τ = λ = 1, no window, no damping) this is the paper's estimator.

    x_t (B, ...); bank (K, ...) shared or (B, K, ...) per image; rewards (K,) or (B, K); σ a number or (B,).
    Δv comes back with x_t's shape and dtype, ready to add to the model's velocity."""
    batch, image = x_t.shape[0], tuple(x_t.shape[1:])
    if tuple(x0.shape[1:]) == image:
        bank = x0.reshape(x0.shape[0], -1)
    elif x0.ndim == x_t.ndim + 1 and x0.shape[0] == batch and tuple(x0.shape[2:]) == image:
        bank = x0.reshape(batch, x0.shape[1], -1)
    else:
        raise ValueError(f"the bank must be (K, {', '.join(map(str, image))}) or ({batch}, K, "
                         f"{', '.join(map(str, image))}), got {tuple(x0.shape)}")
    if bank.shape[-2] < 1:
        raise ValueError("the bank is empty: it needs at least one sample")
    dtype = accumulation_dtype(x_t.device)
    x, bank = x_t.reshape(batch, -1).to(dtype), bank.to(device=x_t.device, dtype=dtype)
    beta = check_beta(beta)
    logits = posterior_logits(x, bank, sigma) / estimator.tau
    s = _sigma(sigma, batch, dtype, x.device)
    beta_t = estimator.tilt_temperature(s, beta)
    r = torch.as_tensor(rewards).to(device=x.device, dtype=dtype)
    a, b = importance_weights(logits, r * (beta / beta_t), beta)  # r/β_t, written as (r·β/β_t)/β
    dv = velocity_correction(a, b, bank, sigma) * (estimator.scale * estimator.active(s))
    return FlowGuidance(dv.reshape(x_t.shape).to(x_t.dtype), effective_sample_size(a), effective_sample_size(b))
