"""The guidance network ``h_ψ(x_t, text embedding, t, β, η) → log h`` (one value per image).

β and η are inputs (loss-conditional training), so one network serves every slider position. The output is
parameterised in reward units: ``log h = v / β`` with ``v = reward_mean + reward_std · net(·)``; ``v`` is a soft
maximum of the reward over ``p(x0|x_t)`` and stays O(reward) for every β, which keeps the regression well scaled.

A small conv net over the latent with FiLM conditioning on (t, log β, η, pooled text embedding). Saved and loaded
like any diffusers model (``save_pretrained`` / ``from_pretrained``): about 72 MB (fp32) at ``sdxl_size()``,
under 1 MB at ``toy_size()``, about 5 MB at ``toy_wide_size()``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


def timestep_features(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of the timestep (as in DDPM), ``t`` in [0, 1000)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class FiLMBlock(nn.Module):
    """GroupNorm → FiLM(scale, shift from the conditioning) → SiLU → conv, twice, with a residual; then a stride-2
    conv when ``down``."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int, down: bool):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(min(8, c_in), c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2, self.conv2 = nn.GroupNorm(min(8, c_out), c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.film = nn.Linear(cond_dim, 2 * c_out)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        self.down = nn.Conv2d(c_out, c_out, 3, stride=2, padding=1) if down else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(cond)[:, :, None, None].chunk(2, dim=1)
        h = self.conv2(F.silu(self.norm2(h) * (1 + scale) + shift))
        return self.down(h + self.skip(x))


class GuidanceNetwork(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(self, in_channels: int = 4, text_dim: int = 32, channels: tuple[int, ...] = (32, 64, 64),
                 cond_dim: int = 128, reward_mean: float = 0.0, reward_std: float = 1.0,
                 beta_range: tuple[float, float] = (0.05, 5.0), eta_range: tuple[float, float] = (0.0, 2.0)):
        super().__init__()
        self.cond = nn.Sequential(nn.Linear(cond_dim + 2 + text_dim, cond_dim), nn.SiLU(), nn.Linear(cond_dim, cond_dim))
        self.conv_in = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        self.blocks = nn.ModuleList(
            FiLMBlock(c_in, c_out, cond_dim, down=i < len(channels) - 1)
            for i, (c_in, c_out) in enumerate(zip((channels[0],) + tuple(channels[:-1]), channels)))
        self.norm_out = nn.GroupNorm(min(8, channels[-1]), channels[-1])
        self.head = nn.Sequential(nn.Linear(channels[-1] + cond_dim, cond_dim), nn.SiLU(), nn.Linear(cond_dim, 1))

    @classmethod
    def toy_size(cls, **kw) -> "GuidanceNetwork":
        return cls(**{"in_channels": 4, "text_dim": 32, "channels": (32, 64, 64), "cond_dim": 128, **kw})

    @classmethod
    def toy_wide_size(cls, **kw) -> "GuidanceNetwork":
        """Twice toy_size's widths (about 5 MB in fp32): more capacity for the toy world's guidance."""
        return cls(**{"in_channels": 4, "text_dim": 32, "channels": (64, 128, 128), "cond_dim": 256, **kw})

    @classmethod
    def sdxl_size(cls, **kw) -> "GuidanceNetwork":
        """For SDXL latents (4×64×64 at 512², 4×128×128 at 1024²) and SDXL's pooled text embedding (1280)."""
        return cls(**{"in_channels": 4, "text_dim": 1280, "channels": (128, 256, 512, 640), "cond_dim": 512, **kw})

    def forward(self, x_t: torch.Tensor, text_embeds: torch.Tensor, timestep, beta, eta) -> torch.Tensor:
        """log h_ψ for each image: x_t (B, C, H, W), text_embeds (B, D), timestep / β / η scalars or (B,)."""
        b = x_t.shape[0]
        dtype = self.conv_in.weight.dtype

        def per_image(v):
            return torch.as_tensor(v, device=x_t.device, dtype=torch.float32).reshape(-1).expand(b)

        t, beta, eta = per_image(timestep), per_image(beta), per_image(eta)
        features = torch.cat([timestep_features(t, self.config.cond_dim), beta.log()[:, None], eta[:, None],
                              text_embeds.float()], dim=-1)
        cond = self.cond(features.to(dtype))
        h = self.conv_in(x_t.to(dtype))
        for block in self.blocks:
            h = block(h, cond)
        pooled = F.silu(self.norm_out(h)).mean(dim=(2, 3))
        v = self.head(torch.cat([pooled, cond], dim=-1)).squeeze(-1).float()
        v = self.config.reward_mean + self.config.reward_std * v
        return v / beta
