"""The toy preference set: pairs of images per caption, labelled by the toy taste through a Bradley-Terry draw
(the toy world's stand-in for Pick-a-Pic voters).

Pairs mix three sources so a reward sees the whole range: toy-sdxl vs toy-sd3 samples, two toy-sdxl samples
(different seeds), and two renders of the caption's scene with re-drawn size, position, contrast, blur and noise.
Captions come from the training split by default; ``split="heldout"`` makes the held-out evaluation pairs.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image
from tqdm import tqdm

from alignment import generate, load_pipeline
from toyworld import caption_for, render, sample_scene, taste

from .preference_data import bradley_terry_labels, write_pickapic

SOURCES = (("toy-sdxl", "toy-sd3"), ("toy-sdxl", "toy-sdxl"), ("render", "render"))


def _varied_render(scene, rng) -> Image.Image:
    other = sample_scene(rng, split="all")
    varied = dataclasses.replace(scene, radius=other.radius, cx=other.cx, cy=other.cy, rotation=other.rotation,
                                 contrast=other.contrast, blur=other.blur, noise=other.noise, noise_seed=other.noise_seed)
    # sometimes the wrong shape, colour or background, as a model would draw them
    mistake = rng.random()
    if mistake < 0.2:
        varied = dataclasses.replace(varied, shape=other.shape)
    elif mistake < 0.3 and other.colour != scene.background:
        varied = dataclasses.replace(varied, colour=other.colour)
    elif mistake < 0.4 and other.background != scene.colour:
        varied = dataclasses.replace(varied, background=other.background)
    return Image.fromarray(render(varied))


def make_toy_pairs(n_captions: int, seed: int = 0, temperature: float = 1.0, device: str | None = None,
                   split: str = "train", batch: int = 128) -> list[dict]:
    """Pair ``i`` takes its source from ``SOURCES[i % 3]``; model samples are drawn in batches of ``batch``
    captions (one seed per batch and side)."""
    rng = np.random.default_rng((seed, 7))
    scenes = [sample_scene(rng, split=split) for _ in range(n_captions)]
    captions = [caption_for(s, rng) for s in scenes]
    pipes = {name: load_pipeline(name, device=device) for name in ("toy-sdxl", "toy-sd3")}
    images: dict[int, tuple[Image.Image, Image.Image]] = {}
    for kind in (0, 1):
        members = [i for i in range(n_captions) if i % 3 == kind]
        for start in tqdm(range(0, len(members), batch), desc=f"pairs {SOURCES[kind]}"):
            chunk = members[start : start + batch]
            sides = []
            for side, name in enumerate(SOURCES[kind]):
                pipe, preset = pipes[name]
                sides.append(generate(pipe, [captions[i] for i in chunk], preset=preset,
                                      seed=(seed * 1_000_003 + start) * 2 + side).images)
            images.update({i: (a, b) for i, a, b in zip(chunk, *sides)})
    rows = []
    for i, (scene, caption) in enumerate(zip(scenes, captions)):
        a, b = images[i] if i in images else (_varied_render(scene, rng), _varied_render(scene, rng))
        models = SOURCES[i % 3]
        label_0, label_1 = bradley_terry_labels(taste(a, caption).score, taste(b, caption).score, rng, temperature)
        if rng.random() < 0.5:  # no side bias
            a, b, models, (label_0, label_1) = b, a, models[::-1], (label_1, label_0)
        rows.append(dict(caption=caption, image_0=a, image_1=b, label_0=label_0, label_1=label_1,
                         model_0=models[0], model_1=models[1]))
    return rows


def build(n_captions: int, out, seed: int = 0, temperature: float = 1.0, split: str = "train",
          device: str | None = None):
    return write_pickapic(make_toy_pairs(n_captions, seed, temperature, device=device, split=split), out)
