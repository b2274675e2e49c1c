"""The toy presets' architectures: tiny configurations of the real diffusers / transformers classes, freshly
initialised.

``toy-sdxl`` mirrors SDXL-Turbo's component classes (UNet2DConditionModel with the ``text_time`` embedding,
AutoencoderKL with 4 latent channels, CLIPTextModel + CLIPTextModelWithProjection, DPM-Solver++ trailing
scheduler); ``toy-sd3`` mirrors SD3.5-Large-Turbo's (SD3Transformer2DModel, 16-channel AutoencoderKL with shift
and scale, two CLIPTextModelWithProjection, FlowMatchEuler, no T5). Images are 64x64; the VAEs
downsample by 4, so latents are 16x16.
"""

from __future__ import annotations

import torch
from diffusers import (
    AutoencoderKL,
    DPMSolverMultistepScheduler,
    FlowMatchEulerDiscreteScheduler,
    SD3Transformer2DModel,
    UNet2DConditionModel,
)
from diffusers.models.normalization import AdaLayerNormContinuous, AdaLayerNormZero
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

VOCAB_SIZE = 49408  # the real CLIP BPE vocabulary
TEXT_1 = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, projection_dim=32)
TEXT_2 = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, projection_dim=32)
CROSS_DIM = TEXT_1["hidden_size"] + TEXT_2["hidden_size"]  # SDXL / SD3 concatenate both encoders' states
POOLED_DIM_SD3 = TEXT_1["projection_dim"] + TEXT_2["projection_dim"]
TIME_EMBED_DIM = 8  # SDXL's addition_time_embed_dim, scaled down
LATENT_SIZE = 16
PRESETS = ("toy-sdxl", "toy-sd3")


def text_config(sizes: dict, pad_token_id: int) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=VOCAB_SIZE,
        max_position_embeddings=77,
        hidden_act="quick_gelu",
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=pad_token_id,
        **sizes,
    )


def text_encoders(preset: str):
    """(text_encoder, text_encoder_2) as the real pipelines have them."""
    first = CLIPTextModel if preset == "toy-sdxl" else CLIPTextModelWithProjection
    return first(text_config(TEXT_1, 1)), CLIPTextModelWithProjection(text_config(TEXT_2, 0))


def vae(preset: str) -> AutoencoderKL:
    sd3 = preset == "toy-sd3"
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        latent_channels=16 if sd3 else 4,
        norm_num_groups=16,
        sample_size=64,
        scaling_factor=1.0,  # set from data after VAE training
        shift_factor=0.0 if sd3 else None,
        force_upcast=False,
        use_quant_conv=not sd3,
        use_post_quant_conv=not sd3,
    )


def unet() -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=LATENT_SIZE,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(32, 64, 96),
        layers_per_block=1,
        transformer_layers_per_block=1,
        attention_head_dim=(2, 4, 4),  # SDXL's legacy name: the number of heads
        norm_num_groups=16,
        cross_attention_dim=CROSS_DIM,
        addition_embed_type="text_time",
        addition_time_embed_dim=TIME_EMBED_DIM,
        projection_class_embeddings_input_dim=TEXT_2["projection_dim"] + 6 * TIME_EMBED_DIM,
        use_linear_projection=True,
    )


def transformer() -> SD3Transformer2DModel:
    """The toy-sd3 denoiser trained from now on (``toy-base --fresh-denoiser``); the shipped checkpoint's own
    config.json says which one it is. Width 160 (5 heads of 32), 5 layers, patch 2: 4.5 M parameters, 9.0 MB in fp16,
    the widest 5-layer model that keeps all checkpoints under 40 MB. Measured from scratch on the same data
    (2026-11-27): width (192 against 128) lowers the training loss at equal steps and trains faster than the
    patch-1, 256-token variant (docs/training-log.md)."""
    return SD3Transformer2DModel(
        sample_size=LATENT_SIZE,
        patch_size=2,
        in_channels=16,
        out_channels=16,
        num_layers=5,
        attention_head_dim=32,
        num_attention_heads=5,
        joint_attention_dim=CROSS_DIM,
        caption_projection_dim=160,
        pooled_projection_dim=POOLED_DIM_SD3,
        pos_embed_max_size=LATENT_SIZE,
        qk_norm="rms_norm",
    )


def adaln_zero_(transformer: SD3Transformer2DModel) -> SD3Transformer2DModel:
    """DiT's adaLN-Zero initialisation, in place: every adaptive-norm modulation and the output projection start at
    zero, so each block starts as the identity (its gates are 0) and the model's first output is 0. diffusers builds
    the class with PyTorch's default initialisation, which is right for loading trained weights, not for training
    from scratch (Peebles & Xie 2023, section 3.2)."""
    for module in transformer.modules():
        if isinstance(module, (AdaLayerNormZero, AdaLayerNormContinuous)):
            torch.nn.init.zeros_(module.linear.weight)
            torch.nn.init.zeros_(module.linear.bias)
    torch.nn.init.zeros_(transformer.proj_out.weight)
    torch.nn.init.zeros_(transformer.proj_out.bias)
    return transformer


def scheduler(preset: str):
    if preset == "toy-sd3":
        # SD3.5 samples with shift 3; the toy, not distilled for few steps, reads the prompt better at its 4 steps
        # when they sit at higher noise: shift 6 (prompt fidelity 0.665 vs 0.565 at shift 3, measured
        # 2026-11-28: docs/evaluation.md). Training draws its sigmas itself, so this is sampling only.
        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=6.0)
    # SDXL-Turbo's betas and trailing spacing; the solver is DPM-Solver++ instead of Turbo's Euler-ancestral,
    # because the toy is not adversarially distilled and 4 multistep-solver steps keep it sharp (measured:
    # prompt fidelity 0.81 vs 0.69 for Euler at 4 steps, guidance 3).
    return DPMSolverMultistepScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        prediction_type="epsilon",
        steps_offset=1,
        timestep_spacing="trailing",
    )


def denoiser(preset: str):
    if preset not in PRESETS:
        raise ValueError(f"unknown toy preset {preset!r}; known: {', '.join(PRESETS)}")
    return unet() if preset == "toy-sdxl" else transformer()
