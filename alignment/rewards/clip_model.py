"""``CLIPModelReward``: PickScore-style rewards from a ``transformers.CLIPModel`` + ``CLIPProcessor``:
``r = exp(logit_scale) · cos(image embedding, text embedding)`` (PickScore's own formula).

Serves ``yuvalkirstain/PickScore_v1`` (processor ``laion/CLIP-ViT-H-14-laion2B-s32B-b79K``) and any local folder
with the same layout, e.g. the toy ``checkpoints/toy-pickscore``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..loading import ModelLoadError
from ..lru import LRU
from .base import Reward, clip_preprocess


def _projected(features) -> torch.Tensor:
    """transformers < 5 returns the projected embedding; 5.x an output whose pooler_output holds it."""
    return features if isinstance(features, torch.Tensor) else features.pooler_output


class CLIPModelReward(Reward):
    differentiable = True

    def __init__(self, model: str, processor: str | None = None, *, name: str = "pickscore", device=None,
                 dtype: torch.dtype = torch.float32):
        from transformers import CLIPModel, CLIPProcessor

        try:
            clip = CLIPModel.from_pretrained(model, dtype=dtype)
            proc = CLIPProcessor.from_pretrained(processor or model)
        except Exception as e:
            raise ModelLoadError(
                f"could not load the {name} reward from {model!r} (processor {processor or model!r}): "
                f"{type(e).__name__}: {str(e)[:300]}. Fix: give a local folder with a CLIPModel and its processor, "
                "or allow access to huggingface.co") from e
        self._use(clip, proc, name, device)

    @classmethod
    def from_model(cls, model, processor, *, name: str = "pickscore", device=None) -> CLIPModelReward:
        """The reward of an already built ``CLIPModel`` and ``CLIPProcessor`` (e.g. a random-weight full-size
        model for a benchmark), scored by the very same code."""
        reward = cls.__new__(cls)
        reward._use(model, processor, name, device)
        return reward

    def _use(self, model, processor, name: str, device) -> None:
        self.name, self.processor = name, processor
        self.model = model.eval().requires_grad_(False)
        if device is not None:
            self.model.to(device)
        ip = self.processor.image_processor
        crop = ip.crop_size
        self.size = int(crop if isinstance(crop, (int, float)) else (getattr(crop, "height", None) or crop["height"]))
        self.mean, self.std = ip.image_mean, ip.image_std
        self._text = LRU(self.TEXT_CACHE_SIZE)  # (prompt, device, dtype) -> normalised text embedding

    TEXT_CACHE_SIZE = 1024

    @torch.no_grad()
    def text_features(self, prompts: list[str]) -> torch.Tensor:
        """Normalised text embeddings, each prompt encoded once (LRU): a studio slider move rescores new images
        of the same prompt, and the text tower was a third of a one-image score on the CPU."""
        def key(p):
            return p, self.device, self.model.dtype

        with self._text.lock:  # the studio scores from several worker threads
            missing = list(dict.fromkeys(p for p in prompts if key(p) not in self._text))
            fresh = dict(zip(missing, self._encode_text(missing))) if missing else {}
            return torch.stack([self._text.get(key(p), lambda p=p: fresh[p] if p in fresh else
                                               self._encode_text([p])[0]) for p in prompts])

    def _encode_text(self, prompts: list[str]) -> torch.Tensor:
        tokens = self.processor.tokenizer(prompts, padding="max_length", truncation=True, max_length=77,
                                          return_tensors="pt").to(self.device)
        return F.normalize(_projected(self.model.get_text_features(**tokens)), dim=-1)

    @property
    def device(self):
        return self.model.device

    def _score(self, x, prompts):
        pixels = clip_preprocess(x, self.size, self.mean, self.std).to(self.model.dtype)
        image = F.normalize(_projected(self.model.get_image_features(pixel_values=pixels)), dim=-1)
        text = self.text_features(list(prompts)).to(image.dtype)
        return (self.model.logit_scale.exp() * (image * text).sum(-1)).float()
