"""Fine-tune the VAE decoder of a trained toy pipeline, with its encoder (and so its latent space) frozen.

The toy VAEs were trained for only 1,500 steps, and their decoders lose detail: decoding the encoded clean renders
keeps the oracle's shape reading right on about 75 % of stars and 83 % of crosses (measured 2026-11-28;
``docs/training-log.md``). Because the encoder does not move, the latents the denoiser was
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

import torch

from .configs import DecoderTrainConfig
from .graphed_step import set_lr
from .loop import EMA, TrainingLoop, apply_gradients, lr_at
from .toy_base import reconstruction_loss
from .toy_pipeline import export_continuation, load_pipeline_for_training, prepare_work, preset_of, training_pool

DECODER_STAGE = 3  # batch_rng stage key: the decoder's batches differ from the VAE's (1) and denoiser's (2)


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
    accelerator = prepare_work(cfg)
    preset = preset_of(cfg.init_from)
    pipe = load_pipeline_for_training(preset, cfg.init_from)
    pipe.to(accelerator.device, torch.float32)
    vae = pipe.vae.requires_grad_(False).eval()
    data = training_pool(cfg, accelerator, pipe.tokenizer)
    data.encode(vae)  # the frozen encoder's posteriors, once
    objective = DecoderObjective(vae)
    params = list(objective.parameters())
    for p in params:
        p.requires_grad_(True)
    objective.train()
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    ema = EMA(params, cfg.ema_decay)
    objective, opt = accelerator.prepare(objective, opt)
    ema.to(accelerator.device)
    loop = TrainingLoop(accelerator, cfg.work / "decoder", cfg.steps, deadline, name=f"{preset} decoder",
                        save_every=cfg.save_every, ema=ema)
    accelerator.print(f"{preset} decoder: {len(data)} renders ready after {time.time() - started:.0f} s, "
                      f"from step {loop.step}")

    def step_fn(step: int) -> torch.Tensor:
        images, latents = data.image_latent_batch(cfg.seed, DECODER_STAGE, step, cfg.batch_size,
                                                  rank=accelerator.process_index)
        # constant after warm-up: the EMA does the annealing
        set_lr(opt, lr_at(cfg.lr, step, cfg.steps, warmup=200, decay=False))
        with accelerator.autocast():
            loss = objective(latents, images)
        apply_gradients(accelerator, loss, opt, clip=params)
        return loss

    def export(step: int, finished: bool) -> None:
        vae.eval()
        export_continuation(pipe, cfg, "decoder", {
            "steps": step, "finished": finished, "batch_size": cfg.batch_size, "lr": cfg.lr,
            "note": "VAE decoder fine-tuned with the encoder frozen (python -m training toy-decoder)"})

    finished = loop.run(step_fn, export=export if cfg.export is not None else None)
    accelerator.print(json.dumps({"preset": preset, "decoder_step": loop.step, "done": finished,
                                  "minutes": round((time.time() - started) / 60, 2)}))
    return finished
