"""Closed forms for tests: an isotropic Gaussian mixture as a "pretrained model", its exact flow velocity, and its
exact tilt by a linear reward.

Mixture p(x0) = Σ_i π_i N(μ_i, s_i² I) in R^D. Flow path (diffusers): x_t = (1 − σ) x0 + σ ε, so component i of
p_t is N((1 − σ) μ_i, v_i I) with v_i = (1 − σ)² s_i² + σ², and

    E[x0 | x_t] = Σ_i γ_i(x_t) (μ_i + (1 − σ) s_i² / v_i · (x_t − (1 − σ) μ_i)),   γ_i ∝ π_i N(x_t; (1 − σ) μ_i, v_i I)
    v(x_t) = (x_t − E[x0 | x_t]) / σ       (the model's target, ε − x0)

Tilt by r(x) = w·x at temperature β: p*(x0) ∝ p(x0) exp(w·x0 / β) is again a mixture with the same variances,
means μ_i + s_i² w / β and weights ∝ π_i exp(w·μ_i / β + ‖w‖² s_i² / (2β²)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class Mixture:
    weights: torch.Tensor  # (M,)
    means: torch.Tensor  # (M, D)
    stds: torch.Tensor  # (M,)

    @classmethod
    def of(cls, weights, means, stds) -> Mixture:
        t = dict(dtype=torch.float64)
        w = torch.tensor(weights, **t)
        return cls(w / w.sum(), torch.tensor(means, **t), torch.tensor(stds, **t))

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        i = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return self.means[i] + self.stds[i, None] * eps

    def _components_at(self, sigma) -> tuple[torch.Tensor, torch.Tensor]:
        """Means (M, D) and variances (M,) of the components of p_t."""
        return (1 - sigma) * self.means, (1 - sigma) ** 2 * self.stds**2 + sigma**2

    def responsibilities(self, x: torch.Tensor, sigma: float = 0.0) -> torch.Tensor:
        """γ_i(x) = π_i N(x; m_i, v_i I) / p_t(x), shape (N, M)."""
        m, v = self._components_at(sigma)
        sq = ((x[:, None, :] - m[None]) ** 2).sum(-1)
        log = self.weights.log() - sq / (2 * v) - 0.5 * self.dim * torch.log(2 * math.pi * v)
        return torch.softmax(log, dim=-1)

    def posterior_mean(self, x_t: torch.Tensor, sigma: float) -> torch.Tensor:
        m, v = self._components_at(sigma)
        gamma = self.responsibilities(x_t, sigma)
        within = self.means[None] + ((1 - sigma) * self.stds**2 / v)[None, :, None] * (x_t[:, None, :] - m[None])
        return (gamma[..., None] * within).sum(1)

    def velocity(self, x_t: torch.Tensor, sigma: float) -> torch.Tensor:
        return (x_t - self.posterior_mean(x_t, sigma)) / sigma

    def tilted(self, w, beta: float) -> Mixture:
        w = torch.as_tensor(w, dtype=torch.float64)
        log = self.weights.log() + self.means @ w / beta + (w @ w) * self.stds**2 / (2 * beta**2)
        return Mixture(torch.softmax(log, 0), self.means + self.stds[:, None] ** 2 * w / beta, self.stds.clone())


class MixtureVelocity(torch.nn.Module):
    """The mixture's exact velocity behind a diffusers transformer's call: (hidden_states, timestep) -> (v,),
    with σ = timestep / 1000 as FlowMatchEulerDiscreteScheduler passes it."""

    def __init__(self, mixture: Mixture):
        super().__init__()
        self.mixture = mixture

    def forward(self, hidden_states, timestep, return_dict=False, **_):
        sigma = float(torch.as_tensor(timestep).reshape(-1)[0]) / 1000.0
        return (self.mixture.velocity(hidden_states.double(), sigma).to(hidden_states.dtype),)
