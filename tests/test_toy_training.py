"""The toy base-model and toy-reward training: text embeddings equal the pipeline's, and tiny runs train, pause,
resume, export and load through the one loader."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alignment import generate, load_pipeline
from training.toy_base import ToyTrainConfig, run
from training.toy_pipeline import load_pipeline_for_training, prompt_embeddings
from training.toy_pool import ScenePool

ROOT = Path(__file__).resolve().parents[1]
CAPTIONS = ["a red star on a blue background", "", "huge white cross, cyan background in the top left"]


@pytest.mark.parametrize("preset", ["toy-sdxl", "toy-sd3"])
def test_prompt_embeddings_equal_encode_prompt(preset):
    pipe = load_pipeline_for_training(preset, ROOT / "checkpoints" / preset)
    ids = pipe.tokenizer(CAPTIONS, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        states, pooled = prompt_embeddings(pipe, ids)
        if preset == "toy-sdxl":
            ref, _, ref_pooled, _ = pipe.encode_prompt(CAPTIONS, device="cpu", do_classifier_free_guidance=False)
        else:
            ref, _, ref_pooled, _ = pipe.encode_prompt(CAPTIONS, None, None, device="cpu",
                                                       do_classifier_free_guidance=False)
    assert states.shape == ref.shape and torch.allclose(states, ref, atol=1e-6)
    assert torch.allclose(pooled, ref_pooled, atol=1e-6)


def test_scene_pool_batches_are_deterministic():
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(ROOT / "checkpoints" / "toy-sdxl" / "tokenizer")
    pool = ScenePool.render(12, seed=3, workers=1, device="cpu", tokenizer=tok)
    a_img, a_ids = pool.batch(0, 2, 5, 8)
    b_img, b_ids = pool.batch(0, 2, 5, 8)
    assert torch.equal(a_img, b_img) and torch.equal(a_ids, b_ids)
    assert a_img.shape == (8, 3, 64, 64) and a_img.min() >= -1 and a_img.max() <= 1
    assert not torch.equal(a_ids, pool.batch(0, 2, 6, 8)[1])
    # under accelerate launch each process draws its own part of the batch; one process draws as before
    assert torch.equal(pool.batch(0, 2, 5, 8, rank=0)[0], a_img)
    assert not torch.equal(pool.batch(0, 2, 5, 8, rank=1)[0], a_img)


@pytest.mark.parametrize("preset", ["toy-sdxl", "toy-sd3"])
def test_tiny_run_pauses_resumes_and_exports(preset, tmp_path):
    cfg = ToyTrainConfig(preset=preset, work=tmp_path / "work", export=tmp_path / "export", vae_steps=2, steps=2,
                         batch_size=2, pool=tmp_path / "pool.npz", pool_size=8, workers=1, stats_samples=8,
                         save_every=1)
    assert run(cfg) is True
    progress = json.loads((tmp_path / "work" / "denoiser" / "progress.json").read_text())
    assert progress == {"step": 2, "done": True}
    # Resume with a larger budget: it goes on from step 2, not from scratch.
    (tmp_path / "work" / "denoiser" / "progress.json").write_text(json.dumps({"step": 2, "done": False}))
    cfg.steps = 3
    assert run(cfg) is True
    assert json.loads((tmp_path / "work" / "denoiser" / "progress.json").read_text())["step"] == 3
    pipe, _ = load_pipeline(str(tmp_path / "export"), device="cpu")
    image = generate(pipe, "a red star on a blue background", seed=0, steps=1, guidance_scale=0.0).images[0]
    assert np.asarray(image).shape == (64, 64, 3)
    assert not (tmp_path / "export" / "tokenizer" / "tokenizer.json").exists()


def test_pause_at_deadline_saves_state(tmp_path):
    cfg = ToyTrainConfig(preset="toy-sdxl", work=tmp_path / "work", vae_steps=50, steps=2, batch_size=2,
                         pool=tmp_path / "pool.npz", pool_size=8, workers=1, stats_samples=8, max_minutes=0.0)
    assert run(cfg) is False
    assert (tmp_path / "work" / "vae" / "state").exists()
    assert json.loads((tmp_path / "work" / "vae" / "progress.json").read_text())["step"] == 1


def test_fresh_denoiser_keeps_vae_and_text_encoders_and_resumes(tmp_path, monkeypatch):
    """``--init-from X --fresh-denoiser``: X's VAE (and text encoders, trained on), a new denoiser built from
    toy_architectures, and a resumed run keeps training the new one, not X's. X's tokenizers are copied, so this works
    where open_clip (the vocabulary's other source) is not installed, as on the GPU machine."""
    from training import toy_architectures, toy_pipeline

    def no_open_clip(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'open_clip'")

    monkeypatch.setattr(toy_pipeline, "save_slim_clip_tokenizer", no_open_clip)

    shipped = ROOT / "checkpoints" / "toy-sd3"
    cfg = ToyTrainConfig(preset="toy-sd3", work=tmp_path / "work", export=tmp_path / "export", steps=1, batch_size=2,
                         pool=tmp_path / "pool.npz", pool_size=4, workers=1, save_every=1, init_from=shipped,
                         fresh_denoiser=True)
    assert run(cfg) is True
    (tmp_path / "work" / "denoiser" / "progress.json").write_text(json.dumps({"step": 1, "done": False}))
    cfg.steps = 2
    assert run(cfg) is True
    exported = load_pipeline_for_training("toy-sd3", tmp_path / "export")
    original = load_pipeline_for_training("toy-sd3", shipped)
    fresh = toy_architectures.transformer().config
    assert all(exported.transformer.config[k] == fresh[k] for k in ("patch_size", "num_layers", "attention_head_dim"))
    a, b = exported.transformer.state_dict(), original.transformer.state_dict()
    assert a.keys() != b.keys() or any(a[k].shape != b[k].shape or not torch.equal(a[k], b[k]) for k in a)
    a, b = exported.vae.state_dict(), original.vae.state_dict()
    assert all(torch.equal(a[k].half(), b[k].half()) for k in a)
    assert exported.vae.config.shift_factor == original.vae.config.shift_factor
    assert not (tmp_path / "export" / "tokenizer" / "vocab.json").is_symlink()
    assert exported.tokenizer("a red star").input_ids == original.tokenizer("a red star").input_ids


def test_toy_pickscore_trains_pauses_resumes_and_exports(tmp_path, monkeypatch):
    """Both stages of the toy reward's training on a few pairs: a paused run resumes where it stopped, and the
    export scores through the very reward code the studio uses."""
    from alignment.rewards import load_reward
    from toyworld import ToyScenes
    from training.preference_data import write_pickapic
    from training.toy_pickscore import PickScoreTrainConfig
    from training.toy_pickscore import run as run_pickscore

    scenes = ToyScenes(8, seed=5, split="train")
    rows = [dict(caption=scenes[i]["caption"], image_0=Image.fromarray(scenes[i]["image"]),
                 image_1=Image.fromarray(scenes[(i + 1) % 8]["image"]), label_0=1.0, label_1=0.0) for i in range(8)]
    pairs = write_pickapic(rows, tmp_path / "pairs.parquet")
    cfg = PickScoreTrainConfig(work=tmp_path / "work", pairs=pairs, export=tmp_path / "export",
                               pool=tmp_path / "pool.npz", pool_size=8, pretrain_steps=1, steps=2, batch_size=4,
                               workers=1, save_every=1, max_minutes=0.0)
    assert run_pickscore(cfg) is False  # the deadline has passed: one step, state saved
    assert json.loads((tmp_path / "work" / "progress.json").read_text())["step"] == 1
    cfg.max_minutes = 10.0
    assert run_pickscore(cfg) is True
    assert json.loads((tmp_path / "work" / "progress.json").read_text())["step"] == 3
    reward = load_reward("toy-pickscore", source=str(tmp_path / "export"))
    scores = reward.score([rows[0]["image_0"], rows[0]["image_1"]], [rows[0]["caption"]] * 2)
    assert scores.shape == (2,) and torch.isfinite(scores).all()
    # continuing from the export (a fresh work folder, no pretraining, no open_clip): zero steps change nothing
    import transformers

    monkeypatch.setattr("training.toy_pickscore.save_slim_clip_tokenizer", None)  # must not be needed
    again = PickScoreTrainConfig(work=tmp_path / "work2", pairs=pairs, export=tmp_path / "export2",
                                 pool_size=8, pretrain_steps=0, steps=0, batch_size=4, workers=1,
                                 init_from=tmp_path / "export")
    assert run_pickscore(again) is True
    a, b = (transformers.CLIPModel.from_pretrained(tmp_path / d) for d in ("export", "export2"))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    # the continuation says where it started, and its config says fp16 throughout (it was loaded in fp32)
    assert json.loads((tmp_path / "export2" / "training.json").read_text())["init_from"] == str(tmp_path / "export")
    config = json.loads((tmp_path / "export2" / "config.json").read_text())
    assert {config["dtype"], config["text_config"]["dtype"], config["vision_config"]["dtype"]} == {"float16"}


def test_flow_times_mix_uniform_sigmas_into_the_logit_normal():
    """``--uniform-time-share``: 0 keeps SD3's logit-normal (1.4 % of its mass below 0.1); 1 is uniform (10 %)."""
    from training.toy_base import flow_times

    torch.manual_seed(0)
    for share, below in ((0.0, 0.014), (0.5, 0.057), (1.0, 0.1)):
        s = flow_times(200_000, share, "cpu")
        assert 0 < s.min() and s.max() < 1
        assert abs((s < 0.1).float().mean().item() - below) < 0.004, share
    with pytest.raises(ValueError, match="uniform-time-share"):
        ToyTrainConfig(preset="toy-sd3", work=Path("unused"), uniform_time_share=1.5)


def test_flow_times_logit_mean_moves_the_sigmas_toward_noise():
    """``--logit-mean m``: the sigmas' median is sigmoid(m) (0.5 for SD3's m = 0, 0.82 at the m = 1.5 that trained
    the shipped toy-sd3's last steps)."""
    from training.toy_base import flow_times

    torch.manual_seed(0)
    for mean in (0.0, 1.0, 1.5):
        s = flow_times(100_000, 0.0, "cpu", mean)
        assert abs(s.median().item() - torch.sigmoid(torch.tensor(mean)).item()) < 0.005, mean


def test_adaln_zero_starts_every_block_as_the_identity():
    """DiT's adaLN-Zero: every modulation is 0, so each joint block passes its image tokens through unchanged and
    the model's first output is 0; the output projection still gets a gradient, so training starts."""
    from training import toy_architectures

    torch.manual_seed(0)
    model = toy_architectures.adaln_zero_(toy_architectures.transformer())
    x = torch.randn(2, 16, 16, 16)
    kwargs = dict(timestep=torch.tensor([300.0, 900.0]), encoder_hidden_states=torch.randn(2, 7, 64),
                  pooled_projections=torch.randn(2, 64))
    tokens = model.pos_embed(x)
    temb = model.time_text_embed(kwargs["timestep"], kwargs["pooled_projections"])
    context = model.context_embedder(kwargs["encoder_hidden_states"])
    _, out = model.transformer_blocks[0](hidden_states=tokens, encoder_hidden_states=context, temb=temb)
    assert torch.equal(out, tokens)
    pred = model(hidden_states=x, **kwargs).sample
    assert torch.equal(pred, torch.zeros_like(pred))
    (pred - x).pow(2).mean().backward()
    assert model.proj_out.weight.grad.abs().sum() > 0
    # the default initialisation (what loading trained weights needs) is left alone by toy_architectures.transformer()
    assert toy_architectures.transformer().proj_out.weight.abs().sum() > 0


def test_adaln_zero_applies_to_a_fresh_toy_sd3_transformer_only(tmp_path, monkeypatch):
    """``--adaln-zero`` initialises the new transformer of ``--fresh-denoiser`` (one step later the modulations,
    whose gradient is still 0, are exactly 0 in the export); anywhere else it is refused before anything runs."""
    from training import toy_pipeline

    monkeypatch.setattr(toy_pipeline, "save_slim_clip_tokenizer", None)  # the tokenizers come from init_from
    for bad in (dict(preset="toy-sd3"), dict(preset="toy-sdxl", fresh_denoiser=True)):
        with pytest.raises(ValueError, match="adaln-zero"):
            ToyTrainConfig(work=tmp_path / "unused", adaln_zero=True, **bad)
    cfg = ToyTrainConfig(preset="toy-sd3", work=tmp_path / "work", export=tmp_path / "export", steps=1, batch_size=2,
                         pool=tmp_path / "pool.npz", pool_size=4, workers=1, init_from=ROOT / "checkpoints" / "toy-sd3",
                         fresh_denoiser=True, adaln_zero=True, logit_mean=1.5)
    assert run(cfg) is True
    exported = load_pipeline_for_training("toy-sd3", tmp_path / "export").transformer
    assert torch.equal(exported.transformer_blocks[0].norm1.linear.weight, torch.zeros_like(
        exported.transformer_blocks[0].norm1.linear.weight))
    assert exported.proj_out.weight.abs().sum() > 0
