"""The real-scale GPU benchmark runs every line on the toy presets on the CPU (``--smoke``), so a broken script is
caught here and not on the GPU machine."""

from __future__ import annotations

import json

from evaluations import benchmark_gpu


def test_the_gpu_benchmark_runs_end_to_end_in_smoke_mode(tmp_path):
    out = tmp_path / "bench.json"
    assert benchmark_gpu.main(["--smoke", "--repeats", "1", "--warmup", "0", "--ns", "1", "--sdxl-batches", "1",
                               "--cache-pairs", "1", "--cache-batch", "2", "--train-pairs", "1",
                               "--consistency-fractions", "1", "0.5", "--guidance-pairs", "2", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["weights"].startswith("toy") and report["machine"]["device"] == "cpu"
    sdxl = report["sdxl"]["batches"]["1"]
    assert set(sdxl) == {"baseline", "guided", "tweedie"} and sdxl["baseline"]["time_ratio"] == 1.0
    assert all(r["seconds"] > 0 and r["peak_gib"] > 0 for r in sdxl.values())
    (row,) = report["sd35"]["rows"]
    assert row["n"] == 1 and row["is"]["seconds"] > 0 and row["is_over_bon"] > 0 and row["ess_b_mean"] > 0
    steps = report["training"]["steps"]
    guided = {f"guidance_{p}pairs_consistency_{f}" for p in (1, 2) for f in ("1", "0.5")}
    guided |= {f"guidance_{p}pairs_cached_targets" for p in (1, 2)}
    assert set(steps) == {"dpo_full_unet"} | guided
    assert steps["dpo_full_unet"]["ratio_to_dpo"] == 1.0 and steps["guidance_2pairs_consistency_1"]["pairs"] == 2
    overall = report["training"]["overall"]
    assert set(overall) == guided and all(v["saving_vs_dpo"] < 1 for v in overall.values())
    assert report["training"]["targets_seconds_per_image"] > 0
    assert set(report["commands"]) == {"sdxl", "sd35", "training"}
