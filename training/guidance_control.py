"""Train the guidance network through the sampler it steers: reward at the end, a KL-style price on the way.

    python -m training guidance-control --model toy-sdxl --reward toy-pickscore \\
        --init-from checkpoints/toy-guidance --work runs/guidance-control --export checkpoints/toy-guidance

The paper's objective (``python -m training guidance``) regresses ``h`` on forward-noised images and one reward
each; on the toy model the guidance it learns is weak (the studio's aligned image beats the baseline's reward in
58 % of pairs). This objective trains the same network (same class, inputs and checkpoint layout, so every sampler,
the CLI and the studio use it unchanged) on what the guided sampler actually produces. Per batch: prompts (the toy
world's training captions, or ``--captions FILE``), fresh starting noise, ``β`` drawn log-uniformly over
``--beta-range`` and ``η`` uniformly over ``--eta-range``; the pipeline's own scheduler is unrolled with gradients
through the frozen UNet, VAE decoder and reward, with the noise prediction at each step ``t`` changed by
``δ_t = −σ_t ∇log h_ψ(x_t)`` (``diffusion_guidance.guided_eps``), and

    L = E[ −r(x0) + β · κ · ½ Σ_t ‖δ_t‖² ]

For a stochastic sampler, ``½ Σ_t ‖δ_t‖²`` is (up to the per-step noise scale) the KL divergence of the guided path
from the pretrained one, and the minimiser of ``E[−r] + β KL`` is the paper's target ``p(x0|y) exp(r/β)``; for the
deterministic few-step samplers of SDXL-Turbo-class models it is a price on how far the guidance moves each step,
with ``κ`` (``--kl-weight``) setting its units. With ``--pair-temperature T`` the reward term compares each guided
image with the pretrained sampler's image from the same noise and prompt (made without gradients), as a vote would:
``−T·log σ((r − r_base)/T)`` (:func:`reward_term`), whose gradient weighs a pair by the chance it still loses, so the
network is pushed to win more pairs rather than to win some by much; for large ``T`` it is ``−(r − r_base)/2``.
``η`` weights the consistency term of the paper's objective, which this one has not: it is drawn and passed so the
network learns not to depend on it. Resumes from ``--work``;
pauses at ``--max-minutes``; stops with a clear message on a NaN loss (``training/loop.py``).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from alignment import load_pipeline
from alignment.diffusion_guidance import grad_log_h_of, guided_eps, vp_coefficients
from alignment.guidance_network import GuidanceNetwork
from alignment.presets import sampling_settings
from alignment.rewards import load_reward
from alignment.sampling import encode_prompt_kwargs

from .configs import GuidanceControlConfig
from .graphed_step import set_lr
from .loop import TrainingLoop, apply_gradients, lr_at


def unrolled_guided_sample(pipe, network: GuidanceNetwork | None, prompt_kwargs: dict, noise: torch.Tensor,
                           beta: torch.Tensor, eta: torch.Tensor, steps: int, resolution: int,
                           guidance_scale: float = 0.0, create_graph: bool = True,
                           decode: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The guided sampler of an SDXL-class pipeline, written out so gradients reach ``network``: ``(images in
    [0, 1], ½ Σ_t ‖δ_t‖² per image)``, or with ``decode=False`` the final latents in their place (``decoded``
    makes the images of them). ``prompt_kwargs`` is what ``encode_prompt_kwargs(pipe, prompts, cfg)``
    returns, with ``cfg`` true when ``guidance_scale > 1`` (classifier-free guidance, ``ε = u + g (c − u)``, as the
    pipeline applies it; δ is added to the guided prediction, as ``GuidedUNet`` does); ``noise`` the starting
    latents (B, C, h, w). With ``network=None`` it is the pretrained sampler, image for image what ``pipe(...)``
    returns from the same latents."""
    scheduler, unet, vae = pipe.scheduler, pipe.unet, pipe.vae
    n = noise.shape[0]
    cfg = guidance_scale > 1
    time_ids = torch.tensor([[resolution, resolution, 0, 0, resolution, resolution]], dtype=noise.dtype,
                            device=noise.device).expand(2 * n if cfg else n, 6)
    pooled = prompt_kwargs["pooled_prompt_embeds"]
    if cfg:
        context = torch.cat([prompt_kwargs["negative_prompt_embeds"], prompt_kwargs["prompt_embeds"]])
        text_embeds = torch.cat([prompt_kwargs["negative_pooled_prompt_embeds"], pooled])
    else:
        context, text_embeds = prompt_kwargs["prompt_embeds"], pooled
    cond = {"encoder_hidden_states": context, "added_cond_kwargs": {"text_embeds": text_embeds, "time_ids": time_ids}}
    scheduler.set_timesteps(steps, device=noise.device)
    x = noise * scheduler.init_noise_sigma
    price = torch.zeros(n, device=noise.device)
    alphas_cumprod = scheduler.alphas_cumprod.to(noise.device)
    for t in scheduler.timesteps:
        x_in = scheduler.scale_model_input(torch.cat([x, x]) if cfg else x, t)
        eps = unet(x_in, t, **cond).sample
        if cfg:
            uncond, conditional = eps.chunk(2)
            eps = uncond + guidance_scale * (conditional - uncond)
        if network is not None:
            tt = t.reshape(1).expand(n)
            _, sigma_t = vp_coefficients(alphas_cumprod, tt)
            _, grad = grad_log_h_of(network, x, pooled, tt, beta, eta, create_graph=create_graph)
            guided = guided_eps(eps, grad, sigma_t)
            price = price + 0.5 * (guided - eps).pow(2).flatten(1).sum(1)
            eps = guided
        x = scheduler.step(eps, t, x).prev_sample
    return (decoded(vae, x) if decode else x), price


def decoded(vae, latents: torch.Tensor) -> torch.Tensor:
    """The VAE's images of the sampler's final latents, in [0, 1]."""
    images = vae.decode(latents / vae.config.scaling_factor).sample
    return ((images.float() + 1) / 2).clamp(0, 1)


def device_name(device: torch.device) -> str:
    """What trained it, for the export's record: the GPU's name, or the CPU's cores and architecture."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{os.cpu_count()}-core {platform.machine()} CPU"


def reward_term(rewards: torch.Tensor, base_rewards: torch.Tensor | None, temperature: float) -> torch.Tensor:
    """The loss's reward part per image: ``−r``, or with ``temperature`` T > 0 the pairwise
    ``−T·log σ((r − r_base)/T)`` against the pretrained sampler's reward from the same noise."""
    if temperature <= 0:
        return -rewards
    return -temperature * torch.nn.functional.logsigmoid((rewards - base_rewards) / temperature)


def prompt_lines(path: Path) -> list[str]:
    """The non-empty lines of a prompt file, or a ValueError when it has none."""
    lines = [ln.strip() for ln in Path(path).read_text().splitlines() if ln.strip()]
    if not lines:
        raise ValueError(f"{path} holds no prompts (one per line)")
    return lines


def training_prompts(cfg: GuidanceControlConfig, step: int, n: int, lines: list[str] | None = None) -> list[str]:
    """Batch ``step``'s prompts: lines of ``--captions`` (``lines``, when already read) cycled in a seeded order, or
    the toy world's training captions (never a held-out combination)."""
    if cfg.captions is None:
        from toyworld.dataset import sample_captions

        return sample_captions(n, seed=cfg.seed * 1_000_003 + step, split="train")
    lines = lines if lines is not None else prompt_lines(cfg.captions)
    order = np.random.default_rng(cfg.seed).permutation(len(lines))
    return [lines[order[(step * n + i) % len(lines)]] for i in range(n)]


def run(cfg: GuidanceControlConfig) -> bool:
    if cfg.kl_weight < 0 or not math.isfinite(cfg.kl_weight):
        raise ValueError(f"--kl-weight must be a non-negative number, got {cfg.kl_weight}")
    if cfg.pair_temperature < 0 or not math.isfinite(cfg.pair_temperature):
        raise ValueError(f"--pair-temperature must be a non-negative number (0: off), got {cfg.pair_temperature}")
    lines = prompt_lines(cfg.captions) if cfg.captions is not None else None  # read once, not every step
    started = time.time()
    deadline = started + 60 * cfg.max_minutes
    set_seed(cfg.seed)
    accelerator = Accelerator()
    device = accelerator.device
    pipe, preset = load_pipeline(cfg.model, device=str(device), dtype=torch.float32)
    if not hasattr(pipe, "unet"):
        raise ValueError(f"{cfg.model} is not an SDXL-class (UNet) pipeline: guidance networks steer diffusion "
                         "models; flow models take the training-free estimator")
    for module in (pipe.unet, pipe.vae, pipe.text_encoder, pipe.text_encoder_2):
        module.requires_grad_(False).eval()
    reward = load_reward(cfg.reward, device=device)
    if not reward.differentiable:
        raise ValueError(f"the reward {cfg.reward!r} is not differentiable with respect to pixels; this objective "
                         "needs one that is (toy-pickscore, pickscore, hpsv2, …)")
    if cfg.init_from is not None:
        network = GuidanceNetwork.from_pretrained(cfg.init_from)
    else:
        factory = {"toy": GuidanceNetwork.toy_size, "toy-wide": GuidanceNetwork.toy_wide_size,
                   "sdxl": GuidanceNetwork.sdxl_size}[cfg.size]
        network = factory(text_dim=pipe.text_encoder_2.config.projection_dim,
                          in_channels=pipe.unet.config.in_channels)
    network.register_to_config(beta_range=tuple(cfg.beta_range), eta_range=tuple(cfg.eta_range))
    network.to(device).train()
    resolution = preset.resolution if preset else pipe.default_sample_size * pipe.vae_scale_factor
    steps, guidance = sampling_settings(preset)
    side = resolution // pipe.vae_scale_factor
    channels = pipe.unet.config.in_channels
    opt = torch.optim.AdamW(network.parameters(), lr=cfg.lr, weight_decay=1e-4)
    network, opt = accelerator.prepare(network, opt)
    loop = TrainingLoop(accelerator, cfg.work, cfg.steps, deadline, name="guidance-control",
                        save_every=cfg.save_every, hint="lower --lr or raise --kl-weight, then resume")
    accelerator.print(f"guidance-control on {cfg.model} ({steps} steps, guidance {guidance:g}, {resolution}²) with "
                      f"{cfg.reward}, κ = {cfg.kl_weight}, from step {loop.step}")
    log_lo, log_hi = math.log(cfg.beta_range[0]), math.log(cfg.beta_range[1])

    def step_fn(step: int):
        rng = np.random.default_rng((cfg.seed, step, accelerator.process_index))
        prompts = training_prompts(cfg, step * accelerator.num_processes + accelerator.process_index,
                                   cfg.batch_size, lines)
        noise = torch.from_numpy(rng.standard_normal((cfg.batch_size, channels, side, side),
                                                     dtype=np.float32)).to(device)
        beta = torch.from_numpy(np.exp(rng.uniform(log_lo, log_hi, cfg.batch_size))).float().to(device)
        eta = torch.from_numpy(rng.uniform(*cfg.eta_range, cfg.batch_size)).float().to(device)
        text = encode_prompt_kwargs(pipe, prompts, guidance > 1)
        images, price = unrolled_guided_sample(pipe, network, text, noise, beta, eta, steps, resolution, guidance)
        rewards = reward.score(images, prompts).float()
        logs = {"reward": rewards.mean().detach(), "price": price.mean().detach()}
        base_rewards = None
        if cfg.pair_temperature > 0:
            with torch.no_grad():
                base, _ = unrolled_guided_sample(pipe, None, text, noise, None, None, steps, resolution, guidance,
                                                 create_graph=False)
                base_rewards = reward.score(base, prompts).float()
            logs["wins"] = (rewards.detach() > base_rewards).float().mean()
        loss = (reward_term(rewards, base_rewards, cfg.pair_temperature) + beta * cfg.kl_weight * price).mean()
        set_lr(opt, lr_at(cfg.lr, step, cfg.steps, warmup=50))
        apply_gradients(accelerator, loss, opt, clip=network.parameters())
        return loss.detach(), logs

    def export(step: int, finished: bool) -> None:
        net = copy.deepcopy(accelerator.unwrap_model(network)).to("cpu", torch.float16)
        net.save_pretrained(cfg.export)  # small file; loads as fp32
        settings = {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(cfg).items()}
        (Path(cfg.export) / "training.json").write_text(json.dumps(
            {"objective": "guidance-control", "step": step, "finished": finished,
             "processes": accelerator.num_processes,
             **{k: settings[k] for k in ("model", "reward", "kl_weight", "pair_temperature", "batch_size", "lr",
                                         "init_from")},
             "captions": settings["captions"] or "toy world training split", "settings": settings,
             "exported": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "device": device_name(device),
             "minutes_this_run": round((time.time() - started) / 60, 1)}, indent=1))

    finished = loop.run(step_fn, export=export if cfg.export is not None else None)
    accelerator.print(json.dumps({"done": finished, "step": loop.step,
                                  "minutes": round((time.time() - started) / 60, 2)}))
    return finished
