"""The real architectures at full size, with random weights, built from the public configs in
``alignment/model_configs/`` — for GPU speed and memory benchmarks (no weights can be downloaded here).

    pipe = sdxl_turbo(device="cuda", dtype=torch.bfloat16)        # StableDiffusionXLPipeline, 2.6 B UNet
    pipe = sd35_large_turbo(device="cuda", dtype=torch.bfloat16)  # StableDiffusion3Pipeline, 8 B transformer
    reward = pickscore(device="cuda", dtype=torch.bfloat16)       # CLIP ViT-H-14 scored by the PickScore code

The pipelines are the diffusers classes users load from the hub, so the project's samplers run on them unchanged.
SD3.5 is built without its T5-XXL encoder (its tokenizer files are not in the collected configs): the pipeline then
feeds zeros of the same shape to the transformer, so every transformer call costs what it costs with T5; only the
once-per-prompt T5 encoding is missing, from every configuration alike. Weights are drawn by each module's own
initialiser directly on ``device`` in ``dtype``; ``device="meta"`` builds the whole thing without memory.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import torch

CONFIGS = Path(__file__).resolve().parents[1] / "alignment" / "model_configs"
SDXL, SD35, PICKSCORE = CONFIGS / "sdxl-turbo", CONFIGS / "sd35-large-turbo", CONFIGS / "pickscore"


@contextlib.contextmanager
def _building(device, dtype):
    """Parameters are created on ``device`` in ``dtype`` (no fp32 copy on the host first)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(old)


def _config(folder: Path) -> Path:
    """config.json, or the reconstructed one where the exact file was not found (see model_configs/SOURCES.md)."""
    exact = folder / "config.json"
    return exact if exact.is_file() else folder / "config.reconstructed.json"


def clip_tokenizer(pad_token: str | None = None):
    """The real CLIP BPE tokenizer (SDXL-Turbo's vocab.json and merges.txt); SD3 and SDXL's second tokenizer pad
    with "!"."""
    from transformers import CLIPTokenizer

    kwargs = {"pad_token": pad_token} if pad_token else {}
    return CLIPTokenizer.from_pretrained(SDXL / "tokenizer", **kwargs)


def _text_encoder(cls, folder: Path):
    """A CLIP text tower in the default dtype (the config's own ``torch_dtype`` would win otherwise)."""
    from transformers import CLIPTextConfig

    model = cls(CLIPTextConfig.from_json_file(_config(folder)))
    return model.to(torch.get_default_dtype()).eval().requires_grad_(False)


def sdxl_turbo(device="cuda", dtype=torch.bfloat16):
    """stabilityai/sdxl-turbo's StableDiffusionXLPipeline with random weights."""
    from diffusers import (
        AutoencoderKL,
        EulerAncestralDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    with _building(device, dtype):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(SDXL / "unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(SDXL / "vae"))
        te1 = _text_encoder(CLIPTextModel, SDXL / "text_encoder")
        te2 = _text_encoder(CLIPTextModelWithProjection, SDXL / "text_encoder_2")
    scheduler = EulerAncestralDiscreteScheduler.from_config(
        EulerAncestralDiscreteScheduler.load_config(SDXL / "scheduler"))
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=te1, text_encoder_2=te2, tokenizer=clip_tokenizer(),
                                     tokenizer_2=clip_tokenizer("!"), unet=unet.eval().requires_grad_(False),
                                     scheduler=scheduler)
    pipe.vae.eval().requires_grad_(False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sd35_large_turbo(device="cuda", dtype=torch.bfloat16):
    """stabilityai/stable-diffusion-3.5-large-turbo's StableDiffusion3Pipeline with random weights, without T5."""
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )
    from transformers import CLIPTextModelWithProjection

    with _building(device, dtype):
        transformer = SD3Transformer2DModel.from_config(SD3Transformer2DModel.load_config(SD35 / "transformer"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(SD35 / "vae"))
        te1 = _text_encoder(CLIPTextModelWithProjection, SD35 / "text_encoder")
        te2 = _text_encoder(CLIPTextModelWithProjection, SD35 / "text_encoder_2")
    scheduler_config = json.loads((SD35 / "scheduler" / "scheduler_config.reconstructed.json").read_text())
    pipe = StableDiffusion3Pipeline(transformer=transformer.eval().requires_grad_(False),
                                    scheduler=FlowMatchEulerDiscreteScheduler.from_config(scheduler_config),
                                    vae=vae.eval().requires_grad_(False), text_encoder=te1,
                                    tokenizer=clip_tokenizer("!"), text_encoder_2=te2, tokenizer_2=clip_tokenizer("!"),
                                    text_encoder_3=None, tokenizer_3=None)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def pickscore_model(device="cuda", dtype=torch.bfloat16):
    """PickScore's CLIPModel (ViT-H-14) and a CLIPProcessor (224 px, CLIP's mean and std, the real tokenizer)."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    with _building(device, dtype):
        model = CLIPModel(CLIPConfig.from_json_file(_config(PICKSCORE)))
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 224},
                                                                 crop_size={"height": 224, "width": 224}),
                              tokenizer=clip_tokenizer())
    return model, processor


def pickscore(device="cuda", dtype=torch.bfloat16):
    """A full-size PickScore-architecture reward with random weights, through the project's PickScore code."""
    from alignment.rewards.clip_model import CLIPModelReward

    model, processor = pickscore_model(device, dtype)
    return CLIPModelReward.from_model(model, processor, name="pickscore (random weights)")


def n_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
