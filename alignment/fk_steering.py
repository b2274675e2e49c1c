"""Feynman–Kac steering for flow-matching pipelines (arXiv 2501.06848): K particles per prompt on a stochastic form
of the flow, resampled by the reward of their x̂0 as they go, the highest-reward final particle kept.

    result = sample_fk(pipe, "a red star on a blue background", seed=0, particles=9, beta=0.3, bank=bank)

A peer of importance-sampled guidance (``flow_sampler.sample_is``) and best-of-N: it spends its compute on K
trajectories that talk to each other instead of a bank of N independent ones. The pipeline runs unchanged; at
the end of every step its callback (``callback_on_step_end``) turns the Euler step into a stochastic one and
resamples. From the step x_i → x_{i+1} (σ_i → σ_{i+1}) the velocity is v = (x_{i+1} − x_i) / (σ_{i+1} − σ_i),
so x̂0 = x_i − σ_i v and ε̂ = x_i + (1 − σ_i) v, and the stochastic step (``stochastic_step``) is

    x_{i+1} = (1 − σ_{i+1}) x̂0 + σ_{i+1} (√(1 − η²) ε̂ + η z),    z ~ N(0, I)

(η = 0 is the Euler step itself; DDIM's η in flow form). Potentials are reward differences,
G_i = exp((r(x̂0_i) − r(x̂0_{i−1})) / β), whose product telescopes to exp(r(x̂0_last)/β): the particles target the
tilted distribution ∝ p · exp(r/β) while the reward of the intermediate x̂0 decides early which ones to copy.
Resampling (systematic, within each prompt's particles) happens when the weights' ESS falls below K/2.
Cost: K trajectories plus K decodes and reward calls per step.
"""

from __future__ import annotations

import math
import time

import torch

from .flow_guidance import check_beta
from .checks import whole_number
from .flow_sampler import FlowResult, _bank_for, _prompts, particle_seed
from .sample_bank import check_seed, decode, sample_seed, score, start_noise, to_images


def stochastic_step(x: torch.Tensor, v: torch.Tensor, sigma: float, sigma_next: float, noise: torch.Tensor,
                    eta: float) -> torch.Tensor:
    """``(1 − σ') x̂0 + σ' (√(1 − η²) ε̂ + η z)`` with ``x̂0 = x − σ v``, ``ε̂ = x + (1 − σ) v``: the flow step from
    σ to σ' with a share η of the noise drawn afresh (η = 0: the Euler step ``x + (σ' − σ) v``)."""
    x0, eps = x - sigma * v, x + (1 - sigma) * v
    return (1 - sigma_next) * x0 + sigma_next * (math.sqrt(1 - eta * eta) * eps + eta * noise)


def systematic_resample(weights: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Indices (G, K) drawn by systematic resampling from normalised weights (G, K): particle k is copied about
    K·w_k times, with less variance than multinomial draws."""
    groups, k = weights.shape
    u = (torch.rand(groups, 1, generator=generator, dtype=torch.float64) + torch.arange(k, dtype=torch.float64)) / k
    cdf = weights.double().cumsum(-1)
    cdf[:, -1] = 1.0
    return torch.searchsorted(cdf, u).clamp(max=k - 1)


class _Steering:
    """The pipeline callback: stochastic steps, potentials and resampling for B prompts × K particles."""

    def __init__(self, reward, prompts: list[str], k: int, beta: float, eta: float, threshold: float,
                 generator: torch.Generator, x_start: torch.Tensor):
        self.reward, self.prompts, self.k = reward, prompts, k
        self.beta, self.eta, self.threshold, self.generator = beta, eta, threshold, generator
        self.x_prev = x_start
        self.last_reward = torch.zeros(len(prompts) * k, dtype=torch.float64)
        self.log_w = torch.zeros(len(prompts), k, dtype=torch.float64)
        self.ess: list[torch.Tensor] = []
        self.final: tuple[torch.Tensor, torch.Tensor] | None = None  # the last step's pixels and rewards
        self.resampled: list[bool] = []

    def __call__(self, pipe, i: int, t, kwargs: dict) -> dict:
        x_next = kwargs["latents"]
        sigmas = pipe.scheduler.sigmas
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        x = self.x_prev.to(x_next.device, x_next.dtype)
        v = (x_next - x) / (sigma_next - sigma)
        x0 = x - sigma * v
        # potentials: the reward of this step's x̂0 against the last one's
        pixels = decode(pipe, x0)
        r = score(self.reward, pixels, [p for p in self.prompts for _ in range(self.k)]).double()
        if sigma_next == 0:  # the last step: x̂0 is the final sample
            self.final = (pixels, r)
        self.log_w += ((r - self.last_reward) / self.beta).reshape(-1, self.k)
        self.last_reward = r
        w = torch.softmax(self.log_w, -1)
        ess = 1.0 / (w * w).sum(-1)
        self.ess.append(ess.float())
        if sigma_next > 0:
            noise = torch.randn(x.shape, generator=self.generator, dtype=torch.float32).to(x.device, x.dtype)
            x_next = stochastic_step(x, v, sigma, sigma_next, noise, self.eta)
        resample = bool((ess < self.threshold * self.k).any()) and sigma_next > 0
        self.resampled.append(resample)
        if resample:
            rows = systematic_resample(w, self.generator)  # (B, K) indices within each prompt's particles
            flat = (rows + torch.arange(len(self.prompts))[:, None] * self.k).reshape(-1).to(x_next.device)
            x_next = x_next[flat]
            self.last_reward = self.last_reward[flat.cpu()]
            self.log_w.zero_()
        self.x_prev = x_next
        return {"latents": x_next}


def sample_fk(pipe, prompt: str | list[str], *, seed: int = 0, particles: int = 8, beta: float = 0.3,
              eta: float = 0.5, threshold: float = 0.5, reward=None, bank=None, preset=None, steps: int | None = None,
              guidance_scale: float | None = None) -> FlowResult:
    """One image per prompt: ``particles`` K stochastic trajectories steered by the reward at temperature ``beta``
    (particle 0 from the seed's own noise, like the baseline), the best final one kept by its reward.

    ``eta`` is the share of fresh noise per step (0 < η ≤ 1); ``threshold`` resamples when ESS < threshold·K.
    A ``bank`` (``SampleBank``) lends its reward, sampling settings and prompt encodings; its samples are not used."""
    start = time.perf_counter()
    beta = check_beta(beta)
    k = whole_number(particles, "particles", 1, 64)
    if not 0 < float(eta) <= 1:
        raise ValueError(f"eta (the share of fresh noise per step) must be in (0, 1], got {eta}")
    if not 0 < float(threshold) <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    prompts, seed = _prompts(prompt), check_seed(seed)
    bank = _bank_for(pipe, bank, reward, preset, steps, guidance_scale)
    run_start = time.perf_counter()
    seeds = [seed if j == 0 else particle_seed(seed, j) for _ in prompts for j in range(k)]
    noise = start_noise(pipe, seeds, bank.settings)
    steering = _Steering(bank.reward, prompts, k, beta, float(eta), float(threshold),
                         torch.Generator("cpu").manual_seed(sample_seed(seed, 4 * 1024 + k)), noise)
    embeds = {name: v.repeat_interleave(k, 0) for name, v in bank.prompt_embeddings(prompts).items()}
    pipe(**embeds, latents=noise, output_type="latent", callback_on_step_end=steering,
         callback_on_step_end_tensor_inputs=["latents"], **bank.settings.pipe_kwargs())
    pixels, final = steering.final
    final = final.float().reshape(len(prompts), k)
    pick = final.argmax(1)
    chosen = torch.stack([pixels[i * k + int(pick[i])] for i in range(len(prompts))])
    now = time.perf_counter()
    return FlowResult(to_images(chosen), prompts, final[torch.arange(len(prompts)), pick], "fk", seed, None, beta,
                        trajectories=k, estimator={"particles": k, "eta": float(eta), "threshold": float(threshold)},
                        seconds=now - start, sample_seconds=now - run_start, picks=pick.tolist(),
                        particle_ess=torch.stack(steering.ess), resampled=steering.resampled)
