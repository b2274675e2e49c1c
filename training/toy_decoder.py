"""Fine-tune the VAE decoder of a trained toy pipeline, with its encoder (and so its latent space) frozen.

The toy VAEs were trained for only 1,500 steps, and their decoders lose detail: decoding the encoded clean renders
keeps the oracle's shape reading right on about 75 % of stars and 83 % of crosses (session 10 of
``evaluations/results/base_quality_notes.md``). Because the encoder does not move, the latents the denoiser was
trained on keep their meaning, so a better decoder improves every image the pipeline makes without retraining the
denoiser. The decoder learns to map posterior samples of the cached latents (what the denoiser was trained to
produce) back to their renders (MSE + 0.1 L1, the VAE stage's reconstruction loss); an EMA of its weights is
exported together with the rest of the pipeline, unchanged.

    python -m training toy-decoder --init-from checkpoints/toy-sdxl --work runs/dec-sdxl --pool runs/pool.npz \
        --export runs/dec-sdxl-export --steps 20000 --max-minutes 8
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate.utils import set_seed
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from alignment.loading import _family, _read_index

from .toy_models import (
    Progress,
    ScenePool,
    _accelerator,
    _check_finite,
    export_pipeline,
    load_pipeline_for_training,
    reconstruction_loss,
    tokenizers,
)

DECODER_STAGE = 3  # batch_rng stage key: the decoder's batches differ from the VAE's (1) and denoiser's (2)


@dataclass
class DecoderTrainConfig:
    init_from: Path  # an exported toy pipeline folder
    work: Path
    export: Path | None = None
    steps: int = 20000
    batch_size: int = 256
    lr: float = 3e-4
    ema_decay: float = 0.999
    seed: int = 0
    workers: int = 4
    max_minutes: float = 1e9
    save_every: int = 1000
    pool: Path | None = None
    pool_size: int = 200_000

    def __post_init__(self):
        self.init_from, self.work = Path(self.init_from), Path(self.work)
        if not (self.init_from / "vae" / "config.json").exists():
            raise FileNotFoundError(f"--init-from {self.init_from}: not an exported pipeline folder (no vae/config.json)")
        if self.steps < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("--steps and --batch-size must be positive and --lr > 0")


def preset_of(folder: Path) -> str:
    """toy-sdxl or toy-sd3, from the folder's model_index.json (read as the loader reads it)."""
    family = _family(_read_index(Path(folder)))
    if family is None:
        raise ValueError(f"{folder}: neither an SDXL- nor an SD3-class pipeline, so not a toy preset's folder")
    return "toy-sdxl" if family == "diffusion" else "toy-sd3"


class DecoderObjective(torch.nn.Module):
    """Reconstruction of the render from a posterior sample of its (cached, frozen-encoder) latent."""

    def __init__(self, vae):
        super().__init__()
        self.post_quant_conv, self.decoder = vae.post_quant_conv, vae.decoder

    def forward(self, latents: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        z = self.post_quant_conv(latents) if self.post_quant_conv is not None else latents
        recon = self.decoder(z).float()
        return reconstruction_loss(recon, images)


def run(cfg: DecoderTrainConfig) -> bool:
    """Train (or resume) the decoder; export the pipeline with the EMA decoder. True when all steps are done."""
    started = time.time()
    deadline = started + 60 * cfg.max_minutes
    set_seed(cfg.seed)
    cfg.work.mkdir(parents=True, exist_ok=True)
    tokenizers(cfg.work, cfg.init_from)  # the slim tokenizer folders the export copies
    preset = preset_of(cfg.init_from)
    pipe = load_pipeline_for_training(preset, cfg.init_from)
    accelerator = _accelerator()
    pipe.to(accelerator.device, torch.float32)
    vae = pipe.vae.requires_grad_(False).eval()
    data = ScenePool.cached(cfg.pool, cfg.pool_size, cfg.seed, cfg.workers, accelerator.device, pipe.tokenizer)
    data.encode(vae)  # the frozen encoder's posteriors, once
    objective = DecoderObjective(vae)
    params = list(objective.parameters())
    for p in params:
        p.requires_grad_(True)
    objective.train()
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    ema = EMAModel(params, decay=cfg.ema_decay, use_ema_warmup=True, power=3 / 4, foreach=True)
    objective, opt = accelerator.prepare(objective, opt)
    ema.to(accelerator.device)
    accelerator.register_for_checkpointing(ema)
    folder = cfg.work / "decoder"
    progress = Progress(folder)
    if (folder / "state").exists():
        accelerator.load_state(folder / "state")
        ema.to(accelerator.device)
    start = progress.data["step"]
    print(f"{preset} decoder: {len(data)} renders ready after {time.time() - started:.0f} s, from step {start}")
    bar = tqdm(total=cfg.steps, initial=start, desc=f"{preset} decoder", disable=not accelerator.is_main_process)
    step, finished = start, True
    for step in range(start + 1, cfg.steps + 1):
        images, latents = data.image_latent_batch(cfg.seed, DECODER_STAGE, step, cfg.batch_size,
                                                  rank=accelerator.process_index)
        for g in opt.param_groups:
            g["lr"] = cfg.lr * min(1.0, step / 200)  # constant after warm-up: the EMA does the annealing
        with accelerator.autocast():
            loss = objective(latents, images)
        _check_finite(loss, step, "decoder")
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        ema.step(params)
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if step % cfg.save_every == 0 or time.time() > deadline:
            accelerator.save_state(folder / "state")
            progress.save(step=step)
            if time.time() > deadline and step < cfg.steps:
                finished = False
                break
    bar.close()
    if finished:
        accelerator.save_state(folder / "state")
        progress.save(step=step, done=True)
    if cfg.export is not None and accelerator.is_main_process:
        ema.store(params)
        ema.copy_to(params)
        vae.eval()
        info = json.loads((cfg.init_from / "training.json").read_text()) if (cfg.init_from / "training.json").exists() \
            else {}
        info["decoder"] = {"steps": step, "finished": finished, "batch_size": cfg.batch_size, "lr": cfg.lr,
                           "note": "VAE decoder fine-tuned with the encoder frozen (python -m training toy-decoder)"}
        export_pipeline(pipe, cfg.export, cfg.work, **info)
        ema.restore(params)
    print(json.dumps({"preset": preset, "decoder_step": step, "done": finished,
                      "minutes": round((time.time() - started) / 60, 2)}))
    return finished
