"""The reward interface: ``score(images, prompts) -> tensor``, batched, on any device and dtype.

Images are PIL images or a float tensor (N, 3, H, W) in [0, 1]. A reward says whether it is ``differentiable``
with respect to the pixels of a tensor input (what Tweedie/backprop guidance needs).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def to_pixels(images, device=None, dtype=torch.float32) -> torch.Tensor:
    """PIL images (or one), uint8 arrays, or a [0, 1] tensor -> float tensor (N, 3, H, W) in [0, 1].
    Tensors pass through (with their autograd graph); PIL images must share one size."""
    if isinstance(images, torch.Tensor):
        x = images if images.ndim == 4 else images[None]
        if x.shape[1] != 3:
            raise ValueError(f"image tensors must be (N, 3, H, W) in [0, 1], got shape {tuple(images.shape)}")
        return x.to(device=device or x.device, dtype=dtype)
    if isinstance(images, (Image.Image, np.ndarray)):
        images = [images]
    arrays = [np.asarray(im.convert("RGB") if isinstance(im, Image.Image) else im) for im in images]
    if not arrays:
        raise ValueError("no images to score")
    if any(a.ndim != 3 or a.shape[2] != 3 for a in arrays) or len({a.shape for a in arrays}) != 1:
        raise ValueError("images must be RGB and all of one size")
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    return x.to(device=device, dtype=dtype)


def clip_preprocess(x: torch.Tensor, size: int, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """CLIP's preprocessing in torch (so gradients flow): resize the short side to ``size`` (bicubic,
    antialiased), centre-crop to ``size`` x ``size``, normalise."""
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    x = F.interpolate(x, size=(nh, nw), mode="bicubic", align_corners=False, antialias=True)
    top, left = (nh - size) // 2, (nw - size) // 2
    x = x[..., top : top + size, left : left + size]
    mean_t = torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean_t) / std_t


def check_prompts(prompts, n: int) -> list[str]:
    prompts = [prompts] * n if isinstance(prompts, str) else list(prompts)
    if len(prompts) != n:
        raise ValueError(f"{n} images but {len(prompts)} prompts: give one prompt, or one per image")
    return [p if isinstance(p, str) else str(p) for p in prompts]


class Reward(ABC):
    """r(x0, y): higher is better. Subclasses implement ``_score`` on a (N, 3, H, W) [0, 1] tensor."""

    name: str = "reward"
    differentiable: bool = False

    def score(self, images, prompts) -> torch.Tensor:
        """One score per (image, prompt) pair, as a float tensor of shape (N,)."""
        x = to_pixels(images, device=self.device)
        prompts = check_prompts(prompts, x.shape[0])
        if self.differentiable and x.requires_grad:
            return self._score(x, prompts)
        with torch.no_grad():
            return self._score(x, prompts)

    __call__ = score

    @property
    def device(self) -> torch.device | None:
        return None

    @abstractmethod
    def _score(self, x: torch.Tensor, prompts: list[str]) -> torch.Tensor: ...


class WeightedSum(Reward):
    """Σ_i w_i r_i, written ``pickscore+0.5*hpsv2.1``; differentiable when every part is."""

    def __init__(self, parts: list[tuple[float, Reward]], name: str):
        self.parts, self.name = parts, name
        self.differentiable = all(r.differentiable for _, r in parts)

    def score(self, images, prompts) -> torch.Tensor:
        scores = [w * r.score(images, prompts).float() for w, r in self.parts]
        return sum(s.to(scores[0].device) for s in scores)  # parts may live on different devices

    __call__ = score

    def _score(self, x, prompts):  # pragma: no cover - score() is overridden
        raise NotImplementedError
