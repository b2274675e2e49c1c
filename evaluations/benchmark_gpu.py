"""Real scale on one GPU: the full-size architectures with random weights, bf16, the project's own
samplers and training step, each configuration measured side by side with its baseline in one run.

    python -m evaluations.benchmark_gpu --sections sdxl sd35 training

* ``sdxl``: SDXL-Turbo at 512², one step — baseline, guided (the SDXL-size guidance network, about 73 MB) and
  Tweedie/backprop (through the full UNet, the full VAE decoder and a full PickScore-architecture reward), at
  batch 1 and 8: seconds per image and peak memory, as ratios to the baseline.
* ``sd35``: SD3.5-Large-Turbo at 1024², four steps — baseline, best-of-N and IS-guided for each N, every bank made
  cold (a fresh seed), in batches of ``--bank-batch``: seconds per image and peak memory.
* ``training``: one guidance-network step (``training.guidance.Objective``: both loss terms, the frozen UNet for
  L_consistency) against one Diffusion-DPO step (policy UNet forward and backward on both images of each pair,
  frozen reference UNet forward, AdamW), same pairs, bf16; and the one-off cost of caching latents, text embeddings
  and rewards per image (``training.guidance_data.encode_rows``), amortised over a Pick-a-Pic-v1 epoch.

Peak memory: ``torch.cuda.max_memory_allocated`` over the call, absolute and above what was held before it.
Writes ``evaluations/results/benchmark_gpu.json`` (``--out``) with the card's name.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from alignment import load_pipeline
from alignment.diffusion_sampler import sample_baseline, sample_guided, sample_tweedie
from alignment.flow_sampler import baseline, best_of_n, sample_is
from alignment.guidance_network import GuidanceNetwork
from alignment.presets import find_preset
from alignment.rewards import load_reward
from alignment.sample_bank import SampleBank
from toyworld import sample_captions

from . import real_scale
from .benchmarking import PeakMemory, machine

RESULTS = Path(__file__).resolve().parent / "results"
BF16 = torch.bfloat16
PICK_A_PIC_V1_PAIRS = 583_000  # training pairs of yuvalkirstain/pickapic_v1 (rounded as the issue quotes it)


class Scale:
    """What is benchmarked: the real architectures on CUDA, or (``--smoke``) the toy presets on the CPU, which
    runs every line of this script in seconds (tests/test_benchmark_gpu.py)."""

    def __init__(self, smoke: bool):
        self.smoke = smoke
        self.device = torch.device("cpu" if smoke else "cuda")
        self.dtype = torch.float32 if smoke else BF16

    def diffusion(self):
        if self.smoke:
            return load_pipeline("toy-sdxl", device="cpu")[0], find_preset("toy-sdxl")
        return real_scale.sdxl_turbo("cuda", BF16), find_preset("sdxl-turbo")

    def flow(self):
        if self.smoke:
            return load_pipeline("toy-sd3", device="cpu")[0], find_preset("toy-sd3")
        return real_scale.sd35_large_turbo("cuda", BF16), find_preset("sd3.5-large-turbo")

    def reward(self):
        return load_reward("toy-pickscore") if self.smoke else real_scale.pickscore("cuda", BF16)

    def network(self) -> GuidanceNetwork:
        return GuidanceNetwork.toy_size() if self.smoke else GuidanceNetwork.sdxl_size()


SCALE = Scale(smoke=False)


def synchronize() -> None:
    if SCALE.device.type == "cuda":
        torch.cuda.synchronize()


def measure(fn, *args, **kwargs) -> dict:
    """One call: seconds (synchronised) and peak memory, absolute and above the start, in GiB."""
    with PeakMemory(SCALE.device) as mem:
        start = time.perf_counter()
        fn(*args, **kwargs)
        synchronize()
        seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() if SCALE.device.type == "cuda" else mem.top
    return {"seconds": seconds, "peak_above_gib": mem.peak / 2**30, "peak_gib": peak / 2**30}


def interleaved(configs: dict, repeats: int, warmup: int) -> dict:
    """Every config ``warmup`` times, then ``repeats`` rounds of all configs in turn; medians and worst peaks."""
    for _ in range(warmup):
        for fn in configs.values():
            fn(10**6)
    runs = {name: [] for name in configs}
    for r in range(repeats):
        for name, fn in configs.items():
            runs[name].append(measure(fn, r))
    return {name: {"seconds": statistics.median(m["seconds"] for m in ms),
                   "peak_gib": max(m["peak_gib"] for m in ms),
                   "peak_above_gib": max(m["peak_above_gib"] for m in ms),
                   "all_seconds": [round(m["seconds"], 4) for m in ms]} for name, ms in runs.items()}


def free(*objects) -> None:
    del objects
    gc.collect()
    if SCALE.device.type == "cuda":
        torch.cuda.empty_cache()


# ------------------------------------------------------------------------------------------------------------------
def bench_sdxl(args) -> dict:
    pipe, preset = SCALE.diffusion()
    reward = SCALE.reward()
    network = SCALE.network()
    network_mb = sum(p.numel() for p in network.parameters()) * 4 / 1e6
    network = network.to(SCALE.device, SCALE.dtype).eval()
    out = {"unet_parameters": real_scale.n_parameters(pipe.unet), "guidance_network_fp32_mb": network_mb,
           "reward_parameters": real_scale.n_parameters(reward.model), "steps": preset.steps,
           "resolution": preset.resolution, "batches": {}}
    captions = sample_captions(max(args.sdxl_batches), seed=3)
    for batch in args.sdxl_batches:
        prompts = captions[:batch]
        configs = {
            "baseline": lambda s, p=prompts: sample_baseline(pipe, p, seed=s, preset=preset),
            "guided": lambda s, p=prompts: sample_guided(pipe, p, network=network, beta=1.0, eta=1.0, seed=s,
                                                         preset=preset),
            "tweedie": lambda s, p=prompts: sample_tweedie(pipe, p, reward=reward, beta=1.0, seed=s, preset=preset),
        }
        res = interleaved(configs, args.repeats, args.warmup)
        base = res["baseline"]
        for name, r in res.items():
            r["seconds_per_image"] = r["seconds"] / batch
            r["time_ratio"] = r["seconds"] / base["seconds"]
            r["peak_ratio"] = r["peak_gib"] / base["peak_gib"]
        out["batches"][str(batch)] = res
        print(f"{preset.name} {preset.resolution}², batch {batch}: " + ", ".join(
            f"{n} {r['seconds_per_image'] * 1e3:.1f} ms/image ({r['time_ratio']:.3f}×), peak {r['peak_gib']:.1f} GiB "
            f"({r['peak_ratio']:.2f}×)" for n, r in res.items()), flush=True)
    if args.profile:
        out["guidance_term_ms"] = profile_guided(pipe, preset, network, captions)
    free(pipe, reward, network)
    return out


def profile_guided(pipe, preset, network, captions) -> dict:
    """Where a guided call's extra time goes: the guidance term alone (forward and input gradient of the network)
    timed per batch, and torch.profiler tables of one baseline and one guided call at batch 1."""
    from torch.profiler import ProfilerActivity, profile

    from alignment.diffusion_guidance import grad_log_h_of

    term = {}
    for batch in (1, 8):
        x = torch.randn(batch, 4, preset.resolution // 8, preset.resolution // 8, device=SCALE.device, dtype=SCALE.dtype)
        text = torch.randn(batch, network.config.text_dim, device=SCALE.device, dtype=SCALE.dtype)
        t = torch.full((batch,), 999, device=SCALE.device)
        for _ in range(3):
            grad_log_h_of(network, x, text, t, 1.0, 1.0)
        runs = [measure(grad_log_h_of, network, x, text, t, 1.0, 1.0)["seconds"] for _ in range(20)]
        term[str(batch)] = statistics.median(runs) * 1e3
    print(f"guidance term alone (forward + input gradient): {term} ms", flush=True)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if SCALE.device.type == "cuda" else [])
    for name, fn in (("baseline", lambda: sample_baseline(pipe, captions[:1], seed=0, preset=preset)),
                     ("guided", lambda: sample_guided(pipe, captions[:1], network=network, beta=1.0, eta=1.0, seed=0,
                                                      preset=preset))):
        fn()
        with profile(activities=activities) as prof:
            fn()
            synchronize()
        print(f"--- profile: {name}, batch 1", flush=True)
        print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=14, max_name_column_width=48), flush=True)
    return term


# ------------------------------------------------------------------------------------------------------------------
def bench_sd35(args) -> dict:
    pipe, preset = SCALE.flow()
    reward = SCALE.reward()
    prompt = sample_captions(1, seed=5)

    def bank():
        return SampleBank(pipe, reward, preset=preset, batch_size=args.bank_batch)

    out = {"transformer_parameters": real_scale.n_parameters(pipe.transformer), "steps": preset.steps,
           "resolution": preset.resolution, "bank_batch": args.bank_batch, "beta": args.beta, "rows": []}
    sample_is(pipe, prompt, seed=10**6, n=2, beta=args.beta, bank=bank())  # warm-up
    base = measure(baseline, pipe, prompt, seed=1, bank=bank())
    print(f"{preset.name} {preset.resolution}², baseline: {base['seconds']:.2f} s, peak {base['peak_gib']:.1f} GiB", flush=True)
    out["baseline"] = base
    for n in args.ns:
        bon_bank, is_bank = bank(), bank()
        bon = measure(best_of_n, pipe, prompt, seed=2 * n, n=n, bank=bon_bank)
        holder = {}

        def guided(seed, b, n=n):
            holder["result"] = sample_is(pipe, prompt, seed=seed, n=n, beta=args.beta, bank=b)

        cold = measure(guided, 2 * n + 1, is_bank)
        warm = measure(lambda: sample_is(pipe, prompt, seed=2 * n + 1, n=n, beta=2 * args.beta, bank=is_bank))
        row = {"n": n, "bon": bon, "is": cold, "is_new_beta": warm, "is_over_bon": cold["seconds"] / bon["seconds"],
               "bon_seconds_per_base": bon["seconds"] / base["seconds"],
               "bank_bytes": is_bank.get(prompt[0], 2 * n + 1, n).nbytes,
               "ess_b_mean": float(holder["result"].ess_b.mean())}
        out["rows"].append(row)
        print(f"N={n:3d}: best-of-N {bon['seconds']:.2f} s (peak {bon['peak_gib']:.1f} GiB), IS {cold['seconds']:.2f} s "
              f"(peak {cold['peak_gib']:.1f} GiB), IS/BoN {row['is_over_bon']:.3f}; new β on the bank "
              f"{warm['seconds']:.2f} s", flush=True)
        free(bon_bank, is_bank)
    free(pipe, reward)
    return out


# ------------------------------------------------------------------------------------------------------------------
def dpo_loss(policy, reference, x0_w, x0_l, prompt_embeds, added, t, noise, alphas_cumprod, beta_dpo=5000.0):
    """Diffusion-DPO (Wallace et al. 2023): −log σ(−β/2 · [(‖ε_θ(w) − ε‖² − ‖ε_θ(l) − ε‖²) − (same for the reference)])."""
    a = alphas_cumprod[t].view(-1, 1, 1, 1)
    x = torch.cat([x0_w, x0_l])
    eps = torch.cat([noise, noise])
    tt = torch.cat([t, t])
    x_t = (a.repeat(2, 1, 1, 1).sqrt() * x + (1 - a.repeat(2, 1, 1, 1)).sqrt() * eps).to(x0_w.dtype)
    pe = torch.cat([prompt_embeds, prompt_embeds])
    cond = {k: torch.cat([v, v]) for k, v in added.items()}
    pred = policy(x_t, tt, encoder_hidden_states=pe, added_cond_kwargs=cond).sample
    with torch.no_grad():
        ref = reference(x_t, tt, encoder_hidden_states=pe, added_cond_kwargs=cond).sample
    err = ((pred.float() - eps.float()) ** 2).mean(dim=(1, 2, 3))
    ref_err = ((ref.float() - eps.float()) ** 2).mean(dim=(1, 2, 3))
    n = x0_w.shape[0]
    diff = (err[:n] - err[n:]) - (ref_err[:n] - ref_err[n:])
    return -F.logsigmoid(-0.5 * beta_dpo * diff).mean()


def bench_training(args) -> dict:
    from training.graphed_step import GraphedStep, capturable_adamw, consistency_rows
    from training.guidance import Objective, consistency_row_count, draw_conditions
    from training.guidance_data import encode_rows, prepare_encoders

    pipe, preset = SCALE.diffusion()
    reward = SCALE.reward()
    dev, dtype = SCALE.device, SCALE.dtype
    res = preset.resolution
    latent = (pipe.unet.config.in_channels, res // pipe.vae_scale_factor, res // pipe.vae_scale_factor)
    text = (pipe.tokenizer.model_max_length, pipe.unet.config.cross_attention_dim)
    pooled = pipe.text_encoder_2.config.projection_dim
    pairs = args.train_pairs
    g = torch.Generator(dev).manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, device=dev, generator=g)

    n_train = pipe.scheduler.config.num_train_timesteps
    ac = pipe.scheduler.alphas_cumprod.to(dev)

    # the guidance step: both images of every pair, as the cache holds them
    network = SCALE.network().to(dev)
    objective = Objective(network, pipe.unet, ac, res).to(dev)  # its time ids on the device, as the trainer has them
    opt_g = torch.optim.AdamW(network.parameters(), lr=1e-4)
    batches = {}

    def batch_for(gpairs):
        """The cached tensors of a batch of ``gpairs`` pairs (both images of each), made once."""
        images = 2 * gpairs
        if gpairs not in batches:
            batches[gpairs] = dict(x0=randn(images, *latent), prompt_embeds=randn(images, *text).to(dtype),
                                   text_embeds=randn(images, pooled).to(dtype), rewards=randn(images) + 20,
                                   c_xt=randn(images, *latent).half(), c_residual=randn(images, *latent).half(),
                                   c_t=torch.randint(0, n_train, (images,), device=dev))
        return batches[gpairs]

    def guidance_step(seed, fraction, gpairs, from_cache=False):
        images = 2 * gpairs
        batch = batch_for(gpairs)
        rng = np.random.default_rng(seed)
        eta_host = rng.uniform(0, 2, images) * (rng.random(images) >= 0.25)
        rows = np.flatnonzero((np.arange(images) % 2 == 0) & (eta_host > 0) & (rng.random(images) < fraction))
        eta = torch.from_numpy(eta_host).float().to(dev)
        beta = torch.from_numpy(np.exp(rng.uniform(-3, 1.6, images))).float().to(dev)
        r = torch.from_numpy(rows).to(dev)
        cached = ({"x_t": batch["c_xt"][r], "t": batch["c_t"][r], "residual": batch["c_residual"][r]}
                  if from_cache else None)
        with torch.autocast(dev.type, dtype=dtype, enabled=dev.type == "cuda"):
            loss, _, _ = objective(batch["x0"], batch["prompt_embeds"], batch["text_embeds"], batch["rewards"],
                                   torch.randint(0, n_train, (images,), device=dev), randn(*batch["x0"].shape),
                                   beta, eta, r, 1.0 / fraction, cached)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), 1.0)  # as training/guidance.py does
        opt_g.step()
        opt_g.zero_grad(set_to_none=True)

    # The trainer's step on one CUDA process: cached targets, a fixed number of L_consistency rows
    # (training/guidance.py), replayed from a CUDA graph (training/graphed_step.py).
    opt_graph = capturable_adamw(network.parameters(), 1e-4, 1e-4, dev)

    def graph_body(key, x0, prompt_embeds, text_embeds, rewards, t, noise, beta, eta, rows, row_weights, c_xt, c_t,
                   c_residual):
        with torch.autocast(dev.type, dtype=dtype, enabled=dev.type == "cuda", cache_enabled=False):
            loss, _, _ = objective(x0, prompt_embeds, text_embeds, rewards, t, noise, beta, eta, rows,
                                   cached={"x_t": c_xt, "t": c_t, "residual": c_residual}, row_weights=row_weights)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), 1.0)
        opt_graph.step()
        return (loss.detach(),)

    graphed = GraphedStep(graph_body, list(network.parameters()), opt_graph)

    def graphed_step(seed, gpairs):
        images = 2 * gpairs
        batch = batch_for(gpairs)
        rng = np.random.default_rng(seed)
        beta_h, eta_h = draw_conditions(rng, images, (0.05, 5.0), (0.0, 2.0))
        k = consistency_row_count(images, 0.5, 1.0)
        rows_h, w_h = consistency_rows((np.arange(images) % 2 == 0) & (eta_h > 0), k, rng)
        r = torch.from_numpy(rows_h).to(dev)
        graphed(gpairs, x0=batch["x0"], prompt_embeds=batch["prompt_embeds"], text_embeds=batch["text_embeds"],
                rewards=batch["rewards"], t=torch.randint(0, n_train, (images,), device=dev),
                noise=randn(*batch["x0"].shape), beta=torch.from_numpy(beta_h).float().to(dev),
                eta=torch.from_numpy(eta_h).float().to(dev), rows=r, row_weights=torch.from_numpy(w_h).float().to(dev),
                c_xt=batch["c_xt"][r], c_t=batch["c_t"][r], c_residual=batch["c_residual"][r])

    # the Diffusion-DPO step on the same pairs: policy (trainable, bf16, AdamW) and a frozen reference copy
    reference = copy.deepcopy(pipe.unet).requires_grad_(False)
    policy = pipe.unet.requires_grad_(True).train()
    opt_d = torch.optim.AdamW(policy.parameters(), lr=1e-8)
    time_ids = torch.tensor([[res, res, 0, 0, res, res]], device=dev, dtype=dtype).expand(pairs, 6)
    x0_w, x0_l = randn(pairs, *latent).to(dtype), randn(pairs, *latent).to(dtype)
    pe, te = randn(pairs, *text).to(dtype), randn(pairs, pooled).to(dtype)

    def dpo_step(seed):
        t = torch.randint(0, n_train, (pairs,), device=dev)
        loss = dpo_loss(policy, reference, x0_w, x0_l, pe, {"text_embeds": te, "time_ids": time_ids}, t,
                        randn(pairs, *latent).to(dtype), ac)
        loss.backward()
        opt_d.step()
        opt_d.zero_grad(set_to_none=True)

    configs, step_pairs = {"dpo_full_unet": dpo_step}, {"dpo_full_unet": pairs}
    for gp in dict.fromkeys([pairs, *args.guidance_pairs]):
        for f in args.consistency_fractions:
            name = f"guidance_{gp}pairs_consistency_{f:g}"
            configs[name], step_pairs[name] = (lambda s, f=f, gp=gp: guidance_step(s, f, gp)), gp
        name = f"guidance_{gp}pairs_cached_targets"  # L_consistency on every eligible row, from the data step
        configs[name], step_pairs[name] = (lambda s, gp=gp: guidance_step(s, 1.0, gp, from_cache=True)), gp
        if dev.type == "cuda":
            name = f"guidance_{gp}pairs_cached_targets_cuda_graph"  # what `python -m training guidance` runs
            configs[name], step_pairs[name] = (lambda s, gp=gp: graphed_step(s, gp)), gp
    steps = interleaved(configs, args.repeats, args.warmup)
    dpo = steps["dpo_full_unet"]["seconds"]
    for name, r in steps.items():
        r["pairs"] = step_pairs[name]
        r["seconds_per_pair"] = r["seconds"] / r["pairs"]
        r["ratio_to_dpo"] = r["seconds"] / dpo
        r["per_pair_ratio_to_dpo"] = r["seconds_per_pair"] / (dpo / pairs)
        print(f"training step: {name} ({r['pairs']} pairs) {r['seconds'] * 1e3:.1f} ms = {r['ratio_to_dpo']:.3f} of a "
              f"DPO step of {pairs} pairs, {r['per_pair_ratio_to_dpo']:.3f} per pair; peak {r['peak_gib']:.1f} GiB",
              flush=True)
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
        for label, from_cache in (("consistency targets computed", False), ("consistency targets cached", True)):
            with profile(activities=activities) as prof:
                guidance_step(0, 1.0, pairs, from_cache=from_cache)
                synchronize()
            print(f"--- profile: one guidance step, {pairs} pairs, {label}", flush=True)
            for key in ("cpu_time_total", "self_cuda_time_total" if dev.type == "cuda" else "self_cpu_time_total"):
                print(prof.key_averages().table(sort_by=key, row_limit=20, max_name_column_width=60), flush=True)
    policy.requires_grad_(False).eval()
    graphed.graphs.clear()
    free(reference, opt_d, opt_g, opt_graph, objective)

    # the one-off cache: VAE latent, both text encoders and the reward, per image (512² JPEG-size PIL images), as
    # `python -m training guidance-cache` makes it (its VAE encoder compiled on CUDA; DPO's encoding below reads the
    # same compiled encoder)
    rng = np.random.default_rng(0)
    rows = [SimpleNamespace(caption=c, image_0=Image.fromarray(rng.integers(0, 255, (res, res, 3), dtype=np.uint8)),
                            image_1=Image.fromarray(rng.integers(0, 255, (res, res, 3), dtype=np.uint8)),
                            label_0=1.0, label_1=0.0, model_0="a", model_1="b")
            for c in sample_captions(args.cache_pairs, seed=9)]
    prepare_encoders(pipe)
    encode_rows(pipe, reward, rows, (), args.cache_batch)  # warm-up at the measured batches (and the compile)
    cache = [measure(encode_rows, pipe, reward, rows, (), args.cache_batch) for _ in range(args.repeats)]
    per_image = statistics.median(c["seconds"] for c in cache) / (2 * len(rows))
    # the part of the cache any trainer needs: Diffusion-DPO's trainer also VAE-encodes every image and encodes every
    # caption once per epoch (on the fly or cached); only the reward (and the consistency targets) are ours alone
    no_reward = SimpleNamespace(score=lambda images, captions: torch.zeros(len(images)))
    encode = [measure(encode_rows, pipe, no_reward, rows, (), args.cache_batch) for _ in range(args.repeats)]
    encode_per_image = statistics.median(c["seconds"] for c in encode) / (2 * len(rows))
    # what --consistency-draws K adds to the data step: K UNet calls per preferred image (half of them)
    from training.guidance_data import consistency_targets

    n_img = 2 * len(rows)
    lat, pe_c, te_c = randn(n_img, *latent), randn(n_img, *text).to(dtype), randn(n_img, pooled).to(dtype)
    pref = torch.arange(n_img) % 2 == 0

    def targets():
        for s_ in range(0, n_img, args.cache_batch):
            part = slice(s_, s_ + args.cache_batch)
            consistency_targets(pipe.unet, pipe.scheduler.alphas_cumprod, lat[part], pe_c[part], te_c[part],
                                pref[part], args.consistency_draws, res, seed=s_)

    targets()  # warm-up
    targets_per_image = statistics.median(measure(targets)["seconds"] for _ in range(args.repeats)) / n_img
    free(pipe, reward)

    dpo_epoch = PICK_A_PIC_V1_PAIRS * steps["dpo_full_unet"]["seconds_per_pair"]
    encode_epoch = 2 * PICK_A_PIC_V1_PAIRS * encode_per_image
    cache_epoch = 2 * PICK_A_PIC_V1_PAIRS * per_image
    overall = {}
    targets_epoch = 2 * PICK_A_PIC_V1_PAIRS * targets_per_image
    for name, r in steps.items():
        if name != "dpo_full_unet":
            ours = cache_epoch + PICK_A_PIC_V1_PAIRS * r["seconds_per_pair"]
            ours += targets_epoch if "cached_targets" in name else 0.0
            overall[name] = {"guidance_epoch_gpu_hours": ours / 3600, "saving_vs_dpo": 1 - ours / dpo_epoch,
                             "saving_vs_dpo_with_encoding": 1 - ours / (dpo_epoch + encode_epoch)}
    print(f"cache: {per_image * 1e3:.1f} ms per image (VAE + text encoders alone: {encode_per_image * 1e3:.1f} ms) = "
          f"{cache_epoch / 3600:.2f} GPU-hours per epoch; DPO epoch {dpo_epoch / 3600:.2f} GPU-hours "
          f"({(dpo_epoch + encode_epoch) / 3600:.2f} with its own encoding); overall " + ", ".join(
              f"{k}: {v['guidance_epoch_gpu_hours']:.2f} GPU-hours, saving {v['saving_vs_dpo']:.1%} "
              f"({v['saving_vs_dpo_with_encoding']:.1%})" for k, v in overall.items()), flush=True)
    print(f"cached consistency targets (K = {args.consistency_draws}): {targets_per_image * 1e3:.1f} ms per image "
          f"= {targets_epoch / 3600:.2f} GPU-hours per epoch", flush=True)
    return {"pairs_per_step": pairs, "steps": steps, "cache_seconds_per_image": per_image,
            "encode_seconds_per_image": encode_per_image, "dpo_encoding_epoch_gpu_hours": encode_epoch / 3600,
            "consistency_draws": args.consistency_draws, "targets_seconds_per_image": targets_per_image,
            "targets_epoch_gpu_hours": targets_epoch / 3600,
            "cache_batch": args.cache_batch, "epoch_pairs": PICK_A_PIC_V1_PAIRS, "dpo_epoch_gpu_hours": dpo_epoch / 3600,
            "cache_epoch_gpu_hours": cache_epoch / 3600, "overall": overall,
            "assumptions": "one epoch each over the same pairs, each method at the batch named in its row (DPO at "
                           f"{pairs} pairs per step: a larger DPO batch may cost less per pair, so compare per-pair "
                           "numbers at the batches measured); DPO in pure bf16 (weights, gradients and AdamW states); "
                           "the guidance network trains in fp32 under bf16 autocast"}


def render(report: dict) -> str:
    """The report as markdown tables (what README's Performance section quotes)."""
    m = report.get("machine", {})
    lines = [f"# Real-scale benchmark: {m.get('gpu') or m.get('cpu')}, {report.get('dtype')}, {report.get('weights')}", ""]
    if "sdxl" in report:
        r = report["sdxl"]
        lines += [f"## SDXL-Turbo, {r['resolution']}², {r['steps']} step (`{report['commands'].get('sdxl', '')}`)", "",
                  f"UNet {r['unet_parameters'] / 1e9:.2f} B parameters; guidance network "
                  f"{r['guidance_network_fp32_mb']:.1f} MB (fp32 size; run in bf16); Tweedie through the full VAE "
                  f"decoder and a {r['reward_parameters'] / 1e9:.2f} B-parameter PickScore-architecture reward.", "",
                  "| batch | method | ms per image | × baseline | peak GiB | × baseline peak | all runs (s) |",
                  "|---|---|---|---|---|---|---|"]
        for batch, res in r["batches"].items():
            for name, x in res.items():
                lines.append(f"| {batch} | {name} | {x['seconds_per_image'] * 1e3:.1f} | {x['time_ratio']:.3f} | "
                             f"{x['peak_gib']:.1f} | {x['peak_ratio']:.2f} | {x['all_seconds']} |")
        if "guidance_term_ms" in r:
            lines += ["", f"The guidance term alone (network forward + input gradient), ms per call by batch: "
                          f"{ {k: round(v, 2) for k, v in r['guidance_term_ms'].items()} }."]
        lines.append("")
    if "sd35" in report:
        r = report["sd35"]
        b = r["baseline"]
        lines += [f"## SD3.5-Large-Turbo, {r['resolution']}², {r['steps']} steps (`{report['commands'].get('sd35', '')}`)",
                  "", f"Transformer {r['transformer_parameters'] / 1e9:.2f} B parameters, no T5 (see "
                  f"evaluations/real_scale.py); banks made cold in batches of {r['bank_batch']}; β = {r['beta']}. "
                  f"Baseline (one image): {b['seconds']:.2f} s, peak {b['peak_gib']:.1f} GiB.", "",
                  "| N | best-of-N s | IS s | IS / best-of-N | new β on the bank s | peak GiB (BoN / IS) | bank MiB | "
                  "mean ESS(b) |", "|---|---|---|---|---|---|---|---|"]
        for x in r["rows"]:
            lines.append(f"| {x['n']} | {x['bon']['seconds']:.2f} | {x['is']['seconds']:.2f} | {x['is_over_bon']:.3f} | "
                         f"{x['is_new_beta']['seconds']:.2f} | {x['bon']['peak_gib']:.1f} / {x['is']['peak_gib']:.1f} | "
                         f"{x['bank_bytes'] / 2**20:.1f} | {x['ess_b_mean']:.2f} |")
        lines.append("")
    if "training" in report:
        r = report["training"]
        lines += [f"## Training cost, {r['pairs_per_step']} pairs per step (`{report['commands'].get('training', '')}`)",
                  "", "| step | pairs | ms | × DPO step | × DPO per pair | peak GiB |", "|---|---|---|---|---|---|"]
        for name, x in r["steps"].items():
            lines.append(f"| {name} | {x.get('pairs', r['pairs_per_step'])} | {x['seconds'] * 1e3:.1f} | "
                         f"{x['ratio_to_dpo']:.3f} | {x.get('per_pair_ratio_to_dpo', x['ratio_to_dpo']):.3f} | "
                         f"{x['peak_gib']:.1f} |")
        lines += ["", f"Caching latents, text embeddings and rewards: {r['cache_seconds_per_image'] * 1e3:.1f} ms per "
                      f"image (batch {r['cache_batch']}), {r['cache_epoch_gpu_hours']:.2f} GPU-hours for the "
                      f"{2 * r['epoch_pairs']:,} images of a {r['epoch_pairs']:,}-pair epoch. One DPO epoch: "
                      f"{r['dpo_epoch_gpu_hours']:.2f} GPU-hours"
                      + (f", {r['dpo_epoch_gpu_hours'] + r['dpo_encoding_epoch_gpu_hours']:.2f} with the VAE and "
                         f"text encoding its trainer needs too ({r['encode_seconds_per_image'] * 1e3:.1f} ms per "
                         "image)."
                         if "encode_seconds_per_image" in r else ".")
                      + (f" The cached L_consistency targets (K = {r['consistency_draws']} per preferred image) add "
                         f"{r['targets_seconds_per_image'] * 1e3:.1f} ms per image, {r['targets_epoch_gpu_hours']:.2f} "
                         "GPU-hours, to the rows named *_cached_targets." if "targets_seconds_per_image" in r else ""),
                  "",
                  "| guidance step | guidance epoch incl. cache, GPU-hours | saving vs DPO steps alone | "
                  "saving vs DPO steps + their encoding |", "|---|---|---|---|"]
        for f, x in r["overall"].items():
            label = f"{float(f):.0%} of preferred rows in L_consistency" if f.replace(".", "").isdigit() else f
            with_encoding = x.get("saving_vs_dpo_with_encoding")
            lines.append(f"| {label} | {x['guidance_epoch_gpu_hours']:.2f} | {x['saving_vs_dpo']:.1%} | "
                         + (f"{with_encoding:.1%} |" if with_encoding is not None else "not measured |"))
        lines += ["", f"Assumptions: {r['assumptions']}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluations.benchmark_gpu")
    parser.add_argument("--sections", nargs="+", default=["sdxl", "sd35", "training"],
                        choices=["sdxl", "sd35", "training"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--sdxl-batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--ns", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    parser.add_argument("--bank-batch", type=int, default=8)
    parser.add_argument("--beta", type=float, default=0.5)
    parser.add_argument("--train-pairs", type=int, default=4, help="pairs per training step (both methods)")
    parser.add_argument("--consistency-fractions", type=float, nargs="+", default=[1.0, 0.25])
    parser.add_argument("--consistency-draws", type=int, default=2,
                        help="cached L_consistency targets per preferred image (the *_cached_targets rows)")
    parser.add_argument("--guidance-pairs", type=int, nargs="*", default=[32],
                        help="also time the guidance step at these batches (pairs; it is launch-bound when small)")
    parser.add_argument("--cache-pairs", type=int, default=32)
    parser.add_argument("--cache-batch", type=int, default=32)
    parser.add_argument("--profile", action="store_true", help="sdxl: also profile a guided call at batch 1")
    parser.add_argument("--smoke", action="store_true",
                        help="the toy presets on the CPU instead of the real architectures on CUDA: checks the script")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--render", type=Path, default=None, metavar="JSON",
                        help="only write the markdown tables of an existing report (next to it, .md)")
    args = parser.parse_args(argv)
    if args.render is not None:
        args.render.with_suffix(".md").write_text(render(json.loads(args.render.read_text())))
        return 0
    global SCALE
    SCALE = Scale(args.smoke)
    if not args.smoke and not torch.cuda.is_available():
        raise SystemExit("error: this benchmark needs a CUDA GPU (the full-size models do not fit a CPU run); "
                         "--smoke runs it on the toy presets on the CPU")
    torch.backends.cuda.matmul.allow_tf32 = True
    out = args.out or RESULTS / ("benchmark_gpu_smoke.json" if args.smoke else "benchmark_gpu.json")
    report = json.loads(out.read_text()) if out.is_file() else {}
    report.update({"machine": machine(SCALE.device), "dtype": str(SCALE.dtype).removeprefix("torch."),
                   "weights": "toy presets (smoke run)" if args.smoke else "random, from alignment/model_configs"})
    report.setdefault("commands", {})
    sections = {"sdxl": bench_sdxl, "sd35": bench_sd35, "training": bench_training}
    for name in args.sections:
        started = time.time()
        report[name] = sections[name](args)
        report[name]["wall_seconds"] = round(time.time() - started, 1)
        report["commands"][name] = "python -m evaluations.benchmark_gpu " + " ".join(argv if argv is not None
                                                                                      else sys.argv[1:])
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1) + "\n")
        out.with_suffix(".md").write_text(render(report))  # after every section: a killed run keeps the rest
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
