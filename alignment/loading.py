"""One loader for every model: a preset name, a hub id or a local folder, through diffusers' ``from_pretrained``.

    pipe, preset = load_pipeline("toy-sdxl")              # shipped toy weights, offline
    pipe, preset = load_pipeline("stabilityai/sdxl-turbo")  # the real model, from the hub
    pipe, preset = load_pipeline("/path/to/a/diffusers/folder")

The device is the one accelerate picks (CUDA, then MPS, then CPU) and the dtype bf16 on CUDA, fp32 elsewhere,
unless given. Any failure to fetch or read the weights becomes one ``ModelLoadError`` that says what was asked,
from where, and what to do.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import DiffusionPipeline, StableDiffusion3Pipeline, StableDiffusionXLPipeline

from .presets import Preset, find_preset
from .repeated_context import attend_repeats_once

PIPELINE_CLASSES = {"diffusion": StableDiffusionXLPipeline, "flow": StableDiffusion3Pipeline}


class ModelLoadError(RuntimeError):
    """A model could not be found, fetched or read."""


def default_device() -> torch.device:
    from accelerate import PartialState

    return PartialState().device


def default_dtype(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def read_model_index(folder: Path) -> dict:
    """The folder's ``model_index.json`` as a dict; ``ModelLoadError`` when it is missing or not a model index."""
    index = folder / "model_index.json"
    if not index.is_file():
        raise ModelLoadError(f"{folder} is not a diffusers pipeline folder: it has no model_index.json")
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:  # ValueError: not JSON, or not UTF-8
        raise ModelLoadError(f"{index} cannot be read as JSON: {e}") from e
    if not isinstance(data, dict):
        raise ModelLoadError(f"{index} is not a diffusers model index: it holds a JSON {type(data).__name__}, not an "
                             "object naming the pipeline's class and components")
    return data


def pipeline_family(index: dict) -> str | None:
    """"flow" (an SD3-class pipeline), "diffusion" (SDXL-class) or None, from a model index's class name."""
    name = index.get("_class_name", "")
    if name.startswith("StableDiffusion3"):
        return "flow"
    if name.startswith("StableDiffusionXL"):
        return "diffusion"
    return None


def load_pipeline(
    model: str, device: str | torch.device | None = None, dtype: torch.dtype | None = None
) -> tuple[DiffusionPipeline, Preset | None]:
    """Load ``model`` (preset name, hub id or local folder) onto ``device``; returns (pipeline, preset or None)."""
    if not model or not str(model).strip():
        raise ModelLoadError("no model given: name a preset (toy-sdxl, toy-sd3, ...), a hub id or a local folder")
    preset = find_preset(model)
    source = preset.source if preset else model
    device = torch.device(device) if device is not None else default_device()
    dtype = dtype or default_dtype(device)
    folder = Path(source)
    kwargs = {}
    if folder.exists():
        if not folder.is_dir():
            raise ModelLoadError(f"{folder} is a file; a diffusers pipeline is a folder with model_index.json")
        index = read_model_index(folder)
        family = pipeline_family(index)
        if family == "flow" and index.get("text_encoder_3") in (None, [None, None]):
            kwargs = dict(text_encoder_3=None, tokenizer_3=None)  # the toy SD3 has no T5, by design
    elif preset is not None and preset.name.startswith("toy-"):
        raise ModelLoadError(f"the toy preset {model!r} is missing its weights at {folder}; restore checkpoints/ "
                             "from the repository (git checkout -- checkpoints)")
    elif source.startswith((".", "/", "~")) or source.count("/") != 1:
        raise ModelLoadError(f"{source!r} is neither a preset, an existing folder, nor a hub id of the form owner/name")
    else:
        family = preset.family if preset else None
    cls = PIPELINE_CLASSES.get(family, DiffusionPipeline)
    try:
        pipe = cls.from_pretrained(source, dtype=dtype, **kwargs)
    except Exception as e:  # noqa: BLE001 - every way of failing becomes one clear message
        where = f"the folder {source}" if folder.exists() else f"the Hugging Face hub id {source!r}"
        hint = ("check that the folder is a complete diffusers pipeline" if folder.exists() else
                "this needs internet access to huggingface.co (and `huggingface-cli login` for gated models such as "
                "SD3.5), or download it once and pass the local folder")
        raise ModelLoadError(f"could not load {model!r} from {where}: {type(e).__name__}: {str(e)[:300]}. "
                             f"Fix: {hint}.") from e
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    attend_repeats_once(pipe)  # without T5, SD3 prompts end in 256 identical tokens: attend to them once
    return pipe, preset
