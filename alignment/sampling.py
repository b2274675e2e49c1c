"""Baseline sampling: the pipeline's own call, with a preset's defaults, a seed, a timer and input checks."""

from __future__ import annotations

import inspect
import threading
import time
import weakref
from dataclasses import dataclass

import torch
from PIL import Image

from .checks import check_seed
from .presets import Preset, sampling_settings

MAX_PROMPT_CHARS = 2000  # CLIP reads 77 tokens; longer text is almost surely a paste error


@dataclass
class Generation:
    images: list[Image.Image]
    prompts: list[str]
    seed: int
    steps: int
    guidance_scale: float
    seconds: float


def check_prompt(prompt: str) -> str:
    """Return the prompt with whitespace normalised, or raise ValueError saying what is wrong with it."""
    if not isinstance(prompt, str):
        raise ValueError(f"the prompt must be text, not {type(prompt).__name__}")
    cleaned = " ".join("".join(ch if ch.isprintable() else " " for ch in prompt).split())
    if not cleaned:
        raise ValueError("the prompt is empty: describe the image, e.g. 'a red star on a blue background'")
    if len(cleaned) > MAX_PROMPT_CHARS:
        raise ValueError(f"the prompt has {len(cleaned)} characters; at most {MAX_PROMPT_CHARS} are accepted "
                         "(the text encoders read only the first 77 tokens)")
    return cleaned


def generate(
    pipe,
    prompts: str | list[str],
    *,
    seed: int = 0,
    steps: int | None = None,
    guidance_scale: float | None = None,
    preset: Preset | None = None,
) -> Generation:
    """Sample one image per prompt with the pipeline's own scheduler. The noise comes from a CPU generator seeded
    with ``seed``, so a seed gives the same image on every device."""
    prompts = [check_prompt(p) for p in ([prompts] if isinstance(prompts, str) else prompts)]
    steps, guidance = sampling_settings(preset, steps, guidance_scale)
    generator = torch.Generator("cpu").manual_seed(check_seed(seed))
    kwargs = {}
    if preset is not None:
        kwargs.update(height=preset.resolution, width=preset.resolution)
    start = time.perf_counter()
    images = pipe(prompts, num_inference_steps=steps, guidance_scale=guidance, generator=generator, **kwargs).images
    seconds = time.perf_counter() - start
    return Generation(images, prompts, int(seed), steps, guidance, seconds)


PROMPT_EMBEDDING_NAMES = ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds",
                          "negative_pooled_prompt_embeds")


def encode_prompt_kwargs(pipe, prompt, do_classifier_free_guidance: bool) -> dict[str, torch.Tensor]:
    """What an SDXL- or SD3-class pipeline's ``encode_prompt`` makes of ``prompt`` (a string or a list; the
    negative prompt empty), as the keyword arguments its ``__call__`` takes instead of the prompt
    (``prompt_embeds=``, ``pooled_prompt_embeds=``, and the negative ones with classifier-free guidance)."""
    extra = {"prompt_2": None, "prompt_3": None} if "prompt_3" in inspect.signature(
        pipe.encode_prompt).parameters else {"prompt_2": None}
    with torch.no_grad():
        out = pipe.encode_prompt(prompt=prompt, **extra, device=execution_device(pipe), num_images_per_prompt=1,
                                 do_classifier_free_guidance=do_classifier_free_guidance)
    return {name: value for name, value in zip(PROMPT_EMBEDDING_NAMES, out, strict=True) if value is not None}


class TransformerStandIn(torch.nn.Module):
    """Base of the modules that take a pipeline's transformer's place and hold it as ``self.transformer``: what
    a pipeline reads off its transformer, read through."""

    @property
    def config(self):
        return self.transformer.config

    @property
    def dtype(self) -> torch.dtype:
        return self.transformer.dtype

    @property
    def device(self) -> torch.device:
        return self.transformer.device


_VIEW_CLASSES: dict[type, type] = {}


def _view_class(cls: type) -> type:
    """``cls`` whose ``_execution_device`` is fixed per instance. diffusers works it out on every call by walking
    every submodule of every component for offloading hooks: ~17 ms on the toy models, a tenth of a β change."""
    base = getattr(cls, "_view_of", cls)
    if base not in _VIEW_CLASSES:
        _VIEW_CLASSES[base] = type(base.__name__, (base,), {
            "__module__": base.__module__, "__doc__": base.__doc__, "_view_of": base,
            "_execution_device": property(lambda self: self._view_device)})
    return _VIEW_CLASSES[base]


_DEVICES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # pipeline -> (its fingerprint, device)
_DEVICES_LOCK = threading.Lock()


def execution_device(pipe) -> torch.device:
    """``pipe._execution_device``, worked out once per pipeline while its components and device stay the same.
    diffusers works it out on every read by walking every submodule of every component for offloading hooks: 2 ms
    on the toy models, several times that on SDXL-Turbo, which a one-step call at batch 1 (30 ms on an H100) feels.
    Offloading moves the components, so it changes ``pipe.device`` and is seen."""
    if isinstance(getattr(pipe, "_view_device", None), torch.device):
        return pipe._view_device
    # the registered components, read off the config's names (``pipe.components`` inspects the class's signature)
    fingerprint = (tuple(id(getattr(pipe, name, None)) for name in pipe.config if not name.startswith("_")),
                   pipe.device)
    with _DEVICES_LOCK:
        known = _DEVICES.get(pipe)
    if known is not None and known[0] == fingerprint:
        return known[1]
    device = pipe._execution_device
    with _DEVICES_LOCK:
        _DEVICES[pipe] = (fingerprint, device)
    return device


def with_component(pipe, *, device: torch.device | None = None, **replace):
    """The same pipeline (components and settings such as ``force_zeros_for_empty_prompt``) with some components
    replaced (or none: a view of it). Not ``from_pipe``: that would recast the shared modules to one dtype. The view
    runs where ``pipe`` runs now (``execution_device(pipe)`` unless given), without diffusers working that out
    again on every call."""
    components = pipe.components
    settings = {k: v for k, v in pipe.config.items() if not k.startswith("_") and k not in components}
    device = device if device is not None else execution_device(pipe)
    view = _view_class(type(pipe))(**{**components, **replace}, **settings)
    view._view_device = device
    return view
