"""Rewards from open_clip models: HPSv2 / HPSv2.1 (ViT-H-14 with the ``xswu/HPSv2`` checkpoint) and CLIP score.

HPS score = cos(image features, text features), as HPSv2's ``img_score.py`` computes it (no logit scale).
CLIP score = 100 · max(cos, 0), the usual definition (torchmetrics' ``CLIPScore``).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ..loading import ModelLoadError
from .base import Reward, clip_preprocess

HPS_FILES = {"hpsv2": "HPS_v2_compressed.pt", "hpsv2.1": "HPS_v2.1_compressed.pt"}


class OpenClipReward(Reward):
    differentiable = True

    def __init__(self, arch: str = "ViT-H-14", *, checkpoint: str | Path | None = None, pretrained: str | None = None,
                 kind: str = "hps", name: str = "hpsv2", device=None, dtype: torch.dtype = torch.float32):
        import open_clip

        if kind not in ("hps", "clip"):
            raise ValueError(f"kind must be 'hps' or 'clip', got {kind!r}")
        self.kind, self.name = kind, name
        try:
            model = open_clip.create_model(arch, pretrained=pretrained, device="cpu")
            if checkpoint is not None:
                state = torch.load(checkpoint, map_location="cpu", weights_only=True)
                model.load_state_dict(state.get("state_dict", state))
            self.tokenizer = open_clip.get_tokenizer(arch)
        except Exception as e:  # noqa: BLE001
            raise ModelLoadError(
                f"could not load the {name} reward (open_clip {arch!r}, checkpoint {checkpoint}, pretrained "
                f"{pretrained}): {type(e).__name__}: {str(e)[:300]}. Fix: give a local checkpoint file, or allow "
                "access to huggingface.co") from e
        self.model = model.to(device=device or "cpu", dtype=dtype).eval().requires_grad_(False)
        cfg = model.visual.preprocess_cfg
        size = cfg["size"]
        self.size = size[0] if isinstance(size, (tuple, list)) else int(size)
        self.mean, self.std = cfg["mean"], cfg["std"]

    @property
    def device(self):
        return next(self.model.parameters()).device

    def _score(self, x, prompts):
        dtype = next(self.model.parameters()).dtype
        pixels = clip_preprocess(x, self.size, self.mean, self.std).to(dtype)
        image = F.normalize(self.model.encode_image(pixels), dim=-1)
        text = F.normalize(self.model.encode_text(self.tokenizer(prompts).to(self.device)), dim=-1)
        cos = (image * text).sum(-1).float()
        return cos if self.kind == "hps" else 100.0 * cos.clamp(min=0)


def hps_checkpoint(version: str) -> str:
    """Path of the HPS checkpoint from the hub cache (downloaded once)."""
    from huggingface_hub import hf_hub_download

    try:
        return hf_hub_download("xswu/HPSv2", HPS_FILES[version])
    except Exception as e:  # noqa: BLE001
        raise ModelLoadError(f"could not fetch {HPS_FILES[version]} from the hub repo xswu/HPSv2: "
                             f"{type(e).__name__}: {str(e)[:200]}. Fix: allow access to huggingface.co, or pass "
                             "checkpoint=<local file>") from e
