"""Train the toy base models (``toy-sdxl``, ``toy-sd3``) on the toy-world renderer, with accelerate.

Two stages, each resumable from ``--work`` (``training/loop.py``): the VAE (reconstruction + a small KL term;
afterwards the latent scale and shift are measured on renders and written into its config), then the denoiser
together with both text encoders (VAE frozen; SDXL: epsilon prediction on the scaled-linear DDPM schedule; SD3:
rectified flow, ``x_t = (1-s) x0 + s eps``, target ``eps - x0``, logit-normal ``s``). Captions are dropped 10 % of
the time so classifier-free guidance stays possible. An EMA of the weights is what gets exported.

The run stops cleanly after ``--max-minutes`` (state saved; run the same command again to go on), and exports the
pipeline in diffusers format (fp16 weights) to ``--export`` whenever the denoiser stage ends or pauses.

    accelerate launch -m training toy-base --preset toy-sdxl --work runs/toy-sdxl --export checkpoints/toy-sdxl
"""

from __future__ import annotations

import json
import math
import time

import torch
import torch.nn.functional as F
from accelerate.utils import set_seed
from diffusers import DDPMScheduler

from . import toy_architectures
from .configs import ToyTrainConfig
from .graphed_step import set_lr
from .loop import EMA, Progress, TrainingLoop, apply_gradients, lr_at
from .toy_pipeline import (
    Denoiser,
    export_pipeline,
    load_pipeline_for_training,
    new_pipeline,
    prepare_work,
    toy_accelerator,
    training_pool,
)
from .toy_pool import ScenePool

VAE_STAGE, DENOISER_STAGE = 1, 2  # batch_rng stage keys


def reconstruction_loss(recon: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """The VAE's reconstruction term (MSE + 0.1 L1), shared by the VAE stage and the decoder fine-tune."""
    return F.mse_loss(recon, images) + 0.1 * F.l1_loss(recon, images)


class VAEObjective(torch.nn.Module):
    """Reconstruction (MSE + 0.1 L1) plus a KL term per latent element, behind one forward for accelerate."""

    def __init__(self, vae, kl_weight: float):
        super().__init__()
        self.vae, self.kl_weight = vae, kl_weight

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        posterior = self.vae.encode(images).latent_dist
        recon = self.vae.decode(posterior.sample()).sample.float()
        kl = posterior.kl().mean() / posterior.mean[0].numel()
        return reconstruction_loss(recon, images) + self.kl_weight * kl


def train_vae(cfg: ToyTrainConfig, pipe, data: ScenePool, deadline: float) -> bool:
    """The VAE stage (``work/vae``); when done, its weights are in ``vae.pt`` and its latent statistics in
    ``progress.json``. True when done."""
    accelerator = toy_accelerator()
    folder = cfg.work / "vae"
    vae = pipe.vae
    progress = Progress(folder)
    if progress.done:
        vae.load_state_dict(torch.load(folder / "vae.pt", map_location="cpu"))
        vae.register_to_config(**progress.data["latent_stats"])
        return True
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    objective, opt = accelerator.prepare(VAEObjective(vae, cfg.kl_weight), opt)
    loop = TrainingLoop(accelerator, folder, cfg.vae_steps, deadline, name=f"{cfg.preset} vae",
                        save_every=cfg.save_every, hint="lower --vae-lr and resume")

    def step_fn(step: int) -> torch.Tensor:
        images, _ = data.batch(cfg.seed, VAE_STAGE, step, cfg.batch_size, rank=accelerator.process_index)
        set_lr(opt, lr_at(cfg.vae_lr, step, cfg.vae_steps, warmup=200))
        with accelerator.autocast():
            loss = objective(images)
        apply_gradients(accelerator, loss, opt)
        return loss

    def complete() -> dict:
        stats = latent_stats(vae, data, cfg.preset, cfg.stats_samples)
        vae.register_to_config(**stats)
        if accelerator.is_main_process:
            torch.save(vae.state_dict(), folder / "vae.pt")
        return {"latent_stats": stats}

    return loop.run(step_fn, complete=complete)


@torch.no_grad()
def latent_stats(vae, data: ScenePool, preset: str, n: int = 4096) -> dict:
    """scaling_factor = 1 / std of the latents (SDXL); SD3 also centres them with shift_factor = their mean."""
    chunk = min(256, n)
    z = torch.cat([vae.encode(data.batch(0, 99, k, chunk)[0]).latent_dist.sample().float() for k in range(n // chunk)])
    if preset == "toy-sd3":
        return {"shift_factor": float(z.mean()), "scaling_factor": float(1.0 / z.std())}
    return {"scaling_factor": float(1.0 / z.std())}


def flow_times(n: int, uniform_share: float, device, mean: float = 0.0) -> torch.Tensor:
    """SD3's logit-normal sigmas (the normal's mean ``mean``; > 0 draws more high-noise sigmas), with a share
    ``uniform_share`` of them drawn uniformly on (0, 1) instead (the logit-normal puts 1.4 % of its mass below 0.1).
    On toy-sd3 the uniform share did not raise prompt fidelity; raising the mean to 1-1.5 did (docs/training-log.md, toy-sd3)."""
    s = torch.sigmoid(torch.randn(n, device=device) + mean)
    if uniform_share == 0:
        return s  # the default draws exactly what it drew before the option existed
    uniform = torch.rand(n, device=device) < uniform_share
    return torch.where(uniform, torch.rand(n, device=device), s)


def train_denoiser(cfg: ToyTrainConfig, pipe, data: ScenePool, deadline: float) -> bool:
    """The denoiser stage (``work/denoiser``), with the text encoders; exports the pipeline with the EMA weights
    when it ends or pauses. True when done."""
    accelerator = toy_accelerator()
    set_seed(cfg.seed + accelerator.process_index)  # each process draws its own noise and times
    folder = cfg.work / "denoiser"
    if Progress(folder).done:
        return True
    vae = pipe.vae.to(accelerator.device).requires_grad_(False).eval()
    model = Denoiser(pipe)
    model.requires_grad_(True)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    ema = EMA(model.parameters(), cfg.ema_decay)
    model, opt = accelerator.prepare(model, opt)
    ema.to(accelerator.device)
    loop = TrainingLoop(accelerator, folder, cfg.steps, deadline, name=f"{cfg.preset} denoiser",
                        save_every=cfg.save_every, ema=ema)
    data.encode(vae)
    ddpm = DDPMScheduler.from_config(pipe.scheduler.config) if cfg.preset == "toy-sdxl" else None
    if ddpm is not None:
        alphas = ddpm.alphas_cumprod.to(accelerator.device)
    sf = pipe.vae.config.scaling_factor
    shift = pipe.vae.config.shift_factor or 0.0
    start = loop.step

    def step_fn(step: int) -> torch.Tensor:
        # a posterior sample of the latents ``data.encode(vae)`` cached (the VAE is frozen in this stage)
        latents, ids = data.latent_batch(cfg.seed, DENOISER_STAGE, step, cfg.batch_size, rank=accelerator.process_index)
        lr = cfg.lr * min(1.0, step / 500)  # constant after warm-up: the EMA does the annealing
        if cfg.anneal:
            lr = cfg.lr * 0.5 * (1 + math.cos(math.pi * (step - start) / max(1, cfg.steps - start)))
        set_lr(opt, lr)
        x0 = (latents - shift) * sf
        noise = torch.randn_like(x0)
        b = x0.shape[0]
        with accelerator.autocast():
            if ddpm is not None:
                t = torch.randint(0, ddpm.config.num_train_timesteps, (b,), device=x0.device)
                a = alphas[t].view(b, 1, 1, 1)
                noisy = a.sqrt() * x0 + (1 - a).sqrt() * noise
                pred = model(noisy, t, ids)
                target = noise
            else:
                s = flow_times(b, cfg.uniform_time_share, x0.device, cfg.logit_mean).view(b, 1, 1, 1)
                k = cfg.time_shift
                s = k * s / (1 + (k - 1) * s)
                noisy = (1 - s) * x0 + s * noise
                pred = model(noisy, s.flatten() * 1000, ids)
                target = noise - x0
            loss = F.mse_loss(pred.float(), target)
        apply_gradients(accelerator, loss, opt, clip=model.parameters())
        return loss

    def export(step: int, finished: bool) -> None:
        export_pipeline(pipe, cfg.export, cfg.work, step=step, finished=finished)

    return loop.run(step_fn, export=export if cfg.export is not None else None)


def run(cfg: ToyTrainConfig) -> bool:
    """Train (or resume) both stages; True when both are complete."""
    started = time.time()
    deadline = started + 60 * cfg.max_minutes
    accelerator = prepare_work(cfg)
    if cfg.init_from is not None and not (cfg.work / "vae" / "progress.json").exists():
        pipe = load_pipeline_for_training(cfg.preset, cfg.init_from)
        if accelerator.is_main_process:  # init_from's VAE is the finished VAE stage
            (cfg.work / "vae").mkdir(parents=True, exist_ok=True)
            torch.save(pipe.vae.state_dict(), cfg.work / "vae" / "vae.pt")
            Progress(cfg.work / "vae").save(done=True, latent_stats={
                k: v for k, v in pipe.vae.config.items() if k in ("scaling_factor", "shift_factor") and v is not None})
        accelerator.wait_for_everyone()
    else:
        pipe = new_pipeline(cfg.preset, cfg.work)
        if cfg.init_from is not None:
            pipe = load_pipeline_for_training(cfg.preset, cfg.init_from)
    if cfg.fresh_denoiser:
        # a new denoiser from toy_architectures (e.g. a changed architecture) on top of init_from's VAE and text
        # encoders; a resumed run loads its trained weights from the saved state
        name = "unet" if cfg.preset == "toy-sdxl" else "transformer"
        denoiser = toy_architectures.denoiser(cfg.preset)
        if cfg.adaln_zero:
            toy_architectures.adaln_zero_(denoiser)
        pipe.register_modules(**{name: denoiser})
    pipe.to(accelerator.device, torch.float32)
    data = training_pool(cfg, accelerator, pipe.tokenizer)
    accelerator.print(f"{cfg.preset}: {len(data)} training pairs ready after {time.time() - started:.0f} s")
    if not train_vae(cfg, pipe, data, deadline):
        accelerator.print(f"{cfg.preset}: time budget reached during the VAE stage; run again to resume")
        return False
    done = train_denoiser(cfg, pipe, data, deadline)
    accelerator.print(json.dumps({"preset": cfg.preset, "done": done,
                                  "minutes": round((time.time() - started) / 60, 2)}))
    return done
