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

Each model is also a dict of component builders (``sdxl_parts``, ``sd35_parts``, ``pickscore_parts``), so that one
component at a time can be built, saved and freed (``evaluations/hub_twins.py``). ``tiny=True`` gives the same
architectures at toy widths (``TINY``), for tests on a CPU.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Callable

import torch

CONFIGS = Path(__file__).resolve().parents[1] / "alignment" / "model_configs"
SDXL, SD35, PICKSCORE = CONFIGS / "sdxl-turbo", CONFIGS / "sd35-large-turbo", CONFIGS / "pickscore"

# The same architectures at toy widths: each public config with these values written over it (nested dicts merge),
# so ``tiny=True`` runs every builder below on the very code path of the full size, on a CPU in seconds. Widths
# agree across components as at full size: the UNet's cross-attention is both text towers' widths, its added
# embedding the pooled width plus six time ids; SD3's pooled width is both projections, its joint width holds both.
# SD3's position table covers the preset's 1024² (128² latents, 64 patches a side), so a tiny twin samples as the
# preset says.
_TINY_TEXT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
              "projection_dim": 32}
_TINY_VAE = {"block_out_channels": [8, 8, 16, 16], "layers_per_block": 1, "norm_num_groups": 8, "sample_size": 64}
TINY: dict[str, dict[str, dict]] = {
    "sdxl-turbo": {
        "unet": {"block_out_channels": [32, 64, 64], "layers_per_block": 1, "transformer_layers_per_block": 1,
                 "attention_head_dim": [2, 4, 4], "cross_attention_dim": 64, "addition_time_embed_dim": 8,
                 "projection_class_embeddings_input_dim": 32 + 6 * 8, "sample_size": 8},
        "vae": _TINY_VAE, "text_encoder": _TINY_TEXT, "text_encoder_2": _TINY_TEXT,
    },
    "sd3.5-large-turbo": {
        "transformer": {"num_layers": 2, "num_attention_heads": 2, "attention_head_dim": 16,
                        "caption_projection_dim": 32, "joint_attention_dim": 64, "pooled_projection_dim": 64,
                        "pos_embed_max_size": 64, "sample_size": 8},
        "vae": _TINY_VAE, "text_encoder": _TINY_TEXT, "text_encoder_2": _TINY_TEXT,
    },
    "pickscore": {"model": {
        "projection_dim": 16,
        "text_config": {**_TINY_TEXT, "num_hidden_layers": 1, "projection_dim": 16},
        "vision_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                          "num_attention_heads": 2, "image_size": 32, "patch_size": 8, "projection_dim": 16},
    }},
}


@contextlib.contextmanager
def building(device, dtype):
    """Parameters are created on ``device`` in ``dtype`` (no fp32 copy on the host first)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(old)


def _config(folder: Path, name: str = "config.json") -> Path:
    """``name``, or the reconstructed one where the exact file was not found (see model_configs/SOURCES.md)."""
    exact = folder / name
    return exact if exact.is_file() else folder / name.replace(".json", ".reconstructed.json")


def _merged(config: dict, overrides: dict | None) -> dict:
    """``config`` with ``overrides`` written over it; nested dicts (a CLIPConfig's text_config) merge key by key."""
    out = dict(config)
    for key, value in (overrides or {}).items():
        out[key] = _merged(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


def _read(folder: Path, overrides: dict | None = None, name: str = "config.json") -> dict:
    return _merged(json.loads(_config(folder, name).read_text(encoding="utf-8")), overrides)


def clip_tokenizer(pad_token: str | None = None):
    """The real CLIP BPE tokenizer (SDXL-Turbo's vocab.json and merges.txt). The hub's second tokenizers (SDXL and
    SD3) pad with "!", the first ones with "<|endoftext|>"."""
    from transformers import CLIPTokenizer

    kwargs = {"pad_token": pad_token} if pad_token else {}
    return CLIPTokenizer.from_pretrained(SDXL / "tokenizer", **kwargs)


Builder = Callable[[object, torch.dtype], object]  # (device, dtype) -> one pipeline component


def _module(make: Callable[[], torch.nn.Module]) -> Builder:
    """A component with weights: drawn by its own initialiser directly on the device, in the dtype, for inference."""
    def build(device, dtype):
        with building(device, dtype):
            return make().eval().requires_grad_(False)
    return build


def _plain(make: Callable[[], object]) -> Builder:
    """A component without weights (tokenizer, scheduler): built on the host, whatever the device."""
    return lambda device, dtype: make()


def _text_encoder(cls, folder: Path, overrides: dict | None) -> Builder:
    from transformers import CLIPTextConfig

    # cast: the config's own ``torch_dtype`` would win over the default dtype otherwise
    return _module(lambda: cls(CLIPTextConfig.from_dict(_read(folder, overrides))).to(torch.get_default_dtype()))


def _diffusers_model(cls, folder: Path, overrides: dict | None) -> Builder:
    return _module(lambda: cls.from_config(_read(folder, overrides)))


def _scheduler(cls, folder: Path) -> Builder:
    return _plain(lambda: cls.from_config(_read(folder, name="scheduler_config.json")))


def sdxl_parts(tiny: bool = False) -> dict[str, Builder]:
    """stabilityai/sdxl-turbo's pipeline components by their model_index.json names, each a ``Builder``."""
    from diffusers import AutoencoderKL, EulerAncestralDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    t = TINY["sdxl-turbo"] if tiny else {}
    return {
        "vae": _diffusers_model(AutoencoderKL, SDXL / "vae", t.get("vae")),
        "text_encoder": _text_encoder(CLIPTextModel, SDXL / "text_encoder", t.get("text_encoder")),
        "text_encoder_2": _text_encoder(CLIPTextModelWithProjection, SDXL / "text_encoder_2", t.get("text_encoder_2")),
        "tokenizer": _plain(clip_tokenizer),
        "tokenizer_2": _plain(lambda: clip_tokenizer("!")),
        "unet": _diffusers_model(UNet2DConditionModel, SDXL / "unet", t.get("unet")),
        "scheduler": _scheduler(EulerAncestralDiscreteScheduler, SDXL / "scheduler"),
    }


def pooled_width(tiny: bool = False) -> int:
    """The width of SDXL's pooled text embedding (its second text encoder's projection), which a guidance network
    for SDXL reads."""
    return _read(SDXL / "text_encoder_2", TINY["sdxl-turbo"]["text_encoder_2"] if tiny else None)["projection_dim"]


def sd35_parts(tiny: bool = False) -> dict[str, Builder]:
    """stabilityai/stable-diffusion-3.5-large-turbo's components without T5 (``text_encoder_3``, ``tokenizer_3``)."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel
    from transformers import CLIPTextModelWithProjection

    t = TINY["sd3.5-large-turbo"] if tiny else {}
    return {
        "transformer": _diffusers_model(SD3Transformer2DModel, SD35 / "transformer", t.get("transformer")),
        "scheduler": _scheduler(FlowMatchEulerDiscreteScheduler, SD35 / "scheduler"),
        "vae": _diffusers_model(AutoencoderKL, SD35 / "vae", t.get("vae")),
        "text_encoder": _text_encoder(CLIPTextModelWithProjection, SD35 / "text_encoder", t.get("text_encoder")),
        "tokenizer": _plain(clip_tokenizer),
        "text_encoder_2": _text_encoder(CLIPTextModelWithProjection, SD35 / "text_encoder_2", t.get("text_encoder_2")),
        "tokenizer_2": _plain(lambda: clip_tokenizer("!")),
    }


def _pipeline(cls, parts: dict[str, Builder], device, dtype, **extra):
    pipe = cls(**{name: build(device, dtype) for name, build in parts.items()}, **extra)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sdxl_turbo(device="cuda", dtype=torch.bfloat16, tiny: bool = False):
    """stabilityai/sdxl-turbo's StableDiffusionXLPipeline with random weights."""
    from diffusers import StableDiffusionXLPipeline

    return _pipeline(StableDiffusionXLPipeline, sdxl_parts(tiny), device, dtype)


def sd35_large_turbo(device="cuda", dtype=torch.bfloat16, tiny: bool = False):
    """stabilityai/stable-diffusion-3.5-large-turbo's StableDiffusion3Pipeline with random weights, without T5."""
    from diffusers import StableDiffusion3Pipeline

    return _pipeline(StableDiffusion3Pipeline, sd35_parts(tiny), device, dtype, text_encoder_3=None, tokenizer_3=None)


def pickscore_parts(tiny: bool = False) -> dict[str, Builder]:
    """PickScore's CLIPModel (ViT-H-14) and its image processor (CLIP's mean and std, the model's input size).
    The processor's tokenizer is ``clip_tokenizer()``."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    config = CLIPConfig.from_dict(_read(PICKSCORE, TINY["pickscore"]["model"] if tiny else None))
    size = config.vision_config.image_size
    return {"model": _module(lambda: CLIPModel(config)),
            "image_processor": _plain(lambda: CLIPImageProcessor(size={"shortest_edge": size},
                                                                 crop_size={"height": size, "width": size}))}


def pickscore_model(device="cuda", dtype=torch.bfloat16, tiny: bool = False):
    """PickScore's CLIPModel (ViT-H-14) and a CLIPProcessor (224 px, CLIP's mean and std, the real tokenizer)."""
    from transformers import CLIPProcessor

    parts = pickscore_parts(tiny)
    processor = CLIPProcessor(image_processor=parts["image_processor"](device, dtype), tokenizer=clip_tokenizer())
    return parts["model"](device, dtype), processor


def pickscore(device="cuda", dtype=torch.bfloat16, tiny: bool = False):
    """A full-size PickScore-architecture reward with random weights, through the project's PickScore code."""
    from alignment.rewards.clip_model import CLIPModelReward

    model, processor = pickscore_model(device, dtype, tiny)
    return CLIPModelReward.from_model(model, processor, name="pickscore (random weights)")


def n_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
