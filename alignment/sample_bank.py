"""The sample bank of flow-matching alignment: N baseline samples per (model, prompt, seed), scored once.

    bank = SampleBank(pipe, "toy-pickscore", preset=preset)
    entry = bank.get("a red star on a blue background", seed=0, n=8)   # 8 pipeline samples, scored
    entry = bank.get("a red star on a blue background", seed=0, n=16)  # the same 8 plus 8 new ones
    entry.latents, entry.images, entry.rewards

Sample k of (prompt, seed) starts from noise drawn with its own seed, ``sample_seed(seed, k)``, so a sample is the
same whether it was made alone, in a batch, or when the bank was extended. Samples are made in batches of at most
``batch_size`` (peak memory does not grow with N beyond the bank itself), decoded with the pipeline's VAE and
image processor, and scored once. Entries live in memory (least recently used dropped beyond ``max_entries``) and,
with ``cache_dir``, on disk.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .checks import check_seed, whole_number
from .lru import LRU
from .presets import Preset, sampling_settings
from .rewards import Reward, load_reward
from .sampling import check_prompt, encode_prompt_kwargs, execution_device, with_component

MAX_BANK = 1024  # samples per (prompt, seed): beyond this a bank is a data set, not an inference-time cache
DEFAULT_REWARD = "toy-pickscore"


@dataclass(frozen=True)
class Settings:
    """How the pipeline is sampled: steps, classifier-free guidance scale and resolution."""

    steps: int
    guidance_scale: float
    height: int
    width: int

    def pipe_kwargs(self) -> dict:
        return dict(num_inference_steps=self.steps, guidance_scale=self.guidance_scale, height=self.height,
                    width=self.width)


def resolve_settings(pipe, preset: Preset | None = None, steps: int | None = None,
                     guidance_scale: float | None = None) -> Settings:
    """The preset's sampling defaults (or the pipeline's), overridden by what is given; a ValueError if out of range."""
    steps, guidance = sampling_settings(preset, steps, guidance_scale)
    size = preset.resolution if preset else pipe.default_sample_size * pipe.vae_scale_factor
    return Settings(steps, guidance, int(size), int(size))


def check_n(n, max_n: int = MAX_BANK, name: str = "n (the bank size)") -> int:
    """The bank size: a whole number from 1 to ``max_n``. The studio passes its own, smaller limit, and ``name`` as
    its page calls the knob."""
    return whole_number(n, name, 1, max_n)


def sample_seed(seed: int, k: int) -> int:
    """The noise seed of bank sample k of ``seed``: a hash of (seed, k), independent of ``seed``'s own noise."""
    return int(np.random.SeedSequence([seed, k]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def start_noise(pipe, seeds: list[int], settings: Settings) -> torch.Tensor:
    """The pipeline's own initial latents, one per seed, each from ``torch.Generator("cpu").manual_seed(seed)``:
    image i is what ``pipe(prompt, generator=Generator().manual_seed(seeds[i]))`` would start from."""
    generators = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
    return pipe.prepare_latents(len(seeds), pipe.transformer.config.in_channels, settings.height, settings.width,
                                pipe.transformer.dtype, execution_device(pipe), generators)


@torch.no_grad()
def decode(pipe, latents: torch.Tensor) -> torch.Tensor:
    """Latents -> uint8 pixels (N, H, W, 3) with the pipeline's VAE and image processor (what output_type="pil"
    would give)."""
    x = latents / pipe.vae.config.scaling_factor + pipe.vae.config.shift_factor
    image = pipe.vae.decode(x.to(pipe.vae.dtype), return_dict=False)[0]
    image = pipe.image_processor.postprocess(image, output_type="pt").float()
    return (image * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()


def to_images(pixels: torch.Tensor) -> list[Image.Image]:
    return [Image.fromarray(p.numpy()) for p in pixels]


def score(reward: Reward, pixels: torch.Tensor, prompts: list[str]) -> torch.Tensor:
    """The reward of uint8 pixels (N, H, W, 3), exactly as it would score the PIL images."""
    return reward.score(pixels.permute(0, 3, 1, 2).float() / 255.0, prompts).float().cpu()


@dataclass
class BankEntry:
    """N samples of one (model, prompt, seed): final latents (the pipeline's latent space, x0 of the flow),
    decoded pixels, rewards, the noise seed and compute seconds (generation, decoding, scoring) of each sample."""

    latents: torch.Tensor  # (N, C, h, w) float32, CPU
    pixels: torch.Tensor  # (N, H, W, 3) uint8
    rewards: torch.Tensor  # (N,) float32
    seeds: torch.Tensor  # (N,) int64
    seconds: torch.Tensor  # (N,) float64

    def __len__(self) -> int:
        return self.latents.shape[0]

    @property
    def images(self) -> list[Image.Image]:
        return to_images(self.pixels)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors().values())

    def head(self, n: int) -> BankEntry:
        return BankEntry(**{k: t[:n] for k, t in self.tensors().items()})

    def tensors(self) -> dict[str, torch.Tensor]:
        return dict(latents=self.latents, pixels=self.pixels, rewards=self.rewards, seeds=self.seeds,
                    seconds=self.seconds)

    @staticmethod
    def cat(a: BankEntry | None, b: BankEntry) -> BankEntry:
        if a is None:
            return b
        ta, tb = a.tensors(), b.tensors()
        return BankEntry(**{k: torch.cat([ta[k], tb[k]]) for k in ta})


class SampleBank:
    """N baseline samples per (model, prompt, seed), made in bounded batches, scored once, cached.

    ``reward`` is a name for ``load_reward`` or a Reward. ``preset``, ``steps`` and ``guidance_scale`` fix how the
    pipeline is sampled (the guided trajectory must use the same settings). ``model`` names the pipeline in cache
    keys (default: the folder or hub id it was loaded from).

    ``workers`` > 1 makes the missing samples in that many threads at once, each with its own copy of the
    scheduler (a CPU with one torch thread per worker: twice as fast on two cores, and unlike two OpenMP threads it
    does not slow down many times when another process is busy). Every sample starts from its own seed's noise, so
    the bank is the same for any ``workers`` and ``batch_size`` (up to float rounding)."""

    def __init__(self, pipe, reward: str | Reward = DEFAULT_REWARD, *, preset: Preset | None = None,
                 steps: int | None = None, guidance_scale: float | None = None, batch_size: int = 8,
                 max_entries: int = 64, cache_dir: str | Path | None = None, model: str | None = None,
                 workers: int = 1):
        if not 1 <= int(batch_size) <= MAX_BANK:
            raise ValueError(f"batch_size must be between 1 and {MAX_BANK}, got {batch_size}")
        if int(max_entries) < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        if int(workers) < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.workers = int(workers)
        self.pipe = pipe
        self.reward = load_reward(reward) if isinstance(reward, str) else reward
        self.settings = resolve_settings(pipe, preset, steps, guidance_scale)
        self.batch_size, self.max_entries = int(batch_size), int(max_entries)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.model = model or (preset.name if preset else getattr(pipe, "name_or_path", None) or type(pipe).__name__)
        self._memory: OrderedDict[str, BankEntry] = OrderedDict()
        self._embeds = LRU(self.max_entries)  # prompt -> (its encode_prompt_kwargs on the CPU, their device)
        self.pipeline_calls = 0  # diagnostics: how often and how wide the pipeline was called
        self.largest_batch = 0
        self.samples_made = 0

    @property
    def reward_name(self) -> str:
        return getattr(self.reward, "name", type(self.reward).__name__)

    def key(self, prompt: str, seed: int) -> str:
        s = self.settings
        fields = [self.model, prompt, seed, s.steps, s.guidance_scale, s.height, s.width, self.reward_name]
        return hashlib.sha256(json.dumps(fields).encode()).hexdigest()[:32]

    def get(self, prompt: str, seed: int = 0, n: int = 8) -> BankEntry:
        """The first ``n`` samples of (prompt, seed): from memory, from disk, or made now (only the missing ones)."""
        prompt, seed, n = check_prompt(prompt), check_seed(seed), check_n(n)
        key = self.key(prompt, seed)
        entry = self._memory.pop(key, None)
        if entry is None:
            entry = self._load(key)
        have = len(entry) if entry is not None else 0
        if have < n:
            entry = BankEntry.cat(entry, self._make(prompt, [sample_seed(seed, k) for k in range(have, n)]))
            self._save(key, entry)
        self._memory[key] = entry  # most recently used last
        while len(self._memory) > self.max_entries:
            self._memory.popitem(last=False)
        return entry.head(n)

    def _make(self, prompt: str, seeds: list[int]) -> BankEntry:
        size = min(self.batch_size, math.ceil(len(seeds) / self.workers))
        chunks = [seeds[i : i + size] for i in range(0, len(seeds), size)]
        # The prompt is encoded once (not once per sample) and every chunk gets its embeddings. With workers this
        # also matters for correctness: fast tokenizers raise "Already borrowed" when two threads use them.
        start = time.perf_counter()
        embeds = self.prompt_embeddings([prompt])
        encode_seconds = time.perf_counter() - start  # ~0 when the prompt was encoded before
        if self.workers == 1 or len(chunks) == 1:
            parts = [self._score(prompt, *self._generate(self.pipe, embeds, chunk)) for chunk in chunks]
        else:
            views = [with_component(self.pipe, scheduler=copy.deepcopy(self.pipe.scheduler))
                     for _ in range(min(self.workers, len(chunks)))]  # schedulers keep per-call state
            for view in views:
                view.set_progress_bar_config(disable=True)

            def work(w: int) -> list[tuple]:  # worker w makes chunks w, w + W, ...
                return [self._generate(views[w], embeds, chunk) for chunk in chunks[w :: len(views)]]

            with ThreadPoolExecutor(len(views)) as pool:
                done = list(pool.map(work, range(len(views))))
            parts = [self._score(prompt, *done[i % len(views)][i // len(views)]) for i in range(len(chunks))]
        entry = None
        for part in parts:
            self.pipeline_calls += 1
            self.largest_batch = max(self.largest_batch, len(part))
            self.samples_made += len(part)
            entry = BankEntry.cat(entry, part)
        entry.seconds += encode_seconds / len(entry)  # the samples made now share their prompt's encoding
        return entry

    def prompt_embeddings(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        """What the pipeline's ``encode_prompt`` makes of each prompt (and the empty negative prompt), one row per
        prompt, ready to pass to the pipeline as ``prompt_embeds=`` etc. Each prompt is encoded once and kept on the
        CPU, like the bank's samples (the ``max_entries`` most recently used prompts); the guided trajectory reuses
        what its bank was made with."""
        def encoded(prompt: str) -> tuple[dict[str, torch.Tensor], torch.device]:
            embeds = self._encode(prompt)
            return {k: v.cpu() for k, v in embeds.items()}, next(iter(embeds.values())).device

        rows = [self._embeds.get(prompt, partial(encoded, prompt)) for prompt in prompts]
        device = rows[0][1]  # where the pipeline encoded them, and computes
        return {name: torch.cat([row[name] for row, _ in rows]).to(device) for name in rows[0][0]}

    def _encode(self, prompt: str) -> dict[str, torch.Tensor]:
        return encode_prompt_kwargs(self.pipe, prompt, self.settings.guidance_scale > 1)

    def _generate(self, pipe, embeds: dict, chunk: list[int]) -> tuple[torch.Tensor, torch.Tensor, list, float]:
        """Latents and decoded pixels of one chunk of seeds of one prompt (``embeds``: its ``prompt_embeddings``)."""
        start = time.perf_counter()
        text = {k: v.expand(len(chunk), *v.shape[1:]) for k, v in embeds.items()}
        latents = pipe(**text, generator=[torch.Generator("cpu").manual_seed(s) for s in chunk],
                       output_type="latent", **self.settings.pipe_kwargs()).images
        pixels = decode(pipe, latents)
        return latents, pixels, chunk, time.perf_counter() - start

    def _score(self, prompt: str, latents, pixels, chunk: list[int], seconds: float) -> BankEntry:
        start = time.perf_counter()
        rewards = score(self.reward, pixels, [prompt] * len(chunk))
        seconds = (seconds + time.perf_counter() - start) / len(chunk)
        return BankEntry(latents.float().cpu(), pixels, rewards, torch.tensor(chunk, dtype=torch.int64),
                         torch.full((len(chunk),), seconds, dtype=torch.float64))

    def _path(self, key: str) -> Path | None:
        return self.cache_dir / f"{key}.pt" if self.cache_dir is not None else None

    def _load(self, key: str) -> BankEntry | None:
        path = self._path(key)
        if path is None or not path.is_file():
            return None
        try:
            return BankEntry(**torch.load(path, map_location="cpu", weights_only=True))
        except Exception:  # noqa: BLE001 - a broken cache file is remade, never trusted
            return None

    def _save(self, key: str, entry: BankEntry) -> None:
        path = self._path(key)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(entry.tensors(), tmp)
        tmp.replace(path)

    def clear(self) -> None:
        """Drop the in-memory entries and prompt embeddings (files on disk stay)."""
        self._memory.clear()
        self._embeds.clear()
