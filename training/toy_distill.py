"""Distil toy-sd3 into a few-step, guidance-free student: rectified flow ("reflow") on the teacher's own pairs.

toy-sd3 trained from data needs 8 Euler steps with classifier-free guidance to read right on 80 % of held-out
captions; at 4 steps it reads right on about two thirds (measured 2026-11-28; ``docs/evaluation.md``).
SD3.5-Large-Turbo, the model it stands in for, is itself a distillate that samples in 4 steps without CFG. This
command makes toy-sd3 the same kind of model, in two resumable stages (``--work``):

1. **Pairs.** The teacher (the ``--init-from`` pipeline) samples ``--pairs`` latents with Euler at
   ``--teacher-steps`` and CFG ``--teacher-guidance``, each from its own noise ``z``, on the training pool's captions
   (a tenth of them empty: the teacher's unconditional sample, so the student keeps an unconditional branch).
   Held-out combinations never appear: the pool renders the training split only.
2. **Student.** The transformer, initialised from the teacher's, learns the straight line between each noise and
   its teacher sample: ``x_s = (1 - s) x0 + s z``, target ``z - x0`` (the rectified-flow loss on the teacher's
   coupling, Liu et al. 2022). That coupling is deterministic, so the learned flow is nearly straight and a few
   Euler steps integrate it well; the teacher's samples are already guided, so the student needs little or no CFG
   (toy-sd3's student reads right on 80 % of held-out captions at 4 steps without CFG, 89 % with CFG 2). ``s`` is
   one of the sigmas the student's sampler visits for ``--sampler-share`` of each batch, logit-normal otherwise.
   Text encoders and VAE stay frozen (the teacher's), so prompts mean what they meant; an EMA of the transformer is
   exported with the rest of the pipeline.

    python -m training toy-distill --init-from checkpoints/toy-sd3 --work runs/distill --pool runs/pool.npz \
        --export runs/distill-export --pairs 200000 --steps 8000 --max-minutes 8
"""

from __future__ import annotations

import json
import time

import torch
import torch.nn.functional as F
from diffusers import FlowMatchEulerDiscreteScheduler
from tqdm.auto import tqdm

from alignment.repeated_context import RepeatedContext

from .configs import DistillConfig
from .graphed_step import set_lr
from .loop import EMA, TrainingLoop, apply_gradients, lr_at
from .toy_base import flow_times
from .toy_pipeline import (
    Denoiser,
    export_continuation,
    load_pipeline_for_training,
    prepare_work,
    preset_of,
    prompt_embeddings,
    training_pool,
)
from .toy_pool import ScenePool, batch_rng

PAIRS_STAGE, STUDENT_STAGE = 4, 5  # batch_rng stage keys, apart from the VAE's (1), denoiser's (2), decoder's (3)


def sampler_sigmas(scheduler_config, steps: int) -> torch.Tensor:
    """The sigmas the pipeline's FlowMatchEulerDiscreteScheduler visits at ``steps`` steps, ending with 0."""
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(scheduler_config)
    scheduler.set_timesteps(steps)
    return scheduler.sigmas.float().cpu()


@torch.no_grad()
def teacher_sample(net, noise: torch.Tensor, cond: tuple, uncond: tuple, sigmas: torch.Tensor,
                   guidance: float) -> torch.Tensor:
    """Euler from ``noise`` over ``sigmas`` (as the pipeline samples), with classifier-free guidance when
    ``guidance`` > 1 (as the SD3 pipeline decides). ``cond``/``uncond``: (embeds, pooled) per row."""
    x = noise
    cfg = guidance > 1
    states = torch.cat([uncond[0], cond[0]]) if cfg else cond[0]
    pooled = torch.cat([uncond[1], cond[1]]) if cfg else cond[1]
    for s, s_next in zip(sigmas[:-1].tolist(), sigmas[1:].tolist()):
        inp = torch.cat([x, x]) if cfg else x
        t = torch.full((inp.shape[0],), s * 1000, device=x.device)
        v = net(hidden_states=inp, timestep=t, encoder_hidden_states=states, pooled_projections=pooled).sample.float()
        if cfg:
            v_u, v_c = v.chunk(2)
            v = v_u + guidance * (v_c - v_u)
        x = x + (s_next - s) * v
    return x


def make_pairs(cfg: DistillConfig, pipe, data: ScenePool, accelerator) -> dict:
    """Stage 1: (noise, teacher sample, caption ids) for ``cfg.pairs`` rows, saved to ``work/pairs.pt``."""
    path = cfg.work / "pairs.pt"
    if path.exists():
        pairs = torch.load(path, map_location=accelerator.device)
        made = (pairs["noise"].shape[0], pairs["teacher_steps"], pairs["teacher_guidance"])
        if made == (cfg.pairs, cfg.teacher_steps, cfg.teacher_guidance):
            return pairs
        print(f"{path}: made as (pairs, teacher steps, guidance) = {made}, not as asked: making them anew")
    device = accelerator.device
    channels = pipe.transformer.config.in_channels
    size = pipe.transformer.config.sample_size
    sigmas = sampler_sigmas(pipe.scheduler.config, cfg.teacher_steps)
    net = RepeatedContext(pipe.transformer).eval()
    noises, samples, all_ids = [], [], []
    with torch.no_grad():
        empty = prompt_embeddings(pipe, data.empty_ids[None].to(device))
        for chunk, start in enumerate(tqdm(range(0, cfg.pairs, cfg.pair_batch), desc="teacher pairs")):
            b = min(cfg.pair_batch, cfg.pairs - start)
            _, ids = data._draw(cfg.seed, PAIRS_STAGE, chunk, b)
            gen = torch.Generator(device).manual_seed(cfg.seed * 1_000_003 + chunk)
            noise = torch.randn(b, channels, size, size, generator=gen, device=device)
            with accelerator.autocast():
                cond = prompt_embeddings(pipe, ids)
                uncond = (empty[0].expand(b, -1, -1), empty[1].expand(b, -1))
                x0 = teacher_sample(net, noise, cond, uncond, sigmas, cfg.teacher_guidance)
            noises.append(noise.half())
            samples.append(x0.half())
            all_ids.append(ids)
    pairs = {"noise": torch.cat(noises), "x0": torch.cat(samples), "ids": torch.cat(all_ids),
             "teacher_steps": cfg.teacher_steps, "teacher_guidance": cfg.teacher_guidance}
    if accelerator.is_main_process:  # every process makes the same pairs; one writes them
        cfg.work.mkdir(parents=True, exist_ok=True)
        torch.save(pairs, path)
    return pairs


def student_times(n: int, sampler: torch.Tensor, share: float, logit_mean: float, device) -> torch.Tensor:
    """``share`` of the sigmas drawn from the sampler's own (``sampler``, without the final 0), the rest
    logit-normal with mean ``logit_mean``."""
    s = flow_times(n, 0.0, device, logit_mean)
    if share == 0:
        return s
    pick = sampler.to(device)[torch.randint(0, len(sampler), (n,), device=device)]
    return torch.where(torch.rand(n, device=device) < share, pick, s)


def run(cfg: DistillConfig) -> bool:
    """Make the pairs (once), train (or resume) the student, export it. True when all steps are done."""
    started = time.time()
    deadline = started + 60 * cfg.max_minutes
    accelerator = prepare_work(cfg)
    preset = preset_of(cfg.init_from)
    if preset != "toy-sd3":
        raise ValueError(f"--init-from {cfg.init_from}: toy-distill distils SD3-class (flow) pipelines, not {preset}")
    pipe = load_pipeline_for_training(preset, cfg.init_from)
    pipe.to(accelerator.device, torch.float32)
    for module in (pipe.vae, pipe.text_encoder, pipe.text_encoder_2):
        module.requires_grad_(False).eval()
    pipe.transformer.requires_grad_(False)
    data = training_pool(cfg, accelerator, pipe.tokenizer)
    model = Denoiser(pipe)  # the text encoders inside are frozen: only the transformer learns
    params = list(pipe.transformer.parameters())
    ema = EMA(params, cfg.ema_decay)
    loop = TrainingLoop(accelerator, cfg.work / "student", cfg.steps, deadline, name=f"{preset} student",
                        save_every=cfg.save_every, ema=ema)
    pairs = None if loop.done else make_pairs(cfg, pipe, data, accelerator)  # a larger --steps goes on
    accelerator.print(f"{preset} distill: pairs ready after {time.time() - started:.0f} s, student from step "
                      f"{loop.step}")
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=1e-4)
    model, opt = accelerator.prepare(model, opt)
    ema.to(accelerator.device)
    sampler = sampler_sigmas(pipe.scheduler.config, cfg.student_steps)[:-1]

    def step_fn(step: int) -> torch.Tensor:
        rng = batch_rng(cfg.seed, STUDENT_STAGE, step, rank=accelerator.process_index)
        idx = torch.from_numpy(rng.integers(0, pairs["noise"].shape[0], cfg.batch_size)).to(accelerator.device)
        z, x0, ids = pairs["noise"][idx].float(), pairs["x0"][idx].float(), pairs["ids"][idx]
        b = z.shape[0]
        s = student_times(b, sampler, cfg.sampler_share, cfg.logit_mean, z.device).view(b, 1, 1, 1)
        set_lr(opt, lr_at(cfg.lr, step, cfg.steps, warmup=200))
        with accelerator.autocast():
            pred = model((1 - s) * x0 + s * z, s.flatten() * 1000, ids)
            loss = F.mse_loss(pred.float(), z - x0)
        apply_gradients(accelerator, loss, opt, clip=params)
        return loss

    def export(step: int, finished: bool) -> None:
        export_continuation(pipe, cfg, "distill", {
            "steps": step, "finished": finished, "batch_size": cfg.batch_size, "lr": cfg.lr,
            "pairs": cfg.pairs, "teacher_steps": cfg.teacher_steps, "teacher_guidance": cfg.teacher_guidance,
            "student_steps": cfg.student_steps, "sampler_share": cfg.sampler_share, "logit_mean": cfg.logit_mean,
            "note": "reflow on the teacher's guided samples (python -m training toy-distill)"})

    finished = loop.run(step_fn, export=export if cfg.export is not None else None)
    accelerator.print(json.dumps({"preset": preset, "student_step": loop.step, "done": finished,
                                  "minutes": round((time.time() - started) / 60, 2)}))
    return finished
