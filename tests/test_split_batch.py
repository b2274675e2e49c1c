"""SplitBatch: a denoiser call split over threads equals the unsplit call (SD3 transformer and SDXL UNet with its
dict of added conditions), keeps the output type, and passes through when gradients are needed."""

import numpy as np
import pytest
import torch

from alignment import generate, load_pipeline
from studio.split_batch import SplitBatch

PROMPT = "a red star on a blue background"


@pytest.mark.parametrize("model", ["toy-sd3", "toy-sdxl"])
def test_split_pipeline_equals_the_unsplit_one(model):
    pipe, preset = load_pipeline(model, device="cpu")
    direct = generate(pipe, [PROMPT, "a white ring on a black background", PROMPT], seed=3, preset=preset)
    name = "transformer" if model == "toy-sd3" else "unet"
    original = getattr(pipe, name)
    setattr(pipe, name, SplitBatch(original, workers=2))
    try:
        split = generate(pipe, [PROMPT, "a white ring on a black background", PROMPT], seed=3, preset=preset)
    finally:
        setattr(pipe, name, original)
    for a, b in zip(direct.images, split.images, strict=True):
        diff = np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)
        assert np.abs(diff).max() <= 2  # equal up to float rounding, after 8-bit quantisation


def test_outputs_keep_their_type_and_grad_passes_through():
    pipe, _ = load_pipeline("toy-sd3", device="cpu")
    split = SplitBatch(pipe.transformer, workers=2)
    kwargs = dict(hidden_states=torch.randn(4, 16, 16, 16), timestep=torch.full((4,), 500.0),
                  encoder_hidden_states=torch.randn(4, 333, 64), pooled_projections=torch.randn(4, 64))
    with torch.no_grad():
        ref = pipe.transformer(**kwargs)
        out = split(**kwargs)
        assert type(out) is type(ref) and torch.allclose(out.sample, ref.sample, rtol=1e-4, atol=1e-4)
        tup = split(**kwargs, return_dict=False)
        assert isinstance(tup, tuple) and torch.allclose(tup[0], ref.sample, rtol=1e-4, atol=1e-4)
    x = kwargs["hidden_states"].requires_grad_(True)
    out = split(**kwargs)  # gradients on: one unsplit call, so backward works
    out.sample.sum().backward()
    assert x.grad is not None and split.config.patch_size == pipe.transformer.config.patch_size
    with pytest.raises(ValueError, match="at least 2 workers"):
        SplitBatch(pipe.transformer, workers=1)
