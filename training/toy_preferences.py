"""The toy preference set: pairs of images per training caption, labelled by the toy taste through a
Bradley-Terry draw (the toy world's stand-in for Pick-a-Pic voters).

Pairs mix three sources so a reward sees the whole range: toy-sdxl vs toy-sd3 samples, two toy-sdxl samples
(different seeds), and two renders of the caption's scene with re-drawn size, position, contrast, blur and noise.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image

from alignment import generate, load_pipeline
from toyworld import caption_for, render, sample_scene, taste

from .preference_data import bradley_terry_labels, write_pickapic


def _varied_render(scene, rng) -> Image.Image:
    other = sample_scene(rng, split="all")
    varied = dataclasses.replace(scene, radius=other.radius, cx=other.cx, cy=other.cy, rotation=other.rotation,
                                 contrast=other.contrast, blur=other.blur, noise=other.noise, noise_seed=other.noise_seed)
    if rng.random() < 0.2:  # sometimes the wrong shape, as a model would draw it
        varied = dataclasses.replace(varied, shape=other.shape)
    return Image.fromarray(render(varied))


def make_toy_pairs(n_captions: int, seed: int = 0, temperature: float = 1.0, device: str | None = None) -> list[dict]:
    rng = np.random.default_rng(seed)
    sdxl, sdxl_preset = load_pipeline("toy-sdxl", device=device)
    sd3, sd3_preset = load_pipeline("toy-sd3", device=device)
    rows = []
    for i in range(n_captions):
        scene = sample_scene(rng, split="train")
        caption = caption_for(scene, rng)
        kind = i % 3
        if kind == 0:
            a = generate(sdxl, caption, seed=seed * 1_000_003 + i, preset=sdxl_preset).images[0]
            b = generate(sd3, caption, seed=seed * 1_000_003 + i, preset=sd3_preset).images[0]
            models = ("toy-sdxl", "toy-sd3")
        elif kind == 1:
            a, b = (generate(sdxl, caption, seed=seed * 1_000_003 + i * 2 + k, preset=sdxl_preset).images[0]
                    for k in range(2))
            models = ("toy-sdxl", "toy-sdxl")
        else:
            a, b = _varied_render(scene, rng), _varied_render(scene, rng)
            models = ("render", "render")
        label_0, label_1 = bradley_terry_labels(taste(a, caption).score, taste(b, caption).score, rng, temperature)
        if rng.random() < 0.5:  # no side bias
            a, b, models, (label_0, label_1) = b, a, models[::-1], (label_1, label_0)
        rows.append(dict(caption=caption, image_0=a, image_1=b, label_0=label_0, label_1=label_1,
                         model_0=models[0], model_1=models[1]))
    return rows


def build(n_captions: int, out, seed: int = 0, temperature: float = 1.0):
    return write_pickapic(make_toy_pairs(n_captions, seed, temperature), out)
