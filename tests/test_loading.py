"""The one loader and baseline sampling: presets, local folders, hub ids, and every bad input."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import StableDiffusion3Pipeline, StableDiffusionXLPipeline

from alignment import PRESETS, ModelLoadError, check_prompt, generate, load_pipeline

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sdxl():
    return load_pipeline("toy-sdxl", device="cpu")


@pytest.fixture(scope="module")
def sd3():
    return load_pipeline("toy-sd3", device="cpu")


def test_presets_load_as_the_real_pipeline_classes(sdxl, sd3):
    assert isinstance(sdxl[0], StableDiffusionXLPipeline) and sdxl[1].name == "toy-sdxl"
    assert isinstance(sd3[0], StableDiffusion3Pipeline) and sd3[1].name == "toy-sd3"
    assert sd3[0].text_encoder_3 is None and sd3[0].tokenizer_3 is None
    assert sdxl[0].unet.dtype == torch.float32  # fp16 files are upcast on the CPU


def test_a_local_folder_and_the_preset_are_one_path(sdxl):
    pipe, preset = load_pipeline(str(ROOT / "checkpoints" / "toy-sdxl"), device="cpu")
    assert preset is None and isinstance(pipe, StableDiffusionXLPipeline)
    a = generate(sdxl[0], "a red star on a blue background", seed=3, steps=2, guidance_scale=0.0).images[0]
    b = generate(pipe, "a red star on a blue background", seed=3, steps=2, guidance_scale=0.0).images[0]
    assert np.array_equal(np.asarray(a), np.asarray(b))


def test_a_local_copy_of_a_preset_is_sampled_as_the_preset():
    """``NAME=FOLDER``: the folder's weights with the preset's steps, guidance and size; a bare folder gets the
    same fallback from every sampler (baseline, guided, bank)."""
    from alignment.diffusion_sampler import _settings
    from alignment.presets import FALLBACK_STEPS, find_preset, sampling_settings

    folder = str(ROOT / "checkpoints" / "toy-sdxl")
    pipe, preset = load_pipeline(f"sdxl-turbo={folder}", device="cpu")
    assert isinstance(pipe, StableDiffusionXLPipeline) and preset.name == "sdxl-turbo" and preset.source == folder
    assert sampling_settings(preset) == (1, 0.0) and _settings(pipe, preset, None, None)[2] == {"height": 512,
                                                                                             "width": 512}
    assert find_preset(f"not-a-preset={folder}") is None and find_preset("sdxl-turbo=") is None
    assert sampling_settings(None) == (FALLBACK_STEPS, 0.0) == _settings(pipe, None, None, None)[:2]
    assert generate(pipe, "a red star", seed=1, steps=1).steps == 1


@pytest.mark.parametrize("which", ["sdxl", "sd3"])
def test_generation_is_seeded(which, request):
    pipe, preset = request.getfixturevalue(which)
    one = generate(pipe, "a red star on a blue background", seed=7, preset=preset)
    two = generate(pipe, "a red star on a blue background", seed=7, preset=preset)
    other = generate(pipe, "a red star on a blue background", seed=8, preset=preset)
    assert one.images[0].size == (64, 64)
    assert one.steps == preset.steps and one.seconds > 0
    assert np.array_equal(np.asarray(one.images[0]), np.asarray(two.images[0]))
    assert not np.array_equal(np.asarray(one.images[0]), np.asarray(other.images[0]))


def test_a_view_is_the_same_pipeline_with_its_device_read_once(sdxl, monkeypatch):
    from alignment.sampling import with_component

    pipe = sdxl[0]
    view = with_component(pipe, scheduler=pipe.scheduler)
    assert isinstance(view, type(pipe)) and type(view).__name__ == type(pipe).__name__
    assert view.unet is pipe.unet and view._execution_device == pipe._execution_device == torch.device("cpu")
    again = with_component(view)
    assert type(again) is type(view)  # a view of a view is not a subclass of a subclass
    # the view no longer asks diffusers (which walks every submodule for offloading hooks on each call)
    monkeypatch.setattr(type(pipe), "_execution_device", property(lambda self: 1 / 0))
    assert again._execution_device == torch.device("cpu")
    a = generate(again, "a red star", seed=1, steps=1, guidance_scale=0.0).images[0]
    monkeypatch.undo()
    b = generate(pipe, "a red star", seed=1, steps=1, guidance_scale=0.0).images[0]
    assert np.array_equal(np.asarray(a), np.asarray(b))


def test_batched_prompts(sdxl):
    result = generate(sdxl[0], ["a red star on a blue background", "a white ring on a black background"], seed=0,
                      preset=sdxl[1])
    assert len(result.images) == 2 and result.prompts[1] == "a white ring on a black background"


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t", "x" * 10_000, None])
def test_bad_prompts_are_refused_clearly(prompt):
    with pytest.raises(ValueError, match="prompt"):
        check_prompt(prompt)


def test_prompt_cleaning():
    assert check_prompt("  a red\x00 star\n on a blue\tbackground ") == "a red star on a blue background"


@pytest.mark.parametrize("kwargs,match", [
    (dict(steps=0), "steps"), (dict(steps=5000), "steps"), (dict(guidance_scale=-1.0), "guidance"),
    (dict(guidance_scale=float("nan")), "guidance"), (dict(seed=-1), "seed"),
])
def test_bad_sampling_settings_are_refused(sdxl, kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate(sdxl[0], "a red star", **kwargs)


def test_missing_and_malformed_sources(tmp_path):
    with pytest.raises(ModelLoadError, match="neither a preset"):
        load_pipeline(str(tmp_path / "nope"))
    with pytest.raises(ModelLoadError, match="no model given"):
        load_pipeline("")
    with pytest.raises(ModelLoadError, match="model_index.json"):
        load_pipeline(str(tmp_path))
    (tmp_path / "file.bin").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="is a file"):
        load_pipeline(str(tmp_path / "file.bin"))


def test_corrupt_checkpoint_folder(tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(ROOT / "checkpoints" / "toy-sdxl", broken)
    weights = broken / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ModelLoadError, match="could not load .* complete diffusers pipeline"):
        load_pipeline(str(broken), device="cpu")


def test_missing_toy_weights_say_how_to_restore(monkeypatch, tmp_path):
    from dataclasses import replace

    import alignment.loading as loading

    monkeypatch.setitem(PRESETS, "toy-sdxl", replace(PRESETS["toy-sdxl"], source=str(tmp_path / "gone")))
    monkeypatch.setattr(loading, "find_preset", lambda name: PRESETS.get(name))
    with pytest.raises(ModelLoadError, match="git checkout -- checkpoints"):
        load_pipeline("toy-sdxl")


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "alignment", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def test_cli_generate_prints_one_json_line(tmp_path):
    out = tmp_path / "out.png"
    proc = _cli("generate", "--model", "toy-sdxl", "--prompt", "a red star on a blue background", "--seed", "0",
                "--out", str(out), "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["model"] == "toy-sdxl" and summary["seed"] == 0 and summary["steps"] == 4
    assert summary["seconds"] > 0 and out.exists()


def test_cli_hub_model_offline_fails_with_a_clear_message(tmp_path):
    proc = _cli("generate", "--model", "stabilityai/sdxl-turbo", "--prompt", "a cat", "--out", str(tmp_path / "x.png"),
                env={"HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2
    assert "could not load 'stabilityai/sdxl-turbo'" in proc.stderr and "internet access" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_bad_prompt(tmp_path):
    proc = _cli("generate", "--model", "toy-sdxl", "--prompt", " ", "--out", str(tmp_path / "x.png"))
    assert proc.returncode == 2 and "prompt is empty" in proc.stderr


def test_checkpoint_sizes():
    root = (ROOT / "checkpoints").resolve()
    links = [p for p in root.rglob("*") if p.is_symlink()]
    assert links, "the shared CLIP vocabulary should be stored once (python -m training link-vocabulary)"
    assert all(p.exists() and p.resolve().is_relative_to(root) for p in links)  # relative, inside the tree
    files = {p.resolve() for p in root.rglob("*") if p.is_file()}  # a linked file counts once
    assert all(p.stat().st_size < 16 * 2**20 for p in files)
    assert sum(p.stat().st_size for p in files) < 45e6  # the repository's budget for shipped weights


def test_link_shared_vocabulary(tmp_path):
    from training.clip_tokenizer import link_shared_vocabulary

    for name, text in (("a/tok", "same"), ("b/tok", "same"), ("c", "other")):
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / "vocab.json").write_text(text)
    (tmp_path / "a" / "tok" / "merges.txt").write_text("m")
    replaced = link_shared_vocabulary(tmp_path, shared="bpe")
    assert (tmp_path / "b" / "tok" / "vocab.json").is_symlink()
    assert (tmp_path / "b" / "tok" / "vocab.json").read_text() == "same"
    assert not (tmp_path / "c" / "vocab.json").is_symlink()  # a different file keeps its own copy
    assert (tmp_path / "c" / "vocab.json").read_text() == "other"
    assert len(replaced) == 3 and (tmp_path / "bpe" / "merges.txt").read_text() == "m"
    assert link_shared_vocabulary(tmp_path, shared="bpe") == []  # idempotent
