"""Pick-a-Pic-format preference pairs: write, read back, skip and count broken rows; Bradley-Terry labels; the toy
pair builder."""

import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from alignment.pickapic import COLUMNS, LoadReport, iter_pairs, jpeg_bytes, write_pickapic
from training.preference_data import bradley_terry_labels


def _img(value):
    return Image.fromarray(np.full((64, 64, 3), value, dtype=np.uint8))


def test_round_trip_and_broken_rows(tmp_path):
    rows = [dict(caption=f"a red star {i}", image_0=_img(10 * i), image_1=_img(200 - 10 * i), label_0=1.0,
                 label_1=0.0, model_0="a", model_1="b") for i in range(4)]
    path = write_pickapic(rows, tmp_path / "pairs.parquet")
    frame = pd.read_parquet(path)
    assert tuple(frame.columns) == COLUMNS and len(frame) == 4
    good = frame.iloc[0].to_dict()
    broken = [dict(good, caption=""), dict(good, caption=None), dict(good, jpg_0=b"not a jpeg"),
              dict(good, jpg_1=jpeg_bytes(_img(5))[:40]), dict(good, label_0=float("nan")), dict(good, label_1=None)]
    pd.concat([frame, pd.DataFrame(broken)]).to_parquet(path, index=False)
    report = LoadReport()
    pairs = list(iter_pairs(path, report=report))
    assert len(pairs) == 4 and report.read == 10 and report.kept == 4
    assert report.skipped == {"missing caption": 2, "undecodable image": 2, "bad label": 2}
    assert "skipped" in str(report)
    assert pairs[1].caption == "a red star 1" and pairs[1].model_1 == "b"
    assert abs(np.asarray(pairs[1].image_0).astype(int) - 10).max() <= 2  # JPEG round trip
    assert len(list(iter_pairs(path, limit=2))) == 2


def test_reading_a_folder_of_shards(tmp_path):
    for k in range(2):
        write_pickapic([dict(caption="x", image_0=_img(k), image_1=_img(9), label_0=0.5, label_1=0.5)],
                       tmp_path / "shards" / f"{k}.parquet")
    assert len(list(iter_pairs(tmp_path / "shards"))) == 2


def test_bradley_terry_labels():
    rng = np.random.default_rng(0)
    assert bradley_terry_labels(5.0, 5.01, rng) == (0.5, 0.5)
    wins = np.mean([bradley_terry_labels(6.0, 5.0, rng)[0] for _ in range(4000)])
    assert abs(wins - 1 / (1 + math.exp(-1.0))) < 0.03
    assert np.mean([bradley_terry_labels(9.0, 1.0, rng)[0] for _ in range(200)]) > 0.99


def test_toy_pairs_builder(tmp_path):
    from training.toy_preferences import make_toy_pairs

    rows = make_toy_pairs(3, seed=1, device="cpu")
    assert len(rows) == 3
    assert {frozenset((r["model_0"], r["model_1"])) for r in rows} == {
        frozenset({"toy-sdxl", "toy-sd3"}), frozenset({"toy-sdxl"}), frozenset({"render"})}
    for r in rows:
        assert (r["label_0"], r["label_1"]) in {(1.0, 0.0), (0.0, 1.0), (0.5, 0.5)}
        assert r["image_0"].size == (64, 64)
    path = write_pickapic(rows, tmp_path / "toy.parquet")
    assert [p.caption for p in iter_pairs(path)] == [r["caption"] for r in rows]


def test_pair_sources_are_chosen_on_the_command_line(tmp_path):
    """`--sources` cycles pair i over the given list (here toy-sd3 against itself, as a reward refresh for a new
    toy-sd3 needs); malformed sources are refused before anything loads."""
    from training.__main__ import main
    from training.toy_preferences import make_toy_pairs, parse_sources

    rows = make_toy_pairs(4, seed=2, device="cpu", sources=parse_sources(["toy-sd3:toy-sd3", "render:render"]))
    assert [frozenset((r["model_0"], r["model_1"])) for r in rows] == [frozenset({"toy-sd3"}), frozenset({"render"})] * 2
    assert all(r["image_0"].size == (64, 64) and r["image_0"] != r["image_1"] for r in rows)
    for bad in (["toy-sd3"], ["toy-sd3:render"], ["a:b:c"], [":toy-sd3"]):
        with pytest.raises(ValueError):
            parse_sources(bad)
        with pytest.raises(SystemExit):
            main(["toy-preferences", "--captions", "2", "--out", str(tmp_path / "x.parquet"), "--sources", *bad])
    assert not (tmp_path / "x.parquet").exists()
    with pytest.raises(ValueError, match="at least one"):
        parse_sources([])


def test_detail_pairs_separate_sharpness_from_fidelity():
    """Detail pairs are renders of the caption's scene: either the same scene up to blur and noise, or a soft
    faithful render against a sharp, clean mistake; a share of 1 makes only those, without running a model."""
    from toyworld import taste
    from toyworld.oracle import analyse
    from training.toy_preferences import make_toy_pairs

    rows = make_toy_pairs(40, seed=3, device="cpu", detail_share=1.0)
    assert {(r["model_0"], r["model_1"]) for r in rows} == {("render-detail", "render-detail")}
    same_fidelity = sharp_mistakes = 0
    for r in rows:
        t0, t1 = taste(r["image_0"], r["caption"]), taste(r["image_1"], r["caption"])
        if t0.fidelity == t1.fidelity:
            same_fidelity += 1
        else:
            faithful, mistake = ((r["image_0"], r["image_1"]) if t0.fidelity > t1.fidelity
                                 else (r["image_1"], r["image_0"]))
            sharp_mistakes += analyse(mistake).sharpness >= analyse(faithful).sharpness
    assert same_fidelity >= 10 and len(rows) - same_fidelity >= 10
    assert sharp_mistakes >= 0.8 * (len(rows) - same_fidelity)  # the mistake is the sharper image
    with pytest.raises(ValueError, match="detail_share"):
        make_toy_pairs(2, detail_share=1.5)


def test_hub_source_without_datasets_says_what_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_datasets(name, *a, **k):
        if name == "datasets":
            raise ImportError("no module named datasets")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_datasets)
    with pytest.raises(ImportError, match="pip install datasets"):
        next(iter_pairs("yuvalkirstain/pickapic_v1"))
