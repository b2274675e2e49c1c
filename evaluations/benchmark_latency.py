"""CPU (or any device) latency of one 64x64 image per preset: the whole pipeline call (text encoding, the
preset's steps with its guidance, VAE decode), median of ``--repeats`` after warm-up, measured side by side.

    python -m evaluations.benchmark_latency --models toy-sdxl toy-sd3 --repeats 10
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from alignment import generate, load_pipeline

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluations.benchmark_latency")
    parser.add_argument("--models", nargs="+", default=["toy-sdxl", "toy-sd3"])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=RESULTS / "latency_cpu.json")
    args = parser.parse_args(argv)
    prompt = "a red star on a blue background"
    report = {"device": args.device, "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
              "torch_threads": torch.get_num_threads(), "results": []}
    for model in args.models:
        pipe, preset = load_pipeline(model, device=args.device)
        for seed in range(2):
            generate(pipe, prompt, seed=seed, preset=preset)
        times = []
        for seed in range(args.repeats):
            start = time.perf_counter()
            generate(pipe, prompt, seed=seed, preset=preset)
            times.append(time.perf_counter() - start)
        row = {"model": model, "steps": preset.steps, "guidance_scale": preset.guidance_scale,
               "median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}
        print(json.dumps(row))
        report["results"].append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
