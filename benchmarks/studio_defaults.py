"""Does the studio show the method at its default sliders? For each model, the Explore tab's five example prompts ×
seeds 0–9 at the defaults (``alignment.defaults``): the share of pairs where the aligned image's reward is above the
baseline's, and where the toy world's taste (the oracle, evaluation only) is. Written as JSON.

    python -m benchmarks.studio_defaults                    # → benchmarks/results/studio_defaults.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
TARGET = 0.9  # aligned reward above the baseline's in at least this share of pairs


def measure(models: list[str], seeds: list[int]) -> dict:
    from studio.engine import Engine
    from studio.explore import EXAMPLES
    from studio.settings import StudioSettings, set_threads
    from toyworld import taste

    set_threads("cpu")
    engine = Engine(StudioSettings(models=tuple(models), device="cpu"))
    out = {}
    for model in models:
        rows = []
        for prompt, _ in EXAMPLES:
            for seed in seeds:
                start = time.perf_counter()
                view = engine.explore(model, prompt, seed)
                name = next(iter(view.baseline.rewards))
                rows.append({"prompt": prompt, "seed": seed, "baseline": view.baseline.rewards[name],
                             "aligned": view.aligned.rewards[name], "aligned_title": view.aligned.title,
                             "baseline_taste": taste(view.baseline.image, prompt).score,
                             "aligned_taste": taste(view.aligned.image, prompt).score,
                             "seconds": time.perf_counter() - start})
        above = [r["aligned"] > r["baseline"] for r in rows]
        taste_above = [r["aligned_taste"] > r["baseline_taste"] for r in rows]
        out[model] = {"pairs": len(rows), "reward_above_baseline": sum(above) / len(rows),
                      "taste_above_baseline": sum(taste_above) / len(rows),
                      "taste_ties": sum(r["aligned_taste"] == r["baseline_taste"] for r in rows) / len(rows),
                      "mean_reward_gain": sum(r["aligned"] - r["baseline"] for r in rows) / len(rows),
                      "aligned": rows[0]["aligned_title"], "target": TARGET, "rows": rows}
        print(f"{model}: aligned reward above the baseline's in {100 * out[model]['reward_above_baseline']:.0f} % "
              f"of {len(rows)} pairs (taste: {100 * out[model]['taste_above_baseline']:.0f} %), "
              f"{out[model]['aligned']}", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.studio_defaults")
    parser.add_argument("--models", nargs="+", default=["toy-sdxl", "toy-sd3"])
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0..S-1 for each example prompt")
    parser.add_argument("--out", type=Path, default=RESULTS / "studio_defaults.json")
    args = parser.parse_args(argv)
    report = {"date": datetime.date.today().isoformat(), "machine": platform.processor() or platform.machine(),
              "command": "python -m benchmarks.studio_defaults", "models": measure(args.models, list(range(args.seeds)))}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
