"""The toy preference set: pairs of images per caption, labelled by the toy taste through a Bradley-Terry draw
(the toy world's stand-in for Pick-a-Pic voters).

Pairs mix three sources so a reward sees the whole range: toy-sdxl vs toy-sd3 samples, two toy-sdxl samples
(different seeds), and two renders of the caption's scene with re-drawn size, position, contrast, blur and noise.
Captions come from the training split by default; ``split="heldout"`` makes the held-out evaluation pairs.

``detail_share`` > 0 replaces that share of the pairs with *detail pairs*: renders of one scene that differ only in
blur and noise, or a soft (blurred or noisy) faithful render against a sharp, clean mistake (wrong shape, colour or
background). In model samples the sharper image is mostly the faithful one, and a reward trained on them learns
sharpness as a stand-in for fidelity (docs/evaluation.md, the toy reward); these pairs
separate the two. They are labelled by the taste like every other pair.
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
RENDER = ("render", "render")
DETAIL = ("render-detail", "render-detail")


def parse_sources(specs) -> tuple[tuple[str, str], ...]:
    """``["toy-sdxl:toy-sd3", "toy-sd3:toy-sd3", "render:render"]`` (or the same as pairs) -> pair sources, or a
    ValueError that says what is wrong. A side is a model (preset name, hub id or folder) or ``render``; a render is
    paired with a render."""
    pairs = []
    for spec in specs:
        parts = str(spec).split(":") if isinstance(spec, str) else list(spec)
        sides = tuple(str(part).strip() for part in parts)
        if len(sides) != 2 or not all(sides):
            raise ValueError(f"a source is two sides joined by ':', e.g. toy-sdxl:toy-sd3 or render:render; got {spec!r}")
        if "render" in sides and sides != RENDER:
            raise ValueError(f"a render is paired only with a render (render:render), got {spec!r}")
        pairs.append(sides)
    if not pairs:
        raise ValueError("give at least one source")
    return tuple(pairs)


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


def _detail_pair(scene, rng) -> tuple[Image.Image, Image.Image]:
    """Two renders of ``scene`` that differ in detail: half the time only in blur and noise, otherwise a soft
    faithful render against a sharp, clean one with one attribute wrong."""
    def redrawn():
        other = sample_scene(rng, split="all")
        return dataclasses.replace(scene, blur=other.blur, noise=other.noise, noise_seed=other.noise_seed)

    if rng.random() < 0.5:
        return Image.fromarray(render(redrawn())), Image.fromarray(render(redrawn()))
    soft = dataclasses.replace(scene, blur=max(scene.blur, rng.uniform(1.0, 2.5)),
                               noise=max(scene.noise, rng.uniform(0.0, 0.12)))
    other = sample_scene(rng, split="all")  # one attribute wrong: the shape, the colour or the background
    options = [dict(shape=other.shape)] if other.shape != scene.shape else []
    if other.colour not in (scene.colour, scene.background):
        options.append(dict(colour=other.colour))
    if other.background not in (scene.background, scene.colour):
        options.append(dict(background=other.background))
    wrong = options[rng.integers(len(options))] if options else {}
    sharp = dataclasses.replace(scene, blur=0.0, noise=0.0, **wrong)
    return Image.fromarray(render(soft)), Image.fromarray(render(sharp))


def make_toy_pairs(n_captions: int, seed: int = 0, temperature: float = 1.0, device: str | None = None,
                   split: str = "train", batch: int = 128, detail_share: float = 0.0,
                   sources=SOURCES) -> list[dict]:
    """Pair ``i`` takes its source from ``sources[i % len(sources)]`` (default ``SOURCES``), or is a detail pair (a
    random ``detail_share`` of them); model samples are drawn in batches of ``batch`` captions (one seed per batch
    and side)."""
    if not 0 <= detail_share <= 1:
        raise ValueError(f"detail_share must be in [0, 1], got {detail_share}")
    sources = parse_sources(sources)
    rng = np.random.default_rng((seed, 7))
    scenes = [sample_scene(rng, split=split) for _ in range(n_captions)]
    captions = [caption_for(s, rng) for s in scenes]
    detail = set(np.flatnonzero(np.random.default_rng((seed, 8)).random(n_captions) < detail_share).tolist())
    pipes: dict = {}  # loaded when a pair needs model samples
    images: dict[int, tuple[Image.Image, Image.Image]] = {}
    for kind, source in enumerate(sources):
        if source == RENDER:
            continue
        members = [i for i in range(n_captions) if i % len(sources) == kind and i not in detail]
        for start in tqdm(range(0, len(members), batch), desc=f"pairs {source}"):
            chunk = members[start : start + batch]
            sides = []
            for side, name in enumerate(source):
                if name not in pipes:
                    pipes[name] = load_pipeline(name, device=device)
                pipe, preset = pipes[name]
                sides.append(generate(pipe, [captions[i] for i in chunk], preset=preset,
                                      seed=(seed * 1_000_003 + start) * 2 + side).images)
            images.update({i: (a, b) for i, a, b in zip(chunk, *sides)})
    rows = []
    for i, (scene, caption) in enumerate(zip(scenes, captions)):
        if i in detail:
            (a, b), models = _detail_pair(scene, rng), DETAIL
        else:
            a, b = images[i] if i in images else (_varied_render(scene, rng), _varied_render(scene, rng))
            models = sources[i % len(sources)]
        label_0, label_1 = bradley_terry_labels(taste(a, caption).score, taste(b, caption).score, rng, temperature)
        if rng.random() < 0.5:  # no side bias
            a, b, models, (label_0, label_1) = b, a, models[::-1], (label_1, label_0)
        rows.append(dict(caption=caption, image_0=a, image_1=b, label_0=label_0, label_1=label_1,
                         model_0=models[0], model_1=models[1]))
    return rows


def build(n_captions: int, out, seed: int = 0, temperature: float = 1.0, split: str = "train",
          device: str | None = None, detail_share: float = 0.0, sources=SOURCES):
    return write_pickapic(make_toy_pairs(n_captions, seed, temperature, device=device, split=split,
                                         detail_share=detail_share, sources=sources), out)
