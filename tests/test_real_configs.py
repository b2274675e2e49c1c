"""Full-size SDXL-Turbo and SD3.5-Large-Turbo architectures, built from the real configs on the meta device.

No weights are allocated: every parameter lives on the meta device and the forward passes run on meta tensors,
which propagate shapes only. Parameter counts are checked against the published numbers and against the
checkpoint sizes recorded in ``alignment/model_configs/SOURCES.md``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

diffusers = pytest.importorskip("diffusers")
from diffusers import AutoencoderKL, SD3Transformer2DModel, UNet2DConditionModel  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "alignment" / "model_configs"
SDXL = CONFIGS / "sdxl-turbo"
SD35 = CONFIGS / "sd35-large-turbo"

# From SOURCES.md (LFS pointer sizes / index total_size of the hub repositories).
SDXL_UNET_FP32_BYTES = 10_270_077_736
SDXL_UNET_FP16_BYTES = 5_135_149_760
SDXL_VAE_FP32_BYTES = 334_643_268
SDXL_TEXT_ENCODER_FP32_BYTES = 492_265_168
SDXL_TEXT_ENCODER_2_FP32_BYTES = 2_778_702_264
SD35_TRANSFORMER_INDEX_TOTAL_SIZE = 16_292_561_536  # bf16
SAFETENSORS_HEADER_MAX = 1 << 20  # the JSON header of a safetensors file: well under 1 MiB here


def _meta(*shape: int) -> torch.Tensor:
    return torch.empty(*shape, device="meta")


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _all_on_meta(model: torch.nn.Module) -> bool:
    return all(t.device.type == "meta" for t in list(model.parameters()) + list(model.buffers()))


def _peak_rss_bytes() -> int | None:
    try:
        import resource
    except ImportError:  # not on a POSIX system
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _load_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def built():
    """Every full-size model of this module, on meta, plus the process's peak memory before and after building."""
    before = _peak_rss_bytes()
    with torch.device("meta"):
        models = {
            "unet": UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(SDXL / "unet")),
            "transformer": SD3Transformer2DModel.from_config(SD3Transformer2DModel.load_config(SD35 / "transformer")),
            "sdxl_vae": AutoencoderKL.from_config(AutoencoderKL.load_config(SDXL / "vae")),
            "sd35_vae": AutoencoderKL.from_config(AutoencoderKL.load_config(SD35 / "vae")),
        }
    return models, before, _peak_rss_bytes()


def test_nothing_is_allocated(built):
    models, before, after = built
    for name, model in models.items():
        assert _all_on_meta(model), name
    if before is not None:
        # fp32 weights would be 10 GB (UNet) + 32 GB (transformer); a meta build costs next to nothing.
        assert after - before < 1 << 30, f"building on meta raised peak RSS by {(after - before) / 2**20:.0f} MiB"


# ------------------------------------------------------------------------------------------------------------------
# SDXL-Turbo
# ------------------------------------------------------------------------------------------------------------------


def test_sdxl_unet_parameter_count(built):
    unet = built[0]["unet"]
    n = _n_params(unet)
    assert n == pytest.approx(2.567e9, rel=0.005)
    # The published checkpoints are exactly these parameters (fp32 and fp16) plus a small safetensors header.
    assert 0 < SDXL_UNET_FP32_BYTES - 4 * n < SAFETENSORS_HEADER_MAX
    assert 0 < SDXL_UNET_FP16_BYTES - 2 * n < SAFETENSORS_HEADER_MAX


def test_sdxl_unet_forward_shape(built):
    unet = built[0]["unet"]
    out = unet(
        _meta(1, 4, 64, 64),
        torch.tensor([999.0], device="meta"),
        encoder_hidden_states=_meta(1, 77, 2048),
        added_cond_kwargs={"text_embeds": _meta(1, 1280), "time_ids": _meta(1, 6)},
    ).sample
    assert out.shape == (1, 4, 64, 64)
    assert out.device.type == "meta"


def test_sdxl_unet_forward_shape_batch_and_aspect(built):
    unet = built[0]["unet"]
    out = unet(
        _meta(2, 4, 64, 96),
        torch.tensor([999.0, 500.0], device="meta"),
        encoder_hidden_states=_meta(2, 77, 2048),
        added_cond_kwargs={"text_embeds": _meta(2, 1280), "time_ids": _meta(2, 6)},
    ).sample
    assert out.shape == (2, 4, 64, 96)


def test_sdxl_config_dimensions_agree():
    """The UNet's conditioning widths are what the two SDXL text encoders produce."""
    unet = _load_json(SDXL / "unet" / "config.json")
    te1 = _load_json(SDXL / "text_encoder" / "config.json")
    te2 = _load_json(SDXL / "text_encoder_2" / "config.json")
    assert unet["cross_attention_dim"] == te1["hidden_size"] + te2["hidden_size"] == 2048
    # text_embeds (pooled, projected) + 6 time ids, each embedded to addition_time_embed_dim
    assert unet["projection_class_embeddings_input_dim"] == te2["projection_dim"] + 6 * unet["addition_time_embed_dim"]
    assert unet["addition_embed_type"] == "text_time"


def test_sdxl_text_encoder_parameter_counts():
    pytest.importorskip("transformers")
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    for folder, cls, size in (
        ("text_encoder", CLIPTextModel, SDXL_TEXT_ENCODER_FP32_BYTES),
        ("text_encoder_2", CLIPTextModelWithProjection, SDXL_TEXT_ENCODER_2_FP32_BYTES),
    ):
        config = CLIPTextConfig.from_json_file(SDXL / folder / "config.json")
        with torch.device("meta"):
            model = cls(config)
        assert _all_on_meta(model)
        assert 0 < size - 4 * _n_params(model) < SAFETENSORS_HEADER_MAX, folder


def test_sdxl_vae(built):
    vae = built[0]["sdxl_vae"]
    assert vae.config.latent_channels == 4
    assert 0 < SDXL_VAE_FP32_BYTES - 4 * _n_params(vae) < SAFETENSORS_HEADER_MAX
    latents = vae.encode(_meta(1, 3, 512, 512)).latent_dist.mean
    assert latents.shape == (1, 4, 64, 64)
    assert vae.decode(_meta(1, 4, 64, 64)).sample.shape == (1, 3, 512, 512)


# ------------------------------------------------------------------------------------------------------------------
# SD3.5-Large-Turbo
# ------------------------------------------------------------------------------------------------------------------


def test_sd35_transformer_parameter_count(built):
    transformer = built[0]["transformer"]
    n = _n_params(transformer)
    assert n == pytest.approx(8.06e9, rel=0.005)
    # The checkpoint also stores the fixed sin-cos position table (a buffer in diffusers): together they are
    # exactly the bf16 index's total_size.
    pos_embed = transformer.pos_embed.pos_embed
    assert pos_embed.shape == (1, 192 * 192, 2432)
    assert 2 * (n + pos_embed.numel()) == SD35_TRANSFORMER_INDEX_TOTAL_SIZE


def test_sd35_transformer_forward_shape(built):
    transformer = built[0]["transformer"]
    out = transformer(
        hidden_states=_meta(1, 16, 128, 128),
        encoder_hidden_states=_meta(1, 77 + 256, 4096),  # 77 CLIP tokens + 256 T5 tokens
        pooled_projections=_meta(1, 2048),
        timestep=torch.tensor([1.0], device="meta"),
    ).sample
    assert out.shape == (1, 16, 128, 128)
    assert out.device.type == "meta"


def test_sd35_config_dimensions_agree():
    """The transformer's conditioning widths are what CLIP-L + CLIP-bigG (pooled) and T5-XXL (sequence) produce."""
    tr = _load_json(SD35 / "transformer" / "config.json")
    clip_l = _load_json(SD35 / "text_encoder" / "config.reconstructed.json")
    clip_g = _load_json(SD35 / "text_encoder_2" / "config.reconstructed.json")
    t5 = _load_json(SD35 / "text_encoder_3" / "config.json")
    assert tr["pooled_projection_dim"] == clip_l["projection_dim"] + clip_g["projection_dim"] == 2048
    assert tr["joint_attention_dim"] == t5["d_model"] == 4096
    # CLIP hidden states (768 + 1280) are zero-padded up to the T5 width in the pipeline.
    assert clip_l["hidden_size"] + clip_g["hidden_size"] <= t5["d_model"]
    assert tr["caption_projection_dim"] == tr["num_attention_heads"] * tr["attention_head_dim"]


def test_sd35_vae(built):
    vae = built[0]["sd35_vae"]
    assert vae.config.latent_channels == 16
    assert vae.config.latent_channels == built[0]["transformer"].config.in_channels
    latents = vae.encode(_meta(1, 3, 1024, 1024)).latent_dist.mean
    assert latents.shape == (1, 16, 128, 128)
    assert vae.decode(_meta(1, 16, 128, 128)).sample.shape == (1, 3, 1024, 1024)


def test_the_benchmark_builds_the_real_pipelines_and_reward():
    """evaluations.real_scale: the diffusers pipelines and the PickScore reward at full size, on meta here."""
    from diffusers import StableDiffusion3Pipeline, StableDiffusionXLPipeline

    from evaluations import real_scale

    sdxl = real_scale.sdxl_turbo("meta", torch.bfloat16)
    assert isinstance(sdxl, StableDiffusionXLPipeline) and sdxl.unet.dtype == torch.bfloat16
    assert sdxl.text_encoder_2.dtype == torch.bfloat16  # not the config's float16
    assert real_scale.n_parameters(sdxl.unet) == pytest.approx(2.567e9, rel=0.005)
    assert sdxl.scheduler.config.timestep_spacing == "trailing"
    sd35 = real_scale.sd35_large_turbo("meta", torch.bfloat16)
    assert isinstance(sd35, StableDiffusion3Pipeline) and sd35.text_encoder_3 is None
    assert real_scale.n_parameters(sd35.transformer) == pytest.approx(8.06e9, rel=0.01)
    assert sd35.scheduler.config.shift == 3.0
    reward = real_scale.pickscore("meta", torch.bfloat16)
    assert real_scale.n_parameters(reward.model) == pytest.approx(0.986e9, rel=0.01) and reward.size == 224
    assert torch.get_default_dtype() == torch.float32  # the builders restore it
