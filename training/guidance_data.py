"""Cache what guidance training reads, once: per image of a Pick-a-Pic-format set, its VAE latent ``x0``, the
prompt's text embeddings (the UNet's ``prompt_embeds`` and the pooled ``text_embeds``), its reward ``r(x0, y)``,
and whether it was the preferred image of its pair.

    python -m training guidance-cache --pairs runs/toy-pickapic --model toy-sdxl --reward toy-pickscore \\
        --out runs/guidance-cache [--models toy-sdxl]
    accelerate launch -m training guidance-cache ...      # the same, sharded over processes

Rows are cut into chunks of ``chunk`` pairs; process ``k`` of ``n`` takes the chunks ``i`` with ``i % n == k``; each
chunk is one file written atomically, so a rerun (or another process count) skips the chunks already on disk. Rows
with a missing caption, an undecodable image or bad labels are skipped and counted (``iter_pairs``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
import torch
from accelerate import PartialState
from tqdm import tqdm

from alignment import load_pipeline
from alignment.rewards import load_reward

from .preference_data import LoadReport, iter_pairs

FIELDS = ("latents", "prompt_embeds", "text_embeds", "rewards", "preferred")


@dataclass
class CacheConfig:
    pairs: Path
    out: Path
    model: str = "toy-sdxl"
    reward: str = "toy-pickscore"
    models: tuple[str, ...] = ()  # keep only images made by these (Pick-a-Pic's model_0/1 columns); () = all
    chunk: int = 2048
    batch: int = 256
    limit: int | None = None


def _chunks(source, chunk: int, report: LoadReport, limit: int | None):
    pairs = iter_pairs(source, report=report, limit=limit)
    i = 0
    while True:
        rows = list(islice(pairs, chunk))
        if not rows:
            return
        yield i, rows
        i += 1


@torch.no_grad()
def encode_rows(pipe, reward, rows, models: tuple[str, ...], batch: int) -> dict[str, torch.Tensor]:
    """One image per kept (row, side): latents, embeddings, rewards and the preferred flag."""
    items = []
    for r in rows:
        for image, model, mine, other in ((r.image_0, r.model_0, r.label_0, r.label_1),
                                          (r.image_1, r.model_1, r.label_1, r.label_0)):
            if not models or model in models:
                items.append((image, r.caption, mine > other))
    out = {k: [] for k in FIELDS}
    device = pipe.unet.device
    vae = pipe.vae
    for s in range(0, len(items), batch):
        part = items[s : s + batch]
        images = [im for im, _, _ in part]
        captions = [c for _, c, _ in part]
        pixels = torch.from_numpy(np.stack([np.asarray(im.convert("RGB")) for im in images])).to(device)
        pixels = pixels.permute(0, 3, 1, 2).to(vae.dtype) / 127.5 - 1.0
        latents = vae.encode(pixels).latent_dist.mean * vae.config.scaling_factor
        embeds, _, pooled, _ = pipe.encode_prompt(captions, device=device, num_images_per_prompt=1,
                                                  do_classifier_free_guidance=False)
        out["latents"].append(latents.half().cpu())
        out["prompt_embeds"].append(embeds.half().cpu())
        out["text_embeds"].append(pooled.half().cpu())
        out["rewards"].append(reward.score(images, captions).float().cpu())
        out["preferred"].append(torch.tensor([p for _, _, p in part]))
    if not items:
        return {}
    return {k: torch.cat(v) for k, v in out.items()}


def build_cache(cfg: CacheConfig) -> dict:
    state = PartialState()
    pipe, _ = load_pipeline(cfg.model, device=str(state.device))
    reward = load_reward(cfg.reward, device=state.device)
    cfg.out.mkdir(parents=True, exist_ok=True)
    report = LoadReport()
    written = 0
    for i, rows in tqdm(_chunks(cfg.pairs, cfg.chunk, report, cfg.limit), desc=f"cache (process {state.process_index})",
                        disable=not state.is_local_main_process):
        path = cfg.out / f"chunk-{i:05d}.pt"
        if i % state.num_processes != state.process_index or path.exists():
            continue
        data = encode_rows(pipe, reward, rows, cfg.models, cfg.batch)
        tmp = path.with_suffix(f".tmp{state.process_index}")
        torch.save(data, tmp)
        os.replace(tmp, path)  # atomic: a killed run leaves no half chunk
        written += 1
    info = {"pairs": str(cfg.pairs), "model": cfg.model, "reward": cfg.reward, "models": list(cfg.models),
            "read": report.read, "kept": report.kept, "skipped": dict(report.skipped)}
    if state.is_main_process:
        (cfg.out / "cache.json").write_text(json.dumps(info, indent=1))
    print(f"process {state.process_index}: wrote {written} chunks; {report}")
    return info


def load_cache(folder: Path, device=None) -> dict[str, torch.Tensor]:
    """All chunks of a cache, concatenated (chunks written by an interrupted run are complete by construction)."""
    files = sorted(Path(folder).glob("chunk-*.pt"))
    if not files:
        raise FileNotFoundError(f"no cached chunks in {folder}: run `python -m training guidance-cache` first")
    parts = [p for p in (torch.load(f, map_location="cpu") for f in files) if p]
    return {k: torch.cat([p[k] for p in parts]).to(device) for k in FIELDS}
