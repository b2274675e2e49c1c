"""The toy-world training pool: renders of the training split with their caption token ids, held on the training
device, from which every toy trainer draws its batches (``python -m training toy-pool`` renders and caches one)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import CLIPTokenizer

from toyworld import ToyScenes

CAPTION_DROPOUT = 0.1


def _render_item(args: tuple[int, int]) -> tuple[np.ndarray, str]:
    seed, index = args
    item = ToyScenes(index + 1, seed=seed, split="train")[index]
    return item["image"], item["caption"]


def batch_rng(*key: int, rank: int = 0) -> np.random.Generator:
    """The random draws of one training batch, keyed by (seed, …, step). Under ``accelerate launch`` each process
    (``rank``) draws its own part of the batch; process 0 draws what a single process draws."""
    return np.random.default_rng(key + ((rank,) if rank else ()))


class ScenePool:
    """A fixed pool of rendered training pairs, held on the training device, sampled with replacement.

    Rendering on the fly starves the GPU (a render costs ~3 ms of CPU), so the pool is rendered once, in
    parallel, and cached to disk (``python -m training toy-pool``). Batch ``k`` of a stage is a pure function of
    (seed, stage, k): a resumed run draws exactly the batches it has not drawn yet.
    """

    def __init__(self, images: np.ndarray, captions: list[str], device, tokenizer: CLIPTokenizer):
        self.images = torch.from_numpy(images).to(device)  # N x H x W x 3, uint8
        self.captions = captions
        self.device = device
        # Tokenize each distinct caption once (per-step tokenization would cost more than the GPU step).
        distinct = sorted(set(captions) | {""})
        ids = tokenizer(distinct, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                        return_tensors="pt").input_ids
        row = {c: i for i, c in enumerate(distinct)}
        self.token_ids = ids[torch.tensor([row[c] for c in captions])].to(device)  # N x 77, padded with <|endoftext|>
        self.empty_ids = ids[row[""]].to(device)

    @classmethod
    def render(cls, n: int, seed: int, workers: int, device, tokenizer: CLIPTokenizer) -> "ScenePool":
        import multiprocessing as mp

        with mp.get_context("fork").Pool(max(1, workers)) as pool:
            items = pool.map(_render_item, [(seed, i) for i in range(n)], chunksize=256)
        return cls(np.stack([im for im, _ in items]), [c for _, c in items], device, tokenizer)

    @classmethod
    def cached(cls, path: Path | None, n: int, seed: int, workers: int, device,
               tokenizer: CLIPTokenizer) -> "ScenePool":
        """The pool saved at ``path``, or ``n`` renders made now (and saved there when a path is given)."""
        if path is not None and Path(path).exists():
            return cls.load(path, device, tokenizer)
        pool = cls.render(n, seed, workers, device, tokenizer)
        if path is not None:
            pool.save(path)
        return pool

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, images=self.images.cpu().numpy(), captions=np.array(self.captions))

    @classmethod
    def load(cls, path: Path, device, tokenizer: CLIPTokenizer) -> "ScenePool":
        data = np.load(path)
        return cls(data["images"], [str(c) for c in data["captions"]], device, tokenizer)

    def __len__(self) -> int:
        return len(self.captions)

    @torch.no_grad()
    def encode(self, vae, chunk: int = 1024) -> None:
        """Cache the VAE posterior (mean, std) of every image, so training steps sample latents without the VAE."""
        means, stds = [], []
        for i in range(0, len(self), chunk):
            images = self.images[i : i + chunk].permute(0, 3, 1, 2).float() / 127.5 - 1.0
            dist = vae.encode(images).latent_dist
            means.append(dist.mean.to(torch.bfloat16))
            stds.append(dist.std.to(torch.bfloat16))
        self.latent_mean, self.latent_std = torch.cat(means), torch.cat(stds)

    def latent_batch(self, seed: int, stage: int, step: int, size: int,
                     rank: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Like ``batch`` but returns a posterior sample of the cached latents instead of images."""
        idx, ids = self._draw(seed, stage, step, size, rank)
        return self._posterior_sample(idx), ids

    def image_latent_batch(self, seed: int, stage: int, step: int, size: int,
                           rank: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (as ``batch``) and a posterior sample of their cached latents (as ``latent_batch``), for training
        the decoder."""
        idx, _ = self._draw(seed, stage, step, size, rank)
        return self._images(idx), self._posterior_sample(idx)

    def _images(self, idx: torch.Tensor) -> torch.Tensor:
        return self.images[idx].permute(0, 3, 1, 2).float() / 127.5 - 1.0

    def _posterior_sample(self, idx: torch.Tensor) -> torch.Tensor:
        mean, std = self.latent_mean[idx].float(), self.latent_std[idx].float()
        return mean + std * torch.randn_like(mean)

    def batch(self, seed: int, stage: int, step: int, size: int,
              rank: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Images as [-1, 1] NCHW floats and caption token ids (the empty caption with probability
        CAPTION_DROPOUT). ``rank``: the training process (each draws its own part of a multi-GPU batch)."""
        idx, ids = self._draw(seed, stage, step, size, rank)
        return self._images(idx), ids

    def _draw(self, seed: int, stage: int, step: int, size: int,
              rank: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Pool indices of batch ``step`` and their caption token ids (the empty caption for dropped ones)."""
        rng = batch_rng(seed, stage, step, rank=rank)
        idx = torch.from_numpy(rng.integers(0, len(self), size)).to(self.device)
        drop = torch.from_numpy(rng.random(size) < CAPTION_DROPOUT).to(self.device)
        return idx, torch.where(drop[:, None], self.empty_ids[None], self.token_ids[idx])
