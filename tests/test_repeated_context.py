"""Attending to each run of identical SD3 context tokens once, with log(count) on its logit, changes nothing but the
cost: checked against the plain transformer on tiny random models and the toy-sd3 pipeline."""

import pytest
import torch
from diffusers import SD3Transformer2DModel
from diffusers.models.attention_processor import JointAttnProcessor2_0

from alignment import load_pipeline
from alignment.repeated_context import RepeatedContext, attend_repeats_once, repeated_runs


def tiny_transformer(**extra) -> SD3Transformer2DModel:
    torch.manual_seed(0)
    return SD3Transformer2DModel(sample_size=8, patch_size=2, in_channels=4, num_layers=2, attention_head_dim=8,
                                 num_attention_heads=2, joint_attention_dim=16, caption_projection_dim=16,
                                 pooled_projection_dim=8, out_channels=4, pos_embed_max_size=8, qk_norm="rms_norm",
                                 **extra).eval()


def inputs(context_tail: int = 20, batch: int = 2) -> dict:
    g = torch.Generator().manual_seed(1)
    context = torch.randn(batch, 7, 16, generator=g)
    context = torch.cat([context, torch.zeros(batch, context_tail, 16)], dim=1)  # a T5-less prompt's zero block
    return dict(hidden_states=torch.randn(batch, 4, 8, 8, generator=g), encoder_hidden_states=context,
                pooled_projections=torch.randn(batch, 8, generator=g), timestep=torch.tensor([500.0] * batch))


def test_runs_are_found_only_where_every_batch_row_repeats():
    x = torch.tensor([[[1.0], [2.0], [2.0], [2.0], [3.0], [3.0]], [[5.0], [6.0], [6.0], [6.0], [7.0], [8.0]]])
    starts, lengths = repeated_runs(x)
    assert starts.tolist() == [0, 1, 4, 5] and lengths.tolist() == [1, 3, 1, 1]  # 3,3 is not repeated in row 2
    assert repeated_runs(torch.arange(6.0).view(1, 6, 1)) is None


@pytest.mark.parametrize("extra", [{}, {"dual_attention_layers": (0,)}])  # SD3.5-Medium-style image-only attn2
def test_the_output_is_the_plain_transformers(extra):
    plain = tiny_transformer(**extra)
    wrapped = RepeatedContext(tiny_transformer(**extra))
    with torch.no_grad():
        ref = plain(**inputs(), return_dict=False)[0]
        out = wrapped(**inputs(), return_dict=False)[0]
        no_repeats = inputs(context_tail=0)
        same = wrapped(**no_repeats, return_dict=False)[0]
        ref_same = plain(**no_repeats, return_dict=False)[0]
    assert out.shape == ref.shape and torch.allclose(out, ref, atol=1e-5), (out - ref).abs().max()
    assert torch.allclose(same, ref_same, atol=1e-5)
    assert wrapped.config.patch_size == 2 and wrapped.dtype == torch.float32


def test_the_compressed_context_really_is_shorter():
    wrapped = RepeatedContext(tiny_transformer())
    seen = []
    block = wrapped.transformer.transformer_blocks[0]
    handle = block.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["encoder_hidden_states"].shape[1]),
                                             with_kwargs=True)
    with torch.no_grad():
        wrapped(**inputs(context_tail=20))
    handle.remove()
    assert seen == [8]  # 7 distinct tokens and one for the 20 zeros


def test_the_loader_wraps_t5_less_sd3_only():
    sd3, _ = load_pipeline("toy-sd3", device="cpu")
    sdxl, _ = load_pipeline("toy-sdxl", device="cpu")
    assert isinstance(sd3.transformer, RepeatedContext) and sd3.text_encoder_3 is None
    assert attend_repeats_once(sd3).transformer is sd3.transformer  # not wrapped twice
    assert not hasattr(sdxl, "transformer") or sdxl.transformer is None
    # the pipeline samples as before: the same image as the unwrapped transformer, up to float rounding
    kwargs = dict(num_inference_steps=2, guidance_scale=3.0, height=64, width=64, output_type="latent")
    with torch.no_grad():
        a = sd3("a red star on a blue background", generator=torch.Generator().manual_seed(0), **kwargs).images
        sd3.transformer = sd3.transformer.transformer  # diffusers' joint attention over all 256 zero tokens
        sd3.transformer.set_attn_processor(JointAttnProcessor2_0())
        b = sd3("a red star on a blue background", generator=torch.Generator().manual_seed(0), **kwargs).images
    assert torch.allclose(a, b, atol=1e-4), (a - b).abs().max()
