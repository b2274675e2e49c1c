"""``python -m training toy-distill``: the teacher's pairs are what its sampler makes, only the transformer learns,
a paused run resumes, and the export samples like any toy-sd3 folder."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from alignment import generate, load_pipeline
from training.__main__ import main as training_main
from training.toy_distill import DistillConfig, make_pairs, run, sampler_sigmas, student_times, teacher_sample
from training.toy_pipeline import load_pipeline_for_training, prompt_embeddings, toy_accelerator
from training.toy_pool import ScenePool

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "checkpoints" / "toy-sd3"
PROMPT = "a red star on a blue background"


def _config(tmp_path, **kw) -> DistillConfig:
    args = dict(init_from=SHIPPED, work=tmp_path / "work", pairs=6, pair_batch=4, teacher_steps=2, steps=2,
                batch_size=3, pool=tmp_path / "pool.npz", pool_size=8, workers=1, save_every=1)
    return DistillConfig(**(args | kw))


def test_sampler_sigmas_are_the_pipelines():
    pipe = load_pipeline_for_training("toy-sd3", SHIPPED)
    pipe.scheduler.set_timesteps(4)
    assert torch.allclose(sampler_sigmas(pipe.scheduler.config, 4), pipe.scheduler.sigmas.float())
    s = student_times(4000, sampler_sigmas(pipe.scheduler.config, 4)[:-1], 1.0, 0.0, "cpu")
    assert set(np.round(s.numpy(), 5)) == set(np.round(pipe.scheduler.sigmas[:-1].numpy(), 5))
    s = student_times(4000, sampler_sigmas(pipe.scheduler.config, 4)[:-1], 0.0, 0.0, "cpu")
    assert 0 < s.min() and s.max() < 1 and len(set(s.tolist())) > 3900  # continuous, not the 4 sampler sigmas


def test_teacher_sample_is_the_pipelines_own_euler_with_cfg():
    """The teacher's Euler loop (with CFG, through RepeatedContext) lands where the SD3 pipeline lands from the
    same noise."""
    from alignment.repeated_context import RepeatedContext

    pipe = load_pipeline_for_training("toy-sd3", SHIPPED)
    ids = pipe.tokenizer([PROMPT, ""], padding="max_length", max_length=77, return_tensors="pt").input_ids
    noise = torch.randn(1, 16, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        cond, uncond = prompt_embeddings(pipe, ids[:1]), prompt_embeddings(pipe, ids[1:])
        ours = teacher_sample(RepeatedContext(pipe.transformer), noise, cond, uncond,
                              sampler_sigmas(pipe.scheduler.config, 3), 3.0)
        theirs = pipe(PROMPT, latents=noise.clone(), num_inference_steps=3, guidance_scale=3.0,
                      output_type="latent", height=64, width=64).images
    assert torch.allclose(ours, theirs, atol=2e-3), (ours - theirs).abs().max()


def test_pairs_use_training_captions_and_resume(tmp_path):
    cfg = _config(tmp_path)
    pipe = load_pipeline_for_training("toy-sd3", SHIPPED)
    data = ScenePool.cached(cfg.pool, cfg.pool_size, cfg.seed, 1, "cpu", pipe.tokenizer)
    pairs = make_pairs(cfg, pipe, data, toy_accelerator())
    assert pairs["noise"].shape == pairs["x0"].shape == (6, 16, 16, 16)
    assert pairs["ids"].shape == (6, 77)
    known = {tuple(r) for r in data.token_ids.tolist()} | {tuple(data.empty_ids.tolist())}
    assert all(tuple(r) in known for r in pairs["ids"].tolist())
    assert not torch.equal(pairs["noise"], pairs["x0"])
    again = make_pairs(cfg, pipe, data, toy_accelerator())  # read back from work/pairs.pt
    assert torch.equal(again["x0"], pairs["x0"])
    cfg.teacher_steps = 1  # pairs made by another teacher schedule are not reused
    other = make_pairs(cfg, pipe, data, toy_accelerator())
    assert torch.equal(other["noise"], pairs["noise"]) and not torch.equal(other["x0"], pairs["x0"])
    assert torch.load(cfg.work / "pairs.pt")["teacher_steps"] == 1


def test_distill_trains_only_the_transformer_resumes_and_exports(tmp_path):
    cfg = _config(tmp_path, export=tmp_path / "export")
    assert run(cfg) is True
    assert json.loads((tmp_path / "work" / "student" / "progress.json").read_text()) == {"step": 2, "done": True}
    cfg.steps = 3  # a larger budget goes on from the finished run's state
    assert run(cfg) is True
    assert json.loads((tmp_path / "work" / "student" / "progress.json").read_text())["step"] == 3

    new = load_pipeline_for_training("toy-sd3", tmp_path / "export")
    old = load_pipeline_for_training("toy-sd3", SHIPPED)
    for name in ("vae", "text_encoder", "text_encoder_2"):
        a, b = getattr(new, name).state_dict(), getattr(old, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    a, b = new.transformer.state_dict(), old.transformer.state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)
    info = json.loads((tmp_path / "export" / "training.json").read_text())
    assert info["distill"]["steps"] == 3 and info["distill"]["teacher_steps"] == 2
    assert info["denoiser_steps"] == json.loads((SHIPPED / "training.json").read_text())["denoiser_steps"]
    pipe, _ = load_pipeline(str(tmp_path / "export"), device="cpu")
    image = generate(pipe, PROMPT, seed=0, steps=2, guidance_scale=0.0).images[0]
    assert np.asarray(image).shape == (64, 64, 3)


def test_distill_pauses_at_the_deadline(tmp_path):
    assert run(_config(tmp_path, steps=50, max_minutes=0.0)) is False
    assert json.loads((tmp_path / "work" / "student" / "progress.json").read_text())["step"] == 1
    assert (tmp_path / "work" / "student" / "state").exists()


def test_distill_refuses_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="not an exported SD3-class pipeline folder"):
        DistillConfig(init_from=tmp_path, work=tmp_path / "w")
    with pytest.raises(FileNotFoundError, match="not an exported SD3-class"):
        training_main(["toy-distill", "--init-from", str(ROOT / "checkpoints" / "toy-sdxl"), "--work", str(tmp_path)])
    with pytest.raises(ValueError, match="--sampler-share"):
        DistillConfig(init_from=SHIPPED, work=tmp_path / "w", sampler_share=1.5)
    with pytest.raises(ValueError, match="must be positive"):
        DistillConfig(init_from=SHIPPED, work=tmp_path / "w", pairs=0)
