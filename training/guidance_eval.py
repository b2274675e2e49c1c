"""Held-out losses of a trained guidance network, sharded over processes with accelerate:

    python -m training guidance-eval --cache runs/guidance-cache-heldout --network checkpoints/toy-guidance
    accelerate launch --num_processes 2 -m training guidance-eval ...     # the same numbers, in half the time

For every cached image and every β of ``--betas``: ``L_guidance`` (the proper loss whose minimiser is
``log E[exp(r/β) | x_t]``; lower is better, comparable between networks on the same cache and draws), next to the
``L_guidance`` of the best constant (``log h`` that ignores x_t and the caption: a network must beat it), and, on the
preferred images, ``L_consistency`` at η = 1, with ``t`` uniform over the training timesteps; plus the size of the
guidance term ``σ_t ‖∇log h‖`` (RMS per element) at the sampler's own timesteps. ``reward_readout_corr``: the
correlation of ``β log h`` with the reward on clean latents (t = 0) and on pure noise (t = T, where only the
caption is left): a network that reads the reward off the image scores much higher at t = 0. Every draw (t, ε)
is a pure function of (seed, block of rows), and blocks are dealt to processes round-robin, so any process count
gives the same numbers up to floating-point reduction order. That is how one GPU and several are compared.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from accelerate import PartialState
from accelerate.utils import gather_object

from alignment import load_pipeline
from alignment.diffusion_guidance import consistency_loss, grad_log_h_of, guidance_loss, noised, vp_coefficients
from alignment.guidance_network import GuidanceNetwork

from .configs import GuidanceEvalConfig
from .guidance_data import load_cache


def _block_sums(cfg: GuidanceEvalConfig, b: int, data, network, unet, alphas_cumprod, sampler_t, res) -> dict:
    """Sums (not means) over one block of rows, so blocks from any process add up to the same totals."""
    device = alphas_cumprod.device
    rows = slice(b * cfg.block, (b + 1) * cfg.block)
    x0 = data["latents"][rows].float()
    n = x0.shape[0]
    rng = np.random.default_rng((cfg.seed, b))
    t = torch.from_numpy(rng.integers(0, len(alphas_cumprod), n)).to(device)
    t_sampler = torch.from_numpy(rng.choice(sampler_t, n)).to(device)
    noise = torch.from_numpy(rng.standard_normal(x0.shape, dtype=np.float32)).to(device)
    text, prompt_embeds = data["text_embeds"][rows].float(), data["prompt_embeds"][rows].float()
    rewards, pref = data["rewards"][rows].float(), data["preferred"][rows]
    sums = {"rows": n, "preferred": int(pref.sum())}
    # does the network read the reward off the image? v = β log h at t = 0 (clean latents) and at t = T (noise),
    # as sums for the correlation with r (at t = T only the caption is left to predict from)
    for name, t_read in (("t0", 0), ("tmax", len(alphas_cumprod) - 1)):
        tt = torch.full((n,), t_read, device=device)
        a_r, s_r = vp_coefficients(alphas_cumprod, tt)
        with torch.no_grad():
            v = network(noised(x0, noise, a_r, s_r), text, tt, 1.0, 0.0).float()
        sums.update({f"v_{name}": float(v.sum()), f"vv_{name}": float((v * v).sum()),
                     f"vr_{name}": float((v * rewards).sum())})
    sums.update(r=float(rewards.sum()), rr=float((rewards * rewards).sum()))
    for beta in cfg.betas:
        beta_t = torch.full((n,), beta, device=device)
        # L_guidance and L_consistency (η = 1) at uniform t
        alpha_t, sigma_t = vp_coefficients(alphas_cumprod, t)
        x_t = noised(x0, noise, alpha_t, sigma_t)
        log_h, grad = grad_log_h_of(network, x_t, text, t, beta_t, torch.ones(n, device=device))
        sums[f"guidance_{beta:g}"] = float(guidance_loss(log_h.detach(), rewards, beta_t).sum())
        if pref.any():
            time_ids = torch.tensor([[res, res, 0, 0, res, res]], device=device).expand(int(pref.sum()), 6)
            with torch.no_grad():
                eps = unet(x_t[pref].to(unet.dtype), t[pref], encoder_hidden_states=prompt_embeds[pref].to(unet.dtype),
                           added_cond_kwargs={"text_embeds": text[pref].to(unet.dtype),
                                              "time_ids": time_ids.to(unet.dtype)}).sample
            sums[f"consistency_{beta:g}"] = float(consistency_loss(eps.float(), grad[pref].detach(), sigma_t[pref],
                                                                   noise[pref]).sum())
        # the guidance term where the sampler uses it
        alpha_s, sigma_s = vp_coefficients(alphas_cumprod, t_sampler)
        x_s = noised(x0, noise, alpha_s, sigma_s)
        _, grad_s = grad_log_h_of(network, x_s, text, t_sampler, beta_t, torch.ones(n, device=device))
        sums[f"term_sq_{beta:g}"] = float((sigma_s.view(-1, 1, 1, 1) * grad_s).pow(2).flatten(1).mean(1).sum())
    return sums


def evaluate(cfg: GuidanceEvalConfig) -> dict:
    state = PartialState()
    pipe, preset = load_pipeline(cfg.model, device=str(state.device), dtype=torch.float32)
    network = GuidanceNetwork.from_pretrained(cfg.network).to(state.device).eval()
    data = load_cache(cfg.cache, state.device)
    alphas_cumprod = pipe.scheduler.alphas_cumprod.to(state.device).float()
    pipe.scheduler.set_timesteps(preset.steps if preset else 1)
    sampler_t = pipe.scheduler.timesteps.long().cpu().numpy()
    res = preset.resolution if preset else pipe.default_sample_size * pipe.vae_scale_factor
    n_blocks = -(-len(data["rewards"]) // cfg.block)
    mine = [_block_sums(cfg, b, data, network, pipe.unet, alphas_cumprod, sampler_t, res)
            for b in range(state.process_index, n_blocks, state.num_processes)]
    blocks = gather_object(mine) if state.num_processes > 1 else mine
    total = {k: sum(s.get(k, 0) for s in blocks) for k in blocks[0]}
    m = total["rows"]

    def corr(name: str) -> float:
        cov = total[f"vr_{name}"] / m - total[f"v_{name}"] * total["r"] / m**2
        var_v, var_r = total[f"vv_{name}"] / m - (total[f"v_{name}"] / m) ** 2, total["rr"] / m - (total["r"] / m) ** 2
        return float(cov / max(var_v * var_r, 1e-30) ** 0.5)

    report = {"network": str(cfg.network), "cache": str(cfg.cache), "images": m,
              "processes": state.num_processes, "seed": cfg.seed,
              "reward_readout_corr": {"t0": corr("t0"), "tmax": corr("tmax")}, "by_beta": {}}
    rewards = data["rewards"].double()
    for beta in cfg.betas:
        # the best log h that ignores x_t and the caption: u = log mean exp(r/β), whose L_guidance is 1 + u
        constant = float(1 + torch.logsumexp(rewards / beta, 0) - np.log(len(rewards)))
        report["by_beta"][f"{beta:g}"] = {
            "l_guidance": total[f"guidance_{beta:g}"] / total["rows"],
            "l_guidance_best_constant": constant,
            "l_consistency_eta1": total.get(f"consistency_{beta:g}", float("nan")) / max(total["preferred"], 1),
            "guidance_term_rms_at_sampler_t": (total[f"term_sq_{beta:g}"] / total["rows"]) ** 0.5}
    if state.is_main_process:
        print(json.dumps(report))
        if cfg.out is not None:
            Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
            Path(cfg.out).write_text(json.dumps(report, indent=1) + "\n")
    return report
