"""Guided sampling for SDXL-class pipelines, with the pipeline's own scheduler and call.

    pipe, preset = load_pipeline("toy-sdxl")
    network = GuidanceNetwork.from_pretrained("checkpoints/toy-guidance")
    out = sample_guided(pipe, "a red star on a blue background", network=network, beta=0.5, eta=1.0, seed=0,
                        reward="toy-pickscore")
    out.images, out.rewards, out.seconds
    tweedie = sample_tweedie(pipe, "a red star on a blue background", reward="toy-pickscore", beta=0.5, seed=0)

The guidance wraps the UNet (k-diffusion's way: wrap the denoiser, keep the sampler): at every step the UNet's
noise prediction becomes ``ε̃ = ε_θ − α σ_t ∇log h`` (``diffusion_guidance.guided_eps``). With classifier-free
guidance the UNet sees [uncond, cond]; adding the same δ to both halves gives (u + δ) + g((c + δ) − (u + δ)) =
ε_cfg + δ exactly. ``∇log h`` comes from the guidance network (``sample_guided``) or from the reward's gradient
through Tweedie's x̂0, the VAE decoder and the reward model (``sample_tweedie``, DPS-style, for comparison).
"""

from __future__ import annotations

import numbers
import threading
import time
import weakref
from dataclasses import dataclass

import torch
from PIL import Image

from .acceleration import guidance_gradient
from .diffusion_guidance import check_alpha, check_beta, check_eta, tweedie_x0, vp_coefficients
from .guidance_network import GuidanceNetwork
from .lru import LRU
from .presets import Preset, sampling_settings
from .rewards import Reward, load_reward
from .sampling import check_prompt, encode_prompt_kwargs, execution_device, with_component


class _UNetWrapper(torch.nn.Module):
    """Delegates everything a pipeline reads off its UNet (config, dtype, add_embedding, …) to the wrapped UNet and
    adds ``delta(sample, timestep, added_cond_kwargs, eps)`` to its noise prediction."""

    def __init__(self, unet, n_images: int):
        super().__init__()
        self.unet = unet
        self.n_images = n_images
        self.alphas_cumprod: torch.Tensor | None = None

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("unet"), name)

    def forward(self, sample, timestep, encoder_hidden_states=None, added_cond_kwargs=None, return_dict=False,
                **kwargs):
        eps = self.unet(sample, timestep, encoder_hidden_states=encoder_hidden_states,
                        added_cond_kwargs=added_cond_kwargs, return_dict=False, **kwargs)[0]
        n = self.n_images
        copies, rest = divmod(sample.shape[0], n)
        if rest:
            raise ValueError(f"a UNet batch of {sample.shape[0]} does not split into copies of {n} images")
        t = torch.as_tensor(timestep, device=sample.device).reshape(-1)[:1].expand(n)
        _, sigma_t = vp_coefficients(self.alphas_cumprod.to(sample.device), t)
        delta = self.delta(sample, t, sigma_t, encoder_hidden_states, added_cond_kwargs, eps)
        eps = eps + delta.to(eps.dtype).repeat(copies, *([1] * (eps.ndim - 1)))
        return (eps,)


class GuidedUNet(_UNetWrapper):
    """δ = −α σ_t ∇_{x_t} log h_ψ(x_t, pooled text, t, β, η) from the guidance network (conditional half)."""

    def __init__(self, unet, network: GuidanceNetwork, n_images: int, beta: float, eta: float, alpha: float):
        super().__init__(unet, n_images)
        self.network, self.beta, self.eta, self.alpha = network, beta, eta, alpha

    def delta(self, sample, t, sigma_t, encoder_hidden_states, added_cond_kwargs, eps):
        n = self.n_images
        pooled = added_cond_kwargs["text_embeds"][-n:]
        net_dtype = next(self.network.parameters()).dtype
        # β and η as tensors: a compiled network (alignment/acceleration.py) then keeps one graph for every slider
        # position instead of compiling again for each new value
        beta, eta = (torch.full((n,), float(v), device=sample.device) for v in (self.beta, self.eta))
        gradient = guidance_gradient(self.network)  # CUDA-graphed once accelerated (alignment/acceleration.py)
        _, grad = gradient(sample[-n:].detach().to(net_dtype), pooled.to(net_dtype), t, beta, eta)
        return -self.alpha * sigma_t.view(-1, 1, 1, 1) * grad.float()


class TweedieUNet(_UNetWrapper):
    """δ = −α σ_t ∇_{x_t} r(D(x̂0(x_t)), y) / β: the reward's gradient through Tweedie's x̂0 (and so through the
    UNet), the VAE decoder ``D`` and the reward model — DPS-style backprop guidance."""

    def __init__(self, unet, vae, reward: Reward, prompts: list[str], guidance_scale: float, beta: float,
                 alpha: float):
        super().__init__(unet, len(prompts))
        if not reward.differentiable:
            raise ValueError(f"the reward {reward.name!r} is not differentiable with respect to pixels; Tweedie "
                             "guidance needs one that is (e.g. toy-pickscore, pickscore, hpsv2)")
        self.vae, self.reward, self.prompts = vae, reward, prompts
        self.guidance_scale, self.beta, self.alpha = guidance_scale, beta, alpha

    def delta(self, sample, t, sigma_t, encoder_hidden_states, added_cond_kwargs, eps):
        n = self.n_images
        copies = sample.shape[0] // n
        alpha_t, _ = vp_coefficients(self.alphas_cumprod.to(sample.device), t)
        with torch.enable_grad():
            x = sample[-n:].detach().requires_grad_(True)
            e = self.unet(x.repeat(copies, 1, 1, 1), t.repeat(copies), encoder_hidden_states=encoder_hidden_states,
                          added_cond_kwargs=added_cond_kwargs, return_dict=False)[0]
            if copies == 2:
                e = e[:n] + self.guidance_scale * (e[n:] - e[:n])
            shape = (-1, 1, 1, 1)
            x0 = tweedie_x0(x.float(), e.float(), alpha_t.view(shape), sigma_t.view(shape))
            vae = self.vae
            pixels = vae.decode((x0 / vae.config.scaling_factor).to(vae.dtype)).sample.float()
            r = self.reward.score(((pixels + 1) / 2).clamp(0, 1), self.prompts)
            (grad,) = torch.autograd.grad(r.sum() / self.beta, x)
        return -self.alpha * sigma_t.view(-1, 1, 1, 1) * grad.float()


@dataclass
class DiffusionResult:
    images: list[Image.Image]
    prompts: list[str]
    method: str  # "baseline", "guided" or "tweedie"
    seed: int | list[int]  # one for the batch, or one per image
    steps: int
    guidance_scale: float
    beta: float | None
    eta: float | None
    alpha: float | None
    rewards: torch.Tensor | None  # one per image, when a reward was given
    reward_name: str | None
    seconds: float  # sampling (scoring excluded)

    def summary(self) -> dict:
        return {"method": self.method, "seed": self.seed, "steps": self.steps, "guidance": self.guidance_scale,
                "beta": self.beta, "eta": self.eta, "alpha": self.alpha, "seconds": round(self.seconds, 4),
                "reward_name": self.reward_name,
                "rewards": None if self.rewards is None else [round(float(r), 4) for r in self.rewards]}


def _prompts(prompt) -> list[str]:
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    if not prompts:
        raise ValueError("no prompt given")
    return [check_prompt(p) for p in prompts]


def _settings(pipe, preset: Preset | None, steps, guidance_scale) -> tuple[int, float, dict]:
    steps, guidance = sampling_settings(preset, steps, guidance_scale)
    size = {"height": preset.resolution, "width": preset.resolution} if preset else {}
    return steps, guidance, size


_PROMPT_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # pipeline -> LRU of its prompt embeddings
_PROMPT_CACHE_LOCK = threading.Lock()


def prompt_kwargs(pipe, prompts: list[str], guidance: float) -> dict:
    """The prompt as the pipeline's call takes it: for an SDXL-class pipeline its embeddings, encoded once per
    pipeline, prompt list and classifier-free-guidance setting (LRU), since a slider move samples the same prompt
    again (the text encoders and the pipeline's own encode_prompt took ~9 ms of a ~0.24 s toy re-render); for any
    other pipeline the prompts themselves."""
    if not hasattr(pipe, "text_encoder_2"):
        return {"prompt": prompts}
    cfg = guidance > 1 and getattr(pipe.unet.config, "time_cond_proj_dim", None) is None
    with _PROMPT_CACHE_LOCK:
        cache = _PROMPT_CACHE.setdefault(pipe, LRU(32))
    return {"prompt": None, **cache.get((tuple(prompts), cfg), lambda: encode_prompt_kwargs(pipe, prompts, cfg))}


def _generators(seed, n: int):
    """One generator for the batch (``seed`` an int) or one per image (``seed`` a list of n ints, so each image's
    noise does not depend on the batch it is in)."""
    seeds = list(seed) if isinstance(seed, (list, tuple)) else [seed]
    if isinstance(seed, (list, tuple)) and len(seeds) != n:
        raise ValueError(f"give one seed per prompt: {len(seeds)} seeds for {n} prompts")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, numbers.Integral) or not 0 <= s < 2**63:
            raise ValueError(f"seed must be a non-negative integer below 2**63, got {s!r}")
    generators = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
    return generators if isinstance(seed, (list, tuple)) else generators[0]


def _run(pipe, wrapper: _UNetWrapper | None, prompts, seed, steps, guidance, size,
         device: torch.device | None = None) -> tuple[list, float]:
    generator = _generators(seed, len(prompts))
    if wrapper is not None:
        wrapper.alphas_cumprod = pipe.scheduler.alphas_cumprod
    # a view, also for the baseline: it keeps the execution device (execution_device), which diffusers would walk
    # every submodule to find on every call
    view = with_component(pipe, device=device, **({"unet": wrapper} if wrapper is not None else {}))
    view.set_progress_bar_config(disable=True)
    start = time.perf_counter()
    text = prompt_kwargs(pipe, prompts, guidance)
    images = view(**text, num_inference_steps=steps, guidance_scale=guidance, generator=generator, **size).images
    return images, time.perf_counter() - start


def _score(reward, images, prompts):
    if reward is None:
        return None, None
    reward = load_reward(reward) if isinstance(reward, str) else reward
    return reward.score(images, prompts).float().cpu(), reward.name


def sample_baseline(pipe, prompt, *, seed: int = 0, steps: int | None = None, guidance_scale: float | None = None,
                    preset: Preset | None = None, reward: str | Reward | None = None) -> DiffusionResult:
    prompts = _prompts(prompt)
    steps, guidance, size = _settings(pipe, preset, steps, guidance_scale)
    images, seconds = _run(pipe, None, prompts, seed, steps, guidance, size)
    rewards, name = _score(reward, images, prompts)
    return DiffusionResult(images, prompts, "baseline", seed, steps, guidance, None, None, None, rewards, name,
                           seconds)


def sample_guided(pipe, prompt, *, network: GuidanceNetwork, beta: float = 1.0, eta: float = 1.0,
                  alpha: float = 1.0, seed: int = 0, steps: int | None = None, guidance_scale: float | None = None,
                  preset: Preset | None = None, reward: str | Reward | None = None) -> DiffusionResult:
    """Sample ``p*(x0|y) ∝ p(x0|y) exp(r/β)`` with the trained guidance network at (β, η), strength α."""
    beta, eta, alpha = check_beta(beta), check_eta(eta), check_alpha(alpha)
    lo, hi = network.config.beta_range
    if not lo <= beta <= hi:
        raise ValueError(f"this guidance network was trained for β in [{lo}, {hi}], got {beta}")
    prompts = _prompts(prompt)
    steps, guidance, size = _settings(pipe, preset, steps, guidance_scale)
    # where the UNet computes: read once (diffusers walks every submodule of every component to find it)
    device = execution_device(pipe)
    if next(network.parameters()).device != device:
        network = network.to(device)
    wrapper = GuidedUNet(pipe.unet, network, len(prompts), beta, eta, alpha)
    images, seconds = _run(pipe, wrapper, prompts, seed, steps, guidance, size, device)
    rewards, name = _score(reward, images, prompts)
    return DiffusionResult(images, prompts, "guided", seed, steps, guidance, beta, eta, alpha, rewards, name,
                           seconds)


def sample_tweedie(pipe, prompt, *, reward: str | Reward, beta: float = 1.0, alpha: float = 1.0, seed: int = 0,
                   steps: int | None = None, guidance_scale: float | None = None,
                   preset: Preset | None = None) -> DiffusionResult:
    """The paper's comparison: guidance by the reward's gradient through x̂0, the VAE decoder and the reward."""
    beta, alpha = check_beta(beta), check_alpha(alpha)
    prompts = _prompts(prompt)
    steps, guidance, size = _settings(pipe, preset, steps, guidance_scale)
    reward = load_reward(reward, device=execution_device(pipe)) if isinstance(reward, str) else reward
    wrapper = TweedieUNet(pipe.unet, pipe.vae, reward, prompts, guidance, beta, alpha)
    images, seconds = _run(pipe, wrapper, prompts, seed, steps, guidance, size)
    rewards, name = _score(reward, images, prompts)
    return DiffusionResult(images, prompts, "tweedie", seed, steps, guidance, beta, None, alpha, rewards, name,
                           seconds)


def best_of_n(pipe, prompt, *, n: int = 2, seed: int = 0, reward: str | Reward = "toy-pickscore",
              steps: int | None = None, guidance_scale: float | None = None,
              preset: Preset | None = None) -> DiffusionResult:
    """Per prompt, the highest-reward of ``n`` baseline samples: draw 0 from ``seed`` (the baseline's own image),
    draw j > 0 from ``sample_seed(seed, j)``. Costs n sampler runs and n reward calls per prompt; ``seconds``
    counts both."""
    from .sample_bank import check_n, sample_seed

    n = check_n(n)
    prompts = _prompts(prompt)
    steps, guidance, size = _settings(pipe, preset, steps, guidance_scale)
    reward = load_reward(reward, device=execution_device(pipe)) if isinstance(reward, str) else reward
    start = time.perf_counter()
    draws = []
    for j in range(n):
        images, _ = _run(pipe, None, prompts, seed if j == 0 else sample_seed(int(seed), j), steps, guidance, size)
        draws.append((images, reward.score(images, prompts).float().cpu()))
    scores = torch.stack([r for _, r in draws])  # (n, B)
    pick = scores.argmax(0)
    images = [draws[int(j)][0][i] for i, j in enumerate(pick)]
    return DiffusionResult(images, prompts, f"best-of-{n}", seed, steps, guidance, None, None, None,
                           scores.max(0).values, reward.name, time.perf_counter() - start)
