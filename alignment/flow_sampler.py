"""Flow-matching alignment with the pipeline's own sampler: importance-sampled velocity guidance and best-of-N.

    pipe, preset = load_pipeline("toy-sd3")
    bank = SampleBank(pipe, "toy-pickscore", preset=preset)
    guided = sample_is(pipe, "a red star on a blue background", seed=0, n=8, beta=0.5, bank=bank)
    guided.images, guided.rewards, guided.ess_b    # ESS of the tilted weights at every step, (steps, images)
    best = best_of_n(pipe, "a red star on a blue background", seed=0, n=8, bank=bank)   # free: the same bank

The guidance wraps the pipeline's transformer (k-diffusion's way: wrap the denoiser, keep the sampler), so the
pipeline's scheduler, classifier-free guidance and any step count work unchanged. With CFG the transformer sees
[uncond, cond]; adding Δv to both halves gives (u + Δv) + g((c + Δv) − (u + Δv)) = v_cfg + Δv exactly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from PIL import Image

from .checks import whole_number
from .defaults import ESTIMATORS, FLOW_BETA, FLOW_ESTIMATOR, FLOW_N, PARTICLES
from .flow_guidance import PAPER, Estimator, accumulation_dtype, check_beta, flow_guidance
from .presets import Preset
from .rewards import Reward
from .sample_bank import (DEFAULT_REWARD, MAX_BANK, SampleBank, check_n, check_seed, decode, sample_seed, score,
                          start_noise, to_images)
from .sampling import TransformerStandIn, check_prompt, with_component


class GuidedTransformer(TransformerStandIn):
    """The pretrained velocity plus the bank's correction, v_θ(x_t) + Δv(x_t) (see ``flow_guidance``), behind the
    wrapped transformer's own call signature, so a pipeline uses it in place of its transformer.

    ``bank_latents`` is (B, K, ...) with ``rewards`` (B, K), one bank per image of the batch, or (K, ...) with
    rewards (K,), one bank for all. σ = timestep / ``num_train_timesteps`` (FlowMatchEulerDiscreteScheduler passes
    t = 1000 σ). Records σ and the ESS of a and b at every step."""

    def __init__(self, transformer, bank_latents: torch.Tensor, rewards: torch.Tensor, beta: float,
                 num_train_timesteps: int = 1000, estimator: Estimator = PAPER):
        super().__init__()
        rewards = torch.as_tensor(rewards)
        if rewards.ndim not in (1, 2) or tuple(bank_latents.shape[: rewards.ndim]) != tuple(rewards.shape):
            raise ValueError(f"rewards {tuple(rewards.shape)} do not match the bank {tuple(bank_latents.shape)}: "
                             "give (K,) for a bank (K, ...) or (B, K) for a bank (B, K, ...)")
        self.transformer = transformer
        self.bank, self.rewards = bank_latents, rewards
        self.per_image = rewards.ndim == 2
        self.beta = check_beta(beta)
        self.estimator = estimator
        self.num_train_timesteps = float(num_train_timesteps)
        self.sigmas: list[float] = []
        self._ess_a: list[torch.Tensor] = []
        self._ess_b: list[torch.Tensor] = []

    def forward(self, hidden_states: torch.Tensor, timestep: torch.Tensor, return_dict: bool = True, **kwargs):
        out = self.transformer(hidden_states=hidden_states, timestep=timestep, return_dict=False, **kwargs)[0]
        dtype = accumulation_dtype(hidden_states.device)
        self.bank = self.bank.to(hidden_states.device, dtype)  # once; a no-op afterwards
        self.rewards = self.rewards.to(hidden_states.device, dtype)
        images = self.bank.shape[0] if self.per_image else hidden_states.shape[0]
        copies, rest = divmod(hidden_states.shape[0], images)
        if rest:
            raise ValueError(f"a batch of {hidden_states.shape[0]} does not split into copies of the {images} images "
                             "the bank was made for")
        t = torch.as_tensor(timestep, device=hidden_states.device).to(dtype).reshape(-1).expand(hidden_states.shape[0])
        sigma = t[-images:] / self.num_train_timesteps
        g = flow_guidance(hidden_states[-images:], self.bank, self.rewards, sigma, self.beta, self.estimator)
        self._record(float(sigma[0]), g.ess_a, g.ess_b)
        out = out + g.delta_v.to(out.dtype).repeat(copies, *([1] * (out.ndim - 1)))
        return Transformer2DModelOutput(sample=out) if return_dict else (out,)

    def _record(self, sigma: float, ess_a: torch.Tensor, ess_b: torch.Tensor) -> None:
        if self.sigmas and self.sigmas[-1] == sigma:  # a second call at the same step (e.g. skip-layer guidance)
            self.sigmas.pop(), self._ess_a.pop(), self._ess_b.pop()
        self.sigmas.append(sigma)
        self._ess_a.append(ess_a.float().cpu())
        self._ess_b.append(ess_b.float().cpu())

    @property
    def ess_a(self) -> torch.Tensor:
        """ESS of the posterior weights a, (steps, images)."""
        return torch.stack(self._ess_a) if self._ess_a else torch.empty(0)

    @property
    def ess_b(self) -> torch.Tensor:
        """ESS of the tilted weights b, (steps, images): near 1 means the bank has degenerated onto one sample."""
        return torch.stack(self._ess_b) if self._ess_b else torch.empty(0)


@dataclass
class FlowResult:
    images: list[Image.Image]
    prompts: list[str]
    rewards: torch.Tensor  # (B,): the bank's reward of each returned image
    method: str  # "baseline", "is" or "bon"
    seed: int
    n: int | None = None  # bank size
    beta: float | None = None
    trajectories: int = 1  # sampler runs paid per image from scratch: 1 (baseline), N (best-of-N), N + K·R (IS)
    estimator: dict | None = None  # the IS estimator's options (τ, λ, σ window, κ), particles K and rounds R
    seconds: float = 0.0  # wall-clock of this call (a cached bank costs nothing here)
    bank_seconds: float = 0.0  # what the bank samples used cost when they were made: generation, decoding, scoring
    sample_seconds: float = 0.0  # the guided (or baseline) trajectory, with decoding and scoring
    sigmas: list[float] = field(default_factory=list)
    ess_a: torch.Tensor | None = None  # (steps, B)
    ess_b: torch.Tensor | None = None  # (steps, B)
    picks: list[int] | None = None  # best-of-N: which bank sample was chosen, per image (IS, FK: which particle)
    particle_ess: torch.Tensor | None = None  # FK steering: ESS of the particle weights, (steps, B)
    resampled: list[bool] | None = None  # FK steering: whether the particles were resampled, per step

    @property
    def seconds_per_image(self) -> float:
        """The compute one image costs from scratch: its share of the bank plus its trajectory."""
        return (self.bank_seconds + self.sample_seconds) / len(self.images)

    def summary(self) -> dict:
        out = {"method": self.method, "seed": self.seed, "n": self.n, "beta": self.beta,
               "trajectories": self.trajectories, "estimator": self.estimator,
               "reward": [round(float(r), 4) for r in self.rewards], "seconds": round(self.seconds, 4),
               "seconds_per_image": round(self.seconds_per_image, 4)}
        if self.ess_b is not None:
            out.update(sigmas=[round(s, 4) for s in self.sigmas],
                       ess_a=[[round(float(e), 3) for e in step] for step in self.ess_a],
                       ess_b=[[round(float(e), 3) for e in step] for step in self.ess_b])
        if self.picks is not None:
            out["picks"] = self.picks
        return out


def _prompts(prompt: str | list[str]) -> list[str]:
    prompts = [prompt] if isinstance(prompt, str) else list(prompt) if prompt is not None else []
    if not prompts:
        raise ValueError("no prompt given: pass a prompt or a list of prompts")
    return [check_prompt(p) for p in prompts]


def _bank_for(pipe, bank: SampleBank | None, reward, preset, steps, guidance_scale) -> SampleBank:
    if bank is None:
        return SampleBank(pipe, reward if reward is not None else DEFAULT_REWARD, preset=preset, steps=steps,
                          guidance_scale=guidance_scale)
    if bank.pipe is not pipe:
        raise ValueError("this bank was made with another pipeline")
    name = reward if isinstance(reward, str) else getattr(reward, "name", None)
    if reward is not None and name != bank.reward_name:
        raise ValueError(f"the bank scores with {bank.reward_name!r}, not {reward!r}: make a bank for that reward")
    asked = {"steps": steps, "guidance_scale": guidance_scale}
    for name, value in asked.items():
        if value is not None and float(value) != float(getattr(bank.settings, name)):
            raise ValueError(f"{name}={value} differs from the bank's {getattr(bank.settings, name)}: the guided "
                             "trajectory must be sampled like the bank")
    return bank


def _entries(pipe, prompt, seed, n, reward, bank, preset, steps, guidance_scale):
    prompts, seed, n = _prompts(prompt), check_seed(seed), check_n(n)  # cheap checks before any loading
    bank = _bank_for(pipe, bank, reward, preset, steps, guidance_scale)
    return prompts, seed, n, bank, [bank.get(p, seed, n) for p in prompts]


def resolve_estimator(estimator: Estimator | str | dict | None) -> Estimator:
    """An Estimator from a name in ``ESTIMATORS`` (``"paper"``, ``"tuned"``), a dict of its options, or itself."""
    if estimator is None:
        return PAPER
    if isinstance(estimator, Estimator):
        return estimator
    if isinstance(estimator, dict):
        return Estimator(**estimator)
    if estimator in ESTIMATORS:
        return ESTIMATORS[estimator]
    raise ValueError(f"unknown estimator {estimator!r}: choose one of {sorted(ESTIMATORS)} or pass an Estimator")


def particle_seed(seed: int, j: int) -> int:
    """The noise seed of guided particle j > 0 of ``seed`` (particle 0 starts from ``seed``'s own noise, like the
    baseline): bank sample number MAX_BANK + j, so particles never reuse a bank sample's noise."""
    return sample_seed(seed, MAX_BANK + j)


def sample_is(pipe, prompt: str | list[str], *, seed: int = 0, n: int = FLOW_N, beta: float = FLOW_BETA,
              reward: str | Reward | None = None, bank: SampleBank | None = None, preset: Preset | None = None,
              steps: int | None = None, guidance_scale: float | None = None,
              estimator: Estimator | str | dict | None = FLOW_ESTIMATOR, particles: int | None = None,
              rounds: int = 1) -> FlowResult:
    """One reward-aligned image per prompt: the pipeline run from ``seed``'s noise with its transformer wrapped by
    ``GuidedTransformer`` over the (prompt, seed) bank of ``n`` samples, at temperature ``beta``.

    The defaults (``n``, ``beta``, ``estimator``) are ``alignment.defaults``'. ``estimator``: the estimator's
    options (``"tuned"``: the project's default; ``"paper"``: the paper's exact form; or an ``Estimator``).
    ``particles`` K > 1 runs K guided trajectories as one batch (particle 0 from the seed's noise, the others from
    their own) and returns the one with the highest reward: a hybrid of guidance and best-of-K. Left out, it is the
    named setting's (``alignment.defaults.PARTICLES``: 2 for ``"tuned"``), else 1.
    ``rounds`` R > 1 is iterated tilting: after each round its guided samples join the bank (for this call) and
    the next round's particles are guided by the grown bank. Cost: N + K·R trajectories per image.

    Pass a ``bank`` to reuse samples across calls (moving β then re-runs only the guided trajectories); without one
    a bank for ``reward`` (default toy-pickscore) is made for this call."""
    start = time.perf_counter()
    if particles is None:
        particles = PARTICLES.get(estimator, 1) if isinstance(estimator, str) else 1
    beta, estimator = check_beta(beta), resolve_estimator(estimator)
    particles, rounds = whole_number(particles, "particles", 1, 64), whole_number(rounds, "rounds", 1, 16)
    prompts, seed, n, bank, entries = _entries(pipe, prompt, seed, n, reward, bank, preset, steps, guidance_scale)
    run_start = time.perf_counter()
    b, k = len(prompts), particles
    latents = torch.stack([e.latents for e in entries]).repeat_interleave(k, 0)  # (B·K, N, ...)
    rewards = torch.stack([e.rewards for e in entries]).repeat_interleave(k, 0)  # (B·K, N)
    embeds = {name: v.repeat_interleave(k, 0) for name, v in bank.prompt_embeddings(prompts).items()}
    kept_pixels, kept_rewards = [], []
    sigmas, ess_a, ess_b = [], None, None
    for r in range(rounds):
        guided = GuidedTransformer(pipe.transformer, latents, rewards, beta, pipe.scheduler.config.num_train_timesteps,
                                   estimator)
        view = with_component(pipe, transformer=guided)
        view.set_progress_bar_config(disable=True)
        seeds = [seed if (r == 0 and j == 0) else particle_seed(seed, r * k + j) for _ in prompts for j in range(k)]
        out = view(**embeds, latents=start_noise(view, seeds, bank.settings), output_type="latent",
                   **bank.settings.pipe_kwargs()).images
        pixels = decode(pipe, out)
        got = score(bank.reward, pixels, [p for p in prompts for _ in range(k)])
        kept_pixels.append(pixels), kept_rewards.append(got)
        if r == 0:
            sigmas, ess_a, ess_b = guided.sigmas, guided.ess_a, guided.ess_b
        if r + 1 < rounds:  # iterated tilting: the guided samples join each image's bank
            latents = torch.cat([latents, out.float().cpu().unsqueeze(1)], 1)
            rewards = torch.cat([rewards, got.unsqueeze(1)], 1)
    # (rounds, B·K, ...) -> per prompt, its K·R guided samples; keep the highest reward
    image_shape = kept_pixels[0].shape[1:]
    all_rewards = torch.stack(kept_rewards).view(rounds, b, k).transpose(0, 1).reshape(b, rounds * k)
    pixels = torch.stack(kept_pixels).view(rounds, b, k, *image_shape).transpose(0, 1).reshape(b, rounds * k,
                                                                                                   *image_shape)
    pick = all_rewards.argmax(1)
    images = to_images(pixels[torch.arange(b), pick])
    now = time.perf_counter()
    first = torch.arange(b) * k  # particle 0 of each prompt: its ESS is the one reported
    return FlowResult(images, prompts, all_rewards[torch.arange(b), pick], "is", seed, n, beta,
                      trajectories=n + k * rounds,
                      estimator={**estimator.describe(), "particles": k, "rounds": rounds},
                      seconds=now - start, bank_seconds=float(sum(e.seconds.sum() for e in entries)),
                      sample_seconds=now - run_start, sigmas=sigmas, ess_a=ess_a[:, first], ess_b=ess_b[:, first],
                      picks=pick.tolist() if k * rounds > 1 else None)


def best_of_n(pipe, prompt: str | list[str], *, seed: int = 0, n: int = 8, reward: str | Reward | None = None,
              bank: SampleBank | None = None, preset: Preset | None = None, steps: int | None = None,
              guidance_scale: float | None = None) -> FlowResult:
    """Per prompt, the highest-reward sample of the (prompt, seed) bank of ``n``: free when the bank exists."""
    start = time.perf_counter()
    prompts, seed, n, bank, entries = _entries(pipe, prompt, seed, n, reward, bank, preset, steps, guidance_scale)
    picks = [int(e.rewards.argmax()) for e in entries]
    images = [to_images(e.pixels[i : i + 1])[0] for e, i in zip(entries, picks)]
    rewards = torch.stack([e.rewards[i] for e, i in zip(entries, picks)])
    return FlowResult(images, prompts, rewards, "bon", seed, n, trajectories=n, seconds=time.perf_counter() - start,
                      bank_seconds=float(sum(e.seconds.sum() for e in entries)), picks=picks)


def baseline(pipe, prompt: str | list[str], *, seed: int = 0, reward: str | Reward | None = None,
             bank: SampleBank | None = None, preset: Preset | None = None, steps: int | None = None,
             guidance_scale: float | None = None) -> FlowResult:
    """The unguided pipeline from the same noise as ``sample_is`` (so the two pair image by image), scored with the
    bank's reward (or ``reward``)."""
    start = time.perf_counter()
    prompts, seed = _prompts(prompt), check_seed(seed)
    bank = _bank_for(pipe, bank, reward, preset, steps, guidance_scale)
    noise = start_noise(pipe, [seed] * len(prompts), bank.settings)
    # the prompts as the bank encodes them (once, whichever of baseline, bank or guided asks first)
    images = pipe(**bank.prompt_embeddings(prompts), latents=noise, **bank.settings.pipe_kwargs()).images
    rewards = bank.reward.score(images, prompts).float().cpu()
    now = time.perf_counter()
    return FlowResult(images, prompts, rewards, "baseline", seed, seconds=now - start, sample_seconds=now - start)
