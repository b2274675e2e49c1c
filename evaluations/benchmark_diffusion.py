"""Seconds per image of base, guided and Tweedie sampling on toy-sdxl, measured side by side: the three methods
take turns on the same prompts and seeds, so a busy machine slows them alike; medians and ratios to base.

    python -m evaluations.benchmark_diffusion --batch 1 8 --repeats 10
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from pathlib import Path

import torch

from alignment import load_pipeline
from alignment.diffusion_sampler import sample_baseline, sample_guided, sample_tweedie
from alignment.guidance_network import GuidanceNetwork
from alignment.presets import CHECKPOINTS

from .rewards import load_reward

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluations.benchmark_diffusion")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--network", type=Path, default=CHECKPOINTS / "toy-guidance")
    parser.add_argument("--reward", default="toy-pickscore")
    parser.add_argument("--out", type=Path, default=RESULTS / "diffusion_latency_cpu.json")
    args = parser.parse_args(argv)
    pipe, preset = load_pipeline("toy-sdxl", device=args.device)
    network = GuidanceNetwork.from_pretrained(args.network)
    reward = load_reward(args.reward, device=args.device)
    methods = {
        "base": lambda p, s: sample_baseline(pipe, p, seed=s, preset=preset),
        "guided": lambda p, s: sample_guided(pipe, p, network=network, beta=0.5, eta=0.5, seed=s, preset=preset),
        "tweedie": lambda p, s: sample_tweedie(pipe, p, reward=reward, beta=8.0, seed=s, preset=preset),
    }
    report = {"device": args.device, "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
              "torch_threads": torch.get_num_threads(), "load_average": os.getloadavg(), "results": []}
    for batch in args.batch:
        prompts = ["a red star on a blue background"] * batch
        for fn in methods.values():  # warm-up
            fn(prompts, 0)
        times = {name: [] for name in methods}
        for seed in range(args.repeats):
            for name, fn in methods.items():
                times[name].append(fn(prompts, seed).seconds / batch)
        median = {name: statistics.median(t) for name, t in times.items()}
        row = {"batch": batch, "seconds_per_image": median,
               "ratio_to_base": {name: median[name] / median["base"] for name in methods}}
        print(json.dumps(row))
        report["results"].append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
