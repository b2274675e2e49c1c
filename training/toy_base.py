"""Train the toy base models (``toy-sdxl``, ``toy-sd3``) on the toy-world renderer, with accelerate.

Two stages, each resumable from ``--work``: the VAE (reconstruction + a small KL term; afterwards the latent
scale and shift are measured on renders and written into its config), then the denoiser together with both text
encoders (VAE frozen; SDXL: epsilon prediction on the scaled-linear DDPM schedule; SD3: rectified flow,
``x_t = (1-s) x0 + s eps``, target ``eps - x0``, logit-normal ``s``). Captions are dropped 10 % of the time so
classifier-free guidance stays possible. An EMA of the weights is what gets exported.

The run stops cleanly after ``--max-minutes`` (state saved; run the same command again to go on), and exports the
pipeline in diffusers format (fp16 weights) to ``--export`` whenever the denoiser stage ends or pauses.

    accelerate launch -m training toy-base --preset toy-sdxl --work runs/toy-sdxl --export checkpoints/toy-sdxl
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import set_seed
from diffusers import DDPMScheduler, StableDiffusion3Pipeline, StableDiffusionXLPipeline
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm
from transformers import CLIPTokenizer

from alignment.repeated_context import RepeatedContext
from toyworld import ToyScenes

from . import toy_configs
from .clip_tokenizer import save_slim_clip_tokenizer

CAPTION_DROPOUT = 0.1
IMAGE_SIZE = 64


@dataclass
class ToyTrainConfig:
    preset: str
    work: Path
    export: Path | None = None
    vae_steps: int = 3000
    steps: int = 20000
    batch_size: int = 128
    vae_lr: float = 1e-3
    lr: float = 3e-4
    kl_weight: float = 1e-4
    ema_decay: float = 0.9995
    seed: int = 0
    workers: int = 4
    max_minutes: float = 1e9
    save_every: int = 1000
    init_from: Path | None = None
    fresh_denoiser: bool = False  # with init_from: keep its VAE and text encoders, start the denoiser from scratch
    pool: Path | None = None  # cached ScenePool (.npz); rendered when missing
    pool_size: int = 200_000
    stats_samples: int = 4096  # images used to measure the latent scale and shift
    time_shift: float = 1.0  # flow only: train on s' = k s / (1 + (k-1) s), the shifted sigmas the sampler visits
    uniform_time_share: float = 0.0  # flow only: this share of each batch draws s ~ U(0, 1) instead of logit-normal
    logit_mean: float = 0.0  # flow only: the logit-normal's mean (SD3: 0; > 0 trains more at high noise)
    adaln_zero: bool = False  # with fresh_denoiser (toy-sd3): DiT's adaLN-Zero initialisation of the new transformer
    anneal: bool = False  # cosine-decay the learning rate to 0 over this run's steps (a final polishing call)

    def __post_init__(self):
        if not 0.0 <= self.uniform_time_share <= 1.0:
            raise ValueError(f"--uniform-time-share must lie in [0, 1], got {self.uniform_time_share}")
        if self.adaln_zero and not (self.fresh_denoiser and self.preset == "toy-sd3"):
            raise ValueError("--adaln-zero initialises a new toy-sd3 transformer: use it with --preset toy-sd3 "
                             "--fresh-denoiser")


def _render_item(args: tuple[int, int]) -> tuple[np.ndarray, str]:
    seed, index = args
    item = ToyScenes(index + 1, seed=seed, split="train")[index]
    return item["image"], item["caption"]


def batch_rng(*key: int, rank: int = 0) -> np.random.Generator:
    """The random draws of one training batch, keyed by (seed, …, step). Under ``accelerate launch`` each process
    (``rank``) draws its own part of the batch; process 0 draws what a single process draws."""
    return np.random.default_rng(key + ((rank,) if rank else ()))


class ScenePool:
    """A fixed pool of rendered training pairs, held on the training device, sampled with replacement.

    Rendering on the fly starves the GPU (a render costs ~3 ms of CPU), so the pool is rendered once, in
    parallel, and cached to disk (``python -m training toy-pool``). Batch ``k`` of a stage is a pure function of
    (seed, stage, k): a resumed run draws exactly the batches it has not drawn yet.
    """

    def __init__(self, images: np.ndarray, captions: list[str], device, tokenizer: CLIPTokenizer):
        self.images = torch.from_numpy(images).to(device)  # N x H x W x 3, uint8
        self.captions = captions
        self.device = device
        # Tokenize each distinct caption once (per-step tokenization would cost more than the GPU step).
        distinct = sorted(set(captions) | {""})
        ids = tokenizer(distinct, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                        return_tensors="pt").input_ids
        row = {c: i for i, c in enumerate(distinct)}
        self.token_ids = ids[torch.tensor([row[c] for c in captions])].to(device)  # N x 77, padded with <|endoftext|>
        self.empty_ids = ids[row[""]].to(device)

    @classmethod
    def render(cls, n: int, seed: int, workers: int, device, tokenizer: CLIPTokenizer) -> "ScenePool":
        import multiprocessing as mp

        with mp.get_context("fork").Pool(max(1, workers)) as pool:
            items = pool.map(_render_item, [(seed, i) for i in range(n)], chunksize=256)
        return cls(np.stack([im for im, _ in items]), [c for _, c in items], device, tokenizer)

    @classmethod
    def cached(cls, path: Path | None, n: int, seed: int, workers: int, device,
               tokenizer: CLIPTokenizer) -> "ScenePool":
        """The pool saved at ``path``, or ``n`` renders made now (and saved there when a path is given)."""
        if path is not None and Path(path).exists():
            return cls.load(path, device, tokenizer)
        pool = cls.render(n, seed, workers, device, tokenizer)
        if path is not None:
            pool.save(path)
        return pool

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, images=self.images.cpu().numpy(), captions=np.array(self.captions))

    @classmethod
    def load(cls, path: Path, device, tokenizer: CLIPTokenizer) -> "ScenePool":
        data = np.load(path)
        return cls(data["images"], [str(c) for c in data["captions"]], device, tokenizer)

    def __len__(self) -> int:
        return len(self.captions)

    @torch.no_grad()
    def encode(self, vae, chunk: int = 1024) -> None:
        """Cache the VAE posterior (mean, std) of every image, so training steps sample latents without the VAE."""
        means, stds = [], []
        for i in range(0, len(self), chunk):
            images = self.images[i : i + chunk].permute(0, 3, 1, 2).float() / 127.5 - 1.0
            dist = vae.encode(images).latent_dist
            means.append(dist.mean.to(torch.bfloat16))
            stds.append(dist.std.to(torch.bfloat16))
        self.latent_mean, self.latent_std = torch.cat(means), torch.cat(stds)

    def latent_batch(self, seed: int, stage: int, step: int, size: int,
                     rank: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Like ``batch`` but returns a posterior sample of the cached latents instead of images."""
        idx, ids = self._draw(seed, stage, step, size, rank)
        return self._posterior_sample(idx), ids

    def image_latent_batch(self, seed: int, stage: int, step: int, size: int,
                           rank: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (as ``batch``) and a posterior sample of their cached latents (as ``latent_batch``), for training
        the decoder."""
        idx, _ = self._draw(seed, stage, step, size, rank)
        return self._images(idx), self._posterior_sample(idx)

    def _images(self, idx: torch.Tensor) -> torch.Tensor:
        return self.images[idx].permute(0, 3, 1, 2).float() / 127.5 - 1.0

    def _posterior_sample(self, idx: torch.Tensor) -> torch.Tensor:
        mean, std = self.latent_mean[idx].float(), self.latent_std[idx].float()
        return mean + std * torch.randn_like(mean)

    def batch(self, seed: int, stage: int, step: int, size: int,
              rank: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Images as [-1, 1] NCHW floats and caption token ids (the empty caption with probability
        CAPTION_DROPOUT). ``rank``: the training process (each draws its own part of a multi-GPU batch)."""
        idx, ids = self._draw(seed, stage, step, size, rank)
        return self._images(idx), ids

    def _draw(self, seed: int, stage: int, step: int, size: int,
              rank: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Pool indices of batch ``step`` and their caption token ids (the empty caption for dropped ones)."""
        rng = batch_rng(seed, stage, step, rank=rank)
        idx = torch.from_numpy(rng.integers(0, len(self), size)).to(self.device)
        drop = torch.from_numpy(rng.random(size) < CAPTION_DROPOUT).to(self.device)
        return idx, torch.where(drop[:, None], self.empty_ids[None], self.token_ids[idx])


def tokenizers(work: Path, source: Path | None = None) -> tuple[CLIPTokenizer, CLIPTokenizer]:
    """SDXL's two tokenizers: the first pads with <|endoftext|>, the second with "!" (SD3 reuses the same). Copied
    from the pipeline folder ``source`` when it has them (no open_clip needed), else built from open_clip's
    vocabulary."""
    out = []
    for name, pad in (("tokenizer", "<|endoftext|>"), ("tokenizer_2", "!")):
        folder = work / name
        if not (folder / "vocab.json").exists():
            if source is not None and (Path(source) / name / "vocab.json").exists():
                shutil.copytree(Path(source) / name, folder, dirs_exist_ok=True)  # links are copied as files
            else:
                save_slim_clip_tokenizer(folder, pad_token=pad)
        out.append(CLIPTokenizer.from_pretrained(folder))
    return out[0], out[1]


def new_pipeline(preset: str, work: Path):
    tok, tok2 = tokenizers(work)
    te, te2 = toy_configs.text_encoders(preset)
    common = dict(vae=toy_configs.vae(preset), text_encoder=te, text_encoder_2=te2, tokenizer=tok, tokenizer_2=tok2,
                  scheduler=toy_configs.scheduler(preset))
    if preset == "toy-sdxl":
        # The unconditional branch was trained on the encoded empty caption, not on zeros.
        return StableDiffusionXLPipeline(unet=toy_configs.unet(), force_zeros_for_empty_prompt=False, **common)
    return StableDiffusion3Pipeline(transformer=toy_configs.transformer(), text_encoder_3=None, tokenizer_3=None,
                                    **common)


def load_pipeline_for_training(preset: str, folder: Path):
    cls = StableDiffusionXLPipeline if preset == "toy-sdxl" else StableDiffusion3Pipeline
    extra = {} if preset == "toy-sdxl" else dict(text_encoder_3=None, tokenizer_3=None)
    return cls.from_pretrained(folder, dtype=torch.float32, **extra)


def prompt_embeddings(pipe, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What the pipeline's ``encode_prompt`` computes, from token ids already made (tokenizer 1's padding; the
    second tokenizer pads with "!" = 0 after the first <|endoftext|>). Both encoders' penultimate hidden states are
    concatenated; the pooled embedding is the second encoder's (SDXL) or both (SD3); SD3 pads the states to the
    joint attention width and appends the all-zero T5 block, as its pipeline does without T5.
    ``tests/test_toy_training.py`` checks this against ``encode_prompt``."""
    eos = pipe.tokenizer.eos_token_id
    after_eos = torch.cumsum((ids == eos).int(), dim=1) - (ids == eos).int() > 0
    ids_2 = torch.where(after_eos, torch.full_like(ids, pipe.tokenizer_2.pad_token_id), ids)
    out_1 = pipe.text_encoder(ids, output_hidden_states=True)
    out_2 = pipe.text_encoder_2(ids_2, output_hidden_states=True)
    states = torch.cat([out_1.hidden_states[-2], out_2.hidden_states[-2]], dim=-1)
    if isinstance(pipe, StableDiffusionXLPipeline):
        return states, out_2[0]
    width = pipe.transformer.config.joint_attention_dim
    states = F.pad(states, (0, width - states.shape[-1]))
    t5 = torch.zeros(ids.shape[0], 256, width, device=states.device, dtype=states.dtype)
    return torch.cat([states, t5], dim=-2), torch.cat([out_1[0], out_2[0]], dim=-1)


class Denoiser(torch.nn.Module):
    """The trainable part of a pipeline (denoiser + both text encoders) behind one forward, so that accelerate's
    wrapper sees every parameter."""

    def __init__(self, pipe):
        super().__init__()
        self.sdxl = isinstance(pipe, StableDiffusionXLPipeline)
        # SD3 without T5: the 256 identical zero T5 tokens are attended to once (exact; about half the cost)
        self.net = pipe.unet if self.sdxl else RepeatedContext(pipe.transformer)
        self.text_encoder = pipe.text_encoder
        self.text_encoder_2 = pipe.text_encoder_2
        object.__setattr__(self, "pipe", pipe)  # not a submodule

    def forward(self, noisy: torch.Tensor, timestep: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        embeds, pooled = prompt_embeddings(self.pipe, ids)
        if self.sdxl:
            time_ids = self.pipe._get_add_time_ids(
                (IMAGE_SIZE, IMAGE_SIZE), (0, 0), (IMAGE_SIZE, IMAGE_SIZE), dtype=embeds.dtype,
                text_encoder_projection_dim=self.text_encoder_2.config.projection_dim,
            ).to(noisy.device).repeat(len(ids), 1)
            cond = {"text_embeds": pooled, "time_ids": time_ids}
            return self.net(noisy, timestep, encoder_hidden_states=embeds, added_cond_kwargs=cond).sample
        return self.net(hidden_states=noisy, timestep=timestep, encoder_hidden_states=embeds,
                        pooled_projections=pooled).sample


class Progress:
    """``progress.json`` in a stage folder: the step reached and whether the stage is done."""

    def __init__(self, folder: Path):
        self.path = folder / "progress.json"
        self.data = json.loads(self.path.read_text()) if self.path.exists() else {"step": 0, "done": False}

    def save(self, **kw):
        self.data.update(kw)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data, indent=1))


def _check_finite(loss: torch.Tensor, step: int, stage: str):
    if not torch.isfinite(loss):
        raise FloatingPointError(f"{stage}: loss became {loss.item()} at step {step}; lower the learning rate and resume")


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


def _accelerator() -> Accelerator:
    return Accelerator(mixed_precision=os.environ.get("TOY_MIXED_PRECISION", "bf16" if torch.cuda.is_available() else "no"))


def train_vae(cfg: ToyTrainConfig, pipe, data: ScenePool, deadline: float) -> bool:
    accelerator = _accelerator()
    folder = cfg.work / "vae"
    progress = Progress(folder)
    vae = pipe.vae
    if progress.data["done"]:
        vae.load_state_dict(torch.load(folder / "vae.pt", map_location="cpu"))
        vae.register_to_config(**progress.data["latent_stats"])
        return True
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    objective, opt = accelerator.prepare(VAEObjective(vae, cfg.kl_weight), opt)
    if (folder / "state").exists():
        accelerator.load_state(folder / "state")
    start = progress.data["step"]
    bar = tqdm(total=cfg.vae_steps, initial=start, desc=f"{cfg.preset} vae", disable=not accelerator.is_main_process)
    step = start
    for step in range(start + 1, cfg.vae_steps + 1):
        images, _ = data.batch(cfg.seed, 1, step, cfg.batch_size, rank=accelerator.process_index)
        lr = cfg.vae_lr * min(1.0, step / 200) * 0.5 * (1 + math.cos(math.pi * step / cfg.vae_steps))
        for g in opt.param_groups:
            g["lr"] = lr
        with accelerator.autocast():
            loss = objective(images)
        _check_finite(loss, step, "vae")
        accelerator.backward(loss)
        opt.step()
        opt.zero_grad(set_to_none=True)
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if time.time() > deadline:
            accelerator.save_state(folder / "state")
            progress.save(step=step)
            bar.close()
            return False
    bar.close()
    folder.mkdir(parents=True, exist_ok=True)
    stats = latent_stats(vae, data, cfg.preset, cfg.stats_samples)
    vae.register_to_config(**stats)
    if accelerator.is_main_process:
        torch.save(vae.state_dict(), folder / "vae.pt")
    progress.save(step=step, done=True, latent_stats=stats)
    return True


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
    On toy-sd3 the uniform share did not raise prompt fidelity; raising the mean to 1-1.5 did (sessions 8 and 9 of
    evaluations/results/base_quality_notes.md)."""
    s = torch.sigmoid(torch.randn(n, device=device) + mean)
    if uniform_share == 0:
        return s  # the default draws exactly what it drew before the option existed
    uniform = torch.rand(n, device=device) < uniform_share
    return torch.where(uniform, torch.rand(n, device=device), s)


def train_denoiser(cfg: ToyTrainConfig, pipe, data: ScenePool, deadline: float) -> bool:
    accelerator = _accelerator()
    set_seed(cfg.seed + accelerator.process_index)  # each process draws its own noise and times
    folder = cfg.work / "denoiser"
    progress = Progress(folder)
    if progress.data["done"]:
        return True
    vae = pipe.vae.to(accelerator.device).requires_grad_(False).eval()
    model = Denoiser(pipe)
    model.requires_grad_(True)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    ema = EMAModel(model.parameters(), decay=cfg.ema_decay, use_ema_warmup=True, power=3 / 4, foreach=True)
    model, opt = accelerator.prepare(model, opt)
    ema.to(accelerator.device)
    accelerator.register_for_checkpointing(ema)
    if (folder / "state").exists():
        accelerator.load_state(folder / "state")
        ema.to(accelerator.device)  # the loaded EMA weights arrive on the CPU
    data.encode(vae)
    ddpm = DDPMScheduler.from_config(pipe.scheduler.config) if cfg.preset == "toy-sdxl" else None
    if ddpm is not None:
        alphas = ddpm.alphas_cumprod.to(accelerator.device)
    sf = pipe.vae.config.scaling_factor
    shift = pipe.vae.config.shift_factor or 0.0
    start = progress.data["step"]
    bar = tqdm(total=cfg.steps, initial=start, desc=f"{cfg.preset} denoiser", disable=not accelerator.is_main_process)
    step, finished = start, True
    for step in range(start + 1, cfg.steps + 1):
        # a posterior sample of the latents ``data.encode(vae)`` cached (the VAE is frozen in this stage)
        latents, ids = data.latent_batch(cfg.seed, 2, step, cfg.batch_size, rank=accelerator.process_index)
        lr = cfg.lr * min(1.0, step / 500)  # constant after warm-up: the EMA does the annealing
        if cfg.anneal:
            lr = cfg.lr * 0.5 * (1 + math.cos(math.pi * (step - start) / max(1, cfg.steps - start)))
        for g in opt.param_groups:
            g["lr"] = lr
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
        _check_finite(loss, step, "denoiser")
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        ema.step(accelerator.unwrap_model(model).parameters())
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if step % cfg.save_every == 0 or time.time() > deadline:
            accelerator.save_state(folder / "state")
            progress.save(step=step)
            if time.time() > deadline:
                finished = False
                break
    bar.close()
    if finished:
        accelerator.save_state(folder / "state")
        progress.save(step=step, done=True)
    # Swap the EMA weights in for export.
    unwrapped = accelerator.unwrap_model(model)
    ema.store(unwrapped.parameters())
    ema.copy_to(unwrapped.parameters())
    if cfg.export is not None and accelerator.is_main_process:
        export_pipeline(pipe, cfg.export, cfg.work, step=step, finished=finished)
    ema.restore(unwrapped.parameters())
    return finished


def export_pipeline(pipe, dest: Path, tokenizer_source: Path, **info) -> None:
    """Save the pipeline in diffusers format with fp16 weights (small files; loaders upcast as asked). The
    tokenizer folders are the slim ones (vocab.json + merges.txt, as on the hub), not transformers' 3.6 MB
    tokenizer.json."""
    exported = copy.deepcopy(pipe)
    exported.to("cpu", torch.float16)
    exported.save_pretrained(dest, safe_serialization=True)
    for name in ("tokenizer", "tokenizer_2"):
        shutil.rmtree(Path(dest) / name)
        shutil.copytree(tokenizer_source / name, Path(dest) / name)
    (Path(dest) / "training.json").write_text(json.dumps(info, indent=1))


def run(cfg: ToyTrainConfig) -> bool:
    """Train (or resume) both stages; True when both are complete."""
    started = time.time()
    deadline = started + 60 * cfg.max_minutes
    set_seed(cfg.seed)
    cfg.work.mkdir(parents=True, exist_ok=True)
    tokenizers(cfg.work, cfg.init_from)  # the slim tokenizer folders the export copies
    if cfg.init_from is not None and not (cfg.work / "vae" / "progress.json").exists():
        (cfg.work / "vae").mkdir(parents=True, exist_ok=True)
        pipe = load_pipeline_for_training(cfg.preset, cfg.init_from)
        Progress(cfg.work / "vae").save(done=True, latent_stats={
            k: v for k, v in pipe.vae.config.items() if k in ("scaling_factor", "shift_factor") and v is not None})
        torch.save(pipe.vae.state_dict(), cfg.work / "vae" / "vae.pt")
    else:
        pipe = new_pipeline(cfg.preset, cfg.work)
        if cfg.init_from is not None:
            pipe = load_pipeline_for_training(cfg.preset, cfg.init_from)
    if cfg.fresh_denoiser:
        # a new denoiser from toy_configs (e.g. a changed architecture) on top of init_from's VAE and text encoders;
        # a resumed run loads its trained weights from the saved state
        name = "unet" if cfg.preset == "toy-sdxl" else "transformer"
        denoiser = toy_configs.denoiser(cfg.preset)
        if cfg.adaln_zero:
            toy_configs.adaln_zero_(denoiser)
        pipe.register_modules(**{name: denoiser})
    device = _accelerator().device
    pipe.to(device, torch.float32)
    data = ScenePool.cached(cfg.pool, cfg.pool_size, cfg.seed, cfg.workers, device, pipe.tokenizer)
    print(f"{cfg.preset}: {len(data)} training pairs ready after {time.time() - started:.0f} s")
    if not train_vae(cfg, pipe, data, deadline):
        print(f"{cfg.preset}: time budget reached during the VAE stage; run again to resume")
        return False
    done = train_denoiser(cfg, pipe, data, deadline)
    print(json.dumps({"preset": cfg.preset, "done": done, "minutes": round((time.time() - started) / 60, 2)}))
    return done
