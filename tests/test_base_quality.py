"""``python -m evaluations.base_quality``: the presets' defaults, or the steps / CFG / shift it is told (how the
defaults were chosen), on held-out captions."""

import json

import pytest

from alignment import load_pipeline
from evaluations import base_quality


def test_overrides_reach_the_sampler_and_the_summary(tmp_path):
    summary, images = base_quality.evaluate("toy-sd3", 2, caption_seed=3, steps=2, guidance_scale=0.0, shift=6.0)
    assert (summary["steps"], summary["guidance_scale"], summary["shift"]) == (2, 0.0, 6.0)
    assert summary["captions"] == 2 and len(images) == 2 and 0 <= summary["prompt_fidelity"] <= 1
    again, _ = base_quality.evaluate("toy-sd3", 2, caption_seed=3, steps=2, guidance_scale=0.0, shift=6.0)
    assert again["taste_mean"] == summary["taste_mean"]  # seeded: the same draw gives the same images
    other, _ = base_quality.evaluate("toy-sd3", 2, caption_seed=3, steps=2, guidance_scale=0.0, shift=1.0)
    assert other["shift"] == 1.0 and other["taste_mean"] != summary["taste_mean"]  # 2 steps: σ = 1, s(0.5), 0


def test_shift_is_refused_where_it_means_nothing():
    pipe, _ = load_pipeline("toy-sdxl", device="cpu")
    with pytest.raises(ValueError, match="flow-matching"):
        base_quality.with_shift(pipe, 3.0)
    pipe, _ = load_pipeline("toy-sd3", device="cpu")
    with pytest.raises(ValueError, match="must lie in"):
        base_quality.with_shift(pipe, -1.0)


def test_cli_keeps_the_defaults_file_for_the_defaults(tmp_path, capsys):
    with pytest.raises(SystemExit):
        base_quality.main(["--models", "toy-sd3", "--n", "1", "--steps", "2"])
    assert "name an --out" in capsys.readouterr().err
    out = tmp_path / "s.json"
    assert base_quality.main(["--models", "toy-sd3", "--n", "1", "--steps", "1", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["results"][0]["steps"] == 1
    assert not (tmp_path / "grid_toy-sd3.png").exists()  # not the preset's settings: no grid
    other = tmp_path / "seed3" / "q.json"  # the presets' settings on other captions: the grid goes beside the JSON
    assert base_quality.main(["--models", "toy-sd3", "--n", "2", "--caption-seed", "3", "--out", str(other)]) == 0
    assert (other.parent / "grid_toy-sd3.png").exists() and (other.parent / "grid_toy-sd3.md").exists()
