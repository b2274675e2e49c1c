"""Train the guidance network with ``L = L_guidance + η · L_consistency`` (DESIGN §1), β and η drawn per example so
one network serves every slider position.

    python -m training guidance --cache runs/guidance-cache --model toy-sdxl --work runs/toy-guidance \\
        --export checkpoints/toy-guidance
    accelerate launch -m training guidance ...          # the same on every GPU accelerate is configured for

Per example: ``t`` uniform over the training timesteps, ``x_t = α_t x0 + σ_t ε``, ``log β`` uniform over
``--beta-range``, ``η`` uniform over ``--eta-range`` (exactly 0 for a quarter of the examples, so η = 0 is learnt
as such). ``L_guidance = exp(r/β − u) + u`` with ``u = log h_ψ`` (minimised by ``u = log E[exp(r/β) | x_t]``);
``L_consistency = ‖ε_θ(x_t) − σ_t ∇log h_ψ − ε‖²`` on the preferred image of each pair, with the pretrained UNet
frozen. Resumes from ``--work``; pauses at ``--max-minutes``; stops with a clear message on a NaN loss.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from alignment import load_pipeline
from alignment.diffusion_guidance import consistency_loss, grad_log_h_of, guidance_loss, noised, vp_coefficients
from alignment.guidance_network import GuidanceNetwork

from .configs import GuidanceTrainConfig
from .graphed_step import GraphedStep, capturable_adamw, consistency_rows, set_lr
from .guidance_data import load_cache
from .loop import TrainingLoop, lr_at

LOG_EVERY = 25  # steps between loss reads (each waits for the GPU)


class Objective(torch.nn.Module):
    """Both loss terms behind one forward, for accelerate. The UNet is frozen; only ψ trains."""

    def __init__(self, network: GuidanceNetwork, unet, alphas_cumprod: torch.Tensor, resolution: int):
        super().__init__()
        self.network, self.unet = network, unet.requires_grad_(False).eval()
        self.register_buffer("alphas_cumprod", alphas_cumprod.float(), persistent=False)
        # SDXL's micro-conditioning (original size, crop, target size), on the device with the module: made inside
        # the step it would be a host-to-device copy, which a CUDA graph capture refuses
        self.register_buffer("time_ids", torch.tensor([[resolution, resolution, 0, 0, resolution, resolution]],
                                                      dtype=torch.float32), persistent=False)
        self.resolution = resolution

    def forward(self, x0, prompt_embeds, text_embeds, rewards, t, noise, beta, eta, rows=None,
                consistency_scale: float = 1.0, cached: dict | None = None, readout: bool = False,
                row_weights: torch.Tensor | None = None):
        """(loss, L_guidance, L_consistency) of a batch of B rows.

        ``readout``: instead, the warm-start loss ``((β log h_ψ(x_t) − r) / std(r))²`` at the (small) ``t`` given.
        As t → 0, ``log E[exp(r/β) | x_t] → r/β``, so this is the minimiser of ``L_guidance`` there, reached by a
        plain regression that teaches the network to read the reward off the latent first (L_guidance alone,
        mostly at large t, learned little beyond the caption: evaluations/results/reward_and_guidance_notes.md).

        ``L_guidance`` needs only ``log h`` and is taken on every row. ``L_consistency`` needs ``∇log h`` with its
        graph (a second-order backward) and one call of the frozen UNet per row, so it is taken only on ``rows``
        (indices chosen on the host, e.g. the preferred images with η > 0: no GPU sync, no data-dependent
        shapes), each weighted by its η and by ``row_weights`` (one per row, from ``consistency_rows``: m/k when k
        of m eligible rows are kept, 0 for padding) or else by ``consistency_scale`` (1/f when a random share f of
        the eligible rows is kept), so the expected loss is unchanged, and summed over B. With ``cached``
        (``x_t``, ``t`` and ``residual`` = ε_θ(x_t) − ε of those rows, from the data step) the UNet is not called."""
        alpha_t, sigma_t = vp_coefficients(self.alphas_cumprod, t)
        x_t = noised(x0, noise, alpha_t, sigma_t)
        if readout:
            v = beta * self.network(x_t, text_embeds, t, beta, eta)
            l_readout = ((v - rewards.float()) / self.network.config.reward_std).pow(2).mean()
            return l_readout, l_readout.detach(), torch.zeros((), device=x0.device)
        l_guidance = guidance_loss(self.network(x_t, text_embeds, t, beta, eta), rewards, beta).mean()
        if rows is None or len(rows) == 0:
            return l_guidance, l_guidance.detach(), torch.zeros((), device=x0.device)
        e_r = eta[rows]
        if cached is not None:
            x_r, t_r = cached["x_t"].float(), cached["t"].long()
            sigma_r = vp_coefficients(self.alphas_cumprod, t_r)[1]
        else:
            x_r, t_r, sigma_r = x_t[rows].detach(), t[rows], sigma_t[rows]
        _, grad = grad_log_h_of(self.network, x_r, text_embeds[rows], t_r, beta[rows], e_r, create_graph=True)
        if cached is not None:  # ε_θ(x_t) − ε, computed once by the data step
            l_consistency = consistency_loss(cached["residual"].float(), grad, sigma_r, torch.zeros_like(grad))
        else:
            dtype = self.unet.dtype
            time_ids = self.time_ids.to(dtype).expand(len(rows), 6)
            with torch.no_grad():
                eps = self.unet(x_r.to(dtype), t_r, encoder_hidden_states=prompt_embeds[rows].to(dtype),
                                added_cond_kwargs={"text_embeds": text_embeds[rows].to(dtype),
                                                   "time_ids": time_ids}).sample
            l_consistency = consistency_loss(eps.float(), grad, sigma_r, noise[rows])
        weights = e_r * (row_weights if row_weights is not None else consistency_scale)
        loss = l_guidance + (weights * l_consistency).sum() / x0.shape[0]
        kept = (row_weights > 0).float() if row_weights is not None else torch.ones_like(l_consistency)
        return loss, l_guidance.detach(), ((l_consistency * kept).sum() / kept.sum().clamp(min=1)).detach()


ETA_ZERO_SHARE = 0.25  # the share of examples trained at η = 0 exactly


def draw_conditions(rng: np.random.Generator, n: int, beta_range, eta_range) -> tuple[np.ndarray, np.ndarray]:
    """log-uniform β over beta_range; η uniform over eta_range, exactly 0 for a quarter of the examples."""
    lo, hi = math.log(beta_range[0]), math.log(beta_range[1])
    beta = np.exp(rng.uniform(lo, hi, n))
    eta = rng.uniform(eta_range[0], eta_range[1], n) * (rng.random(n) >= ETA_ZERO_SHARE)
    return beta, eta


def consistency_row_count(batch_size: int, preferred_share: float, fraction: float) -> int:
    """The fixed number of L_consistency rows per step: ``fraction`` of the expected number of eligible rows
    (preferred images with η > 0)."""
    return max(1, round(fraction * batch_size * preferred_share * (1 - ETA_ZERO_SHARE)))


def run(cfg: GuidanceTrainConfig) -> bool:
    if not 0 < cfg.consistency_fraction <= 1:
        raise ValueError(f"consistency_fraction must be in (0, 1], got {cfg.consistency_fraction}")
    if not 0 <= cfg.focus <= 1:
        raise ValueError(f"focus must be in [0, 1], got {cfg.focus}")
    if cfg.consistency_source not in ("unet", "cache"):
        raise ValueError(f"consistency_source must be 'unet' or 'cache', got {cfg.consistency_source!r}")
    if cfg.readout_steps < 0 or cfg.readout_t_max < 1:
        raise ValueError(f"readout_steps must be >= 0 and readout_t_max >= 1, got {cfg.readout_steps}, "
                         f"{cfg.readout_t_max}")
    started = time.time()
    deadline = started + 60 * cfg.max_minutes
    set_seed(cfg.seed)
    accelerator = Accelerator(mixed_precision=os.environ.get("GUIDANCE_MIXED_PRECISION", "no"))
    device = accelerator.device
    pipe, preset = load_pipeline(cfg.model, device=str(device), dtype=torch.float32)
    data = load_cache(cfg.cache, device)
    if cfg.consistency_source == "cache" and "c_residual" not in data:
        raise ValueError(f"{cfg.cache} holds no cached consistency targets: rebuild it with "
                         "`python -m training guidance-cache --consistency-draws K`, or train with "
                         "--consistency-source unet")
    n = len(data["rewards"])
    r_mean, r_std = float(data["rewards"].mean()), float(data["rewards"].std())
    if cfg.init_from is not None:
        network = GuidanceNetwork.from_pretrained(cfg.init_from)
    else:
        factory = {"toy": GuidanceNetwork.toy_size, "toy-wide": GuidanceNetwork.toy_wide_size,
                   "sdxl": GuidanceNetwork.sdxl_size}[cfg.size]
        network = factory(text_dim=data["text_embeds"].shape[1], in_channels=data["latents"].shape[1],
                          reward_mean=r_mean, reward_std=r_std, beta_range=tuple(cfg.beta_range),
                          eta_range=tuple(cfg.eta_range))
    objective = Objective(network, pipe.unet, pipe.scheduler.alphas_cumprod,
                          preset.resolution if preset else pipe.default_sample_size * pipe.vae_scale_factor)
    # One step as a replayed CUDA graph (training/graphed_step.py) on a single CUDA process: the eager step of this
    # small network is bound by kernel launches. Not under DDP (its gradient hooks) or fp16 (the loss scaler).
    graphed = (cfg.cuda_graph and device.type == "cuda" and accelerator.num_processes == 1
               and accelerator.mixed_precision != "fp16")
    if graphed:
        opt = capturable_adamw(network.parameters(), cfg.lr, 1e-4, device)
    else:
        opt = torch.optim.AdamW(network.parameters(), lr=cfg.lr, weight_decay=1e-4)
    objective, opt = accelerator.prepare(objective, opt)
    # a replayed graph's loss is read (a host synchronisation) only every LOG_EVERY steps, and at every save
    loop = TrainingLoop(accelerator, cfg.work, cfg.steps, deadline, name="guidance", save_every=cfg.save_every,
                        check_every=LOG_EVERY if graphed else 1,
                        hint="lower --lr or narrow --beta-range, then resume")
    n_train = len(pipe.scheduler.alphas_cumprod)
    preferred = data["preferred"].cpu().numpy()  # rows for L_consistency are chosen on the host
    k_rows = consistency_row_count(cfg.batch_size, float(preferred.mean()), cfg.consistency_fraction)
    pipe.scheduler.set_timesteps(preset.steps if preset else 1)
    sampler_t = pipe.scheduler.timesteps.long().cpu().numpy()  # where the guided sampler will ask for ∇log h
    trainable = [p for p in objective.parameters() if p.requires_grad]

    def train_step(readout: bool, **batch):
        """Loss, backward, clipping and update; no host synchronisation (it may be captured as a CUDA graph)."""
        cached = None
        if "c_xt" in batch:
            cached = {"x_t": batch.pop("c_xt"), "t": batch.pop("c_t"), "residual": batch.pop("c_residual")}
        loss, l_g, l_c = objective(batch["x0"], batch["prompt_embeds"], batch["text_embeds"], batch["rewards"],
                                   batch["t"], batch["noise"], batch["beta"], batch["eta"], batch["rows"],
                                   cached=cached, readout=readout, row_weights=batch["row_weights"])
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(trainable, 1.0)
        opt.step()
        return loss.detach(), l_g, l_c

    step_runner = GraphedStep(train_step, trainable, opt) if graphed else None
    accelerator.print(f"guidance: {n} cached images, reward mean {r_mean:.3f} std {r_std:.3f}, "
                      f"{sum(p.numel() for p in network.parameters()) / 1e6:.2f} M parameters, from step {loop.step}, "
                      f"{k_rows} consistency rows per step, {'CUDA graph' if graphed else 'eager'}")

    def step_fn(step: int) -> tuple[torch.Tensor, dict]:
        # each process draws its own batch: a pure function of (seed, step, process)
        rng = np.random.default_rng((cfg.seed, step, accelerator.process_index))
        idx_host = rng.integers(0, n, cfg.batch_size)
        idx = torch.from_numpy(idx_host).to(device)
        beta, eta = draw_conditions(rng, cfg.batch_size, cfg.beta_range, cfg.eta_range)
        readout = step <= cfg.readout_steps
        t = rng.integers(0, n_train, cfg.batch_size)
        if cfg.focus > 0:
            t = np.where(rng.random(cfg.batch_size) < cfg.focus, rng.choice(sampler_t, cfg.batch_size), t)
        if readout:
            t = rng.integers(0, cfg.readout_t_max, cfg.batch_size)
        x0 = data["latents"][idx].float()
        noise = torch.from_numpy(rng.standard_normal(x0.shape, dtype=np.float32)).to(device)
        rows_host, weights_host = consistency_rows(preferred[idx_host] & (eta > 0), k_rows, rng)
        weights_host = weights_host * (not readout)
        batch = dict(x0=x0, prompt_embeds=data["prompt_embeds"][idx].float(),
                     text_embeds=data["text_embeds"][idx].float(), rewards=data["rewards"][idx],
                     t=torch.from_numpy(t).to(device), noise=noise, beta=torch.from_numpy(beta).float().to(device),
                     eta=torch.from_numpy(eta).float().to(device), rows=torch.from_numpy(rows_host).to(device),
                     row_weights=torch.from_numpy(weights_host).float().to(device))
        if cfg.consistency_source == "cache":
            at = (torch.from_numpy(idx_host[rows_host]).to(device),
                  torch.from_numpy(rng.integers(0, data["c_t"].shape[1], len(rows_host))).to(device))
            batch.update(c_xt=data["c_xt"][at], c_t=data["c_t"][at], c_residual=data["c_residual"][at])
        set_lr(opt, lr_at(cfg.lr, step, cfg.steps, warmup=300))
        if step_runner is not None:
            loss, l_g, l_c = step_runner(readout, **batch)
        else:
            loss, l_g, l_c = train_step(readout, **batch)
            opt.zero_grad(set_to_none=True)
        return loss, ({"readout": l_g} if readout else {"guidance": l_g, "consistency": l_c})

    def export(step: int, finished: bool) -> None:
        net = accelerator.unwrap_model(objective).network
        copy.deepcopy(net).to("cpu", torch.float16).save_pretrained(cfg.export)  # small file; loads as fp32
        (Path(cfg.export) / "training.json").write_text(json.dumps(
            {"step": step, "finished": finished, "cache": str(cfg.cache), "model": cfg.model,
             "batch_size": cfg.batch_size, "processes": accelerator.num_processes, "lr": cfg.lr}, indent=1))

    finished = loop.run(step_fn, export=export if cfg.export is not None else None)
    accelerator.print(json.dumps({"done": finished, "step": loop.step,
                                  "minutes": round((time.time() - started) / 60, 2)}))
    return finished
