"""Scoring cost of a reward: 64 toy images (PIL, 64×64) with their captions, one ``score`` call, median of
``--repeats`` after a warm-up. Rewards listed together are timed side by side in one run.

    python -m evaluations.benchmark_rewards --rewards toy-pickscore toy-taste --repeats 10
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from toyworld import caption_for, render_pil, sample_scene

from .rewards import load_reward

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluations.benchmark_rewards")
    parser.add_argument("--rewards", nargs="+", default=["toy-pickscore", "toy-taste"])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", type=Path, default=RESULTS / "reward_latency_cpu.json")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    scenes = [sample_scene(rng, split="all") for _ in range(args.images)]
    images, captions = [render_pil(s) for s in scenes], [caption_for(s, rng) for s in scenes]
    report = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
              "torch_threads": torch.get_num_threads(), "load_average": os.getloadavg(), "images": args.images,
              "results": []}
    for name in args.rewards:
        reward = load_reward(name)
        reward.score(images, captions)
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            reward.score(images, captions)
            times.append(time.perf_counter() - start)
        row = {"reward": name, "median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}
        print(json.dumps(row))
        report["results"].append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
