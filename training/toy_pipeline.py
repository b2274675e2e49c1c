"""Toy pipelines as the trainers handle them: built new from ``toy_architectures``, loaded from and exported to
diffusers folders (fp16, slim tokenizers), their text embeddings computed from token ids, and their trainable part
(denoiser + text encoders) behind one forward for accelerate.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import set_seed
from diffusers import StableDiffusion3Pipeline, StableDiffusionXLPipeline
from transformers import CLIPTokenizer

from alignment.loading import pipeline_family, read_model_index
from alignment.repeated_context import RepeatedContext

from . import toy_architectures
from .clip_tokenizer import save_slim_clip_tokenizer
from .toy_pool import ScenePool

IMAGE_SIZE = 64


def toy_accelerator() -> Accelerator:
    """The accelerator of the toy trainers: bf16 autocast on a GPU, fp32 on the CPU (``TOY_MIXED_PRECISION``
    overrides)."""
    return Accelerator(mixed_precision=os.environ.get("TOY_MIXED_PRECISION",
                                                      "bf16" if torch.cuda.is_available() else "no"))


def prepare_work(cfg) -> Accelerator:
    """The start of every toy trainer: the seed, the accelerator, and the work folder ``cfg.work`` with the slim
    tokenizer folders the export copies (from ``cfg.init_from`` when it has them), made by the main process and then
    read by the others."""
    set_seed(cfg.seed)
    accelerator = toy_accelerator()
    cfg.work.mkdir(parents=True, exist_ok=True)
    with accelerator.main_process_first():
        tokenizers(cfg.work, cfg.init_from)
    return accelerator


def training_pool(cfg, accelerator: Accelerator, tokenizer: CLIPTokenizer) -> ScenePool:
    """The render pool ``cfg.pool``, on the accelerator's device; when the file is missing, the main process renders
    ``cfg.pool_size`` renders and saves them, then the others load them."""
    with accelerator.main_process_first():
        return ScenePool.cached(cfg.pool, cfg.pool_size, cfg.seed, cfg.workers, accelerator.device, tokenizer)


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
    """A toy pipeline of freshly initialised components (``toy_architectures``), with the tokenizers of ``work``."""
    tok, tok2 = tokenizers(work)
    arch = toy_architectures
    te, te2 = arch.text_encoders(preset)
    common = dict(vae=arch.vae(preset), text_encoder=te, text_encoder_2=te2, tokenizer=tok, tokenizer_2=tok2,
                  scheduler=arch.scheduler(preset))
    if preset == "toy-sdxl":
        # The unconditional branch was trained on the encoded empty caption, not on zeros.
        return StableDiffusionXLPipeline(unet=arch.unet(), force_zeros_for_empty_prompt=False, **common)
    return StableDiffusion3Pipeline(transformer=arch.transformer(), text_encoder_3=None, tokenizer_3=None,
                                    **common)


def load_pipeline_for_training(preset: str, folder: Path):
    """An exported toy pipeline, in fp32 (SD3-class: without T5)."""
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


def preset_of(folder: Path) -> str:
    """toy-sdxl or toy-sd3, from the folder's model_index.json (read as the loader reads it)."""
    family = pipeline_family(read_model_index(Path(folder)))
    if family is None:
        raise ValueError(f"{folder}: neither an SDXL- nor an SD3-class pipeline, so not a toy preset's folder")
    return "toy-sdxl" if family == "diffusion" else "toy-sd3"


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


def export_continuation(pipe, cfg, key: str, record: dict) -> None:
    """Export ``pipe`` to ``cfg.export`` (``export_pipeline``) with the training record of the pipeline it continues,
    ``cfg.init_from``'s training.json, and this run's ``record`` added under ``key``."""
    source = Path(cfg.init_from) / "training.json"
    info = json.loads(source.read_text()) if source.exists() else {}
    info[key] = record
    export_pipeline(pipe, cfg.export, cfg.work, **info)
