"""``python -m training toy-decoder``: the decoder learns, the encoder and everything else stay exactly as they were,
and a paused run resumes."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from alignment import generate, load_pipeline
from training.__main__ import main as training_main
from training.toy_decoder import DecoderTrainConfig, preset_of, run
from training.toy_pipeline import load_pipeline_for_training

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "checkpoints" / "toy-sdxl"


def test_decoder_trains_alone_resumes_and_exports(tmp_path, monkeypatch):
    from training import toy_pipeline

    monkeypatch.setattr(toy_pipeline, "save_slim_clip_tokenizer", None)  # the tokenizers come from init_from
    cfg = DecoderTrainConfig(init_from=SHIPPED, work=tmp_path / "work", export=tmp_path / "export", steps=2,
                             batch_size=4, lr=1e-3, pool=tmp_path / "pool.npz", pool_size=8, workers=1, save_every=1)
    assert run(cfg) is True
    assert json.loads((tmp_path / "work" / "decoder" / "progress.json").read_text()) == {"step": 2, "done": True}
    # a larger budget goes on from step 2 (the saved state), not from the shipped decoder
    (tmp_path / "work" / "decoder" / "progress.json").write_text(json.dumps({"step": 2, "done": False}))
    cfg.steps = 3
    assert run(cfg) is True
    assert json.loads((tmp_path / "work" / "decoder" / "progress.json").read_text())["step"] == 3

    new = load_pipeline_for_training("toy-sdxl", tmp_path / "export")
    old = load_pipeline_for_training("toy-sdxl", SHIPPED)
    a, b = new.vae.state_dict(), old.vae.state_dict()
    changed = {k.split(".")[0] for k in a if not torch.equal(a[k], b[k])}
    assert changed == {"decoder", "post_quant_conv"}  # the encoder, so the latent space, did not move
    assert new.vae.config.scaling_factor == old.vae.config.scaling_factor
    a, b = new.unet.state_dict(), old.unet.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    info = json.loads((tmp_path / "export" / "training.json").read_text())
    assert info["decoder"]["steps"] == 3 and info["decoder"]["finished"] is True
    assert info["step"] == json.loads((SHIPPED / "training.json").read_text())["step"]  # the denoiser's record kept
    pipe, _ = load_pipeline(str(tmp_path / "export"), device="cpu")
    image = generate(pipe, "a red star on a blue background", seed=0, steps=1, guidance_scale=0.0).images[0]
    assert np.asarray(image).shape == (64, 64, 3)


def test_decoder_pauses_at_the_deadline(tmp_path):
    cfg = DecoderTrainConfig(init_from=SHIPPED, work=tmp_path / "work", steps=50, batch_size=2,
                             pool=tmp_path / "pool.npz", pool_size=4, workers=1, max_minutes=0.0)
    assert run(cfg) is False
    assert json.loads((tmp_path / "work" / "decoder" / "progress.json").read_text())["step"] == 1
    assert (tmp_path / "work" / "decoder" / "state").exists()


def test_decoder_refuses_a_folder_that_is_not_a_pipeline(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="not an exported pipeline folder"):
        DecoderTrainConfig(init_from=tmp_path, work=tmp_path / "work")
    with pytest.raises(ValueError, match="positive"):
        DecoderTrainConfig(init_from=SHIPPED, work=tmp_path / "work", steps=0)
    assert preset_of(SHIPPED) == "toy-sdxl" and preset_of(ROOT / "checkpoints" / "toy-sd3") == "toy-sd3"
    with pytest.raises(FileNotFoundError):
        training_main(["toy-decoder", "--init-from", str(tmp_path / "missing"), "--work", str(tmp_path / "w")])
