"""Side by side: IS-guided vs best-of-N time at equal N, and peak memory vs N.

    python -m evaluations.benchmark_flow --model toy-sd3 --ns 4 8 16 32 --repeats 3 --reward toy-pickscore

Each call serves ``--prompts`` held-out captions at once (default 8 = ``--batch``), so the guided trajectories run
in batches as wide as the bank's. For each N and repeat (a fresh seed, so every bank is made cold), interleaved:
* best-of-N from a fresh bank: N samples in batches of ``--batch``, decoded and scored, then the argmax;
* IS-guided from another fresh bank: the same bank work plus one guided trajectory (with decoding and scoring);
* IS-guided again with a new β on the now warm bank: the guided trajectory alone (what moving the β slider costs);
* the base pipeline (one trajectory) for reference.
Peak memory of each call above what was held before it: ``torch.cuda.max_memory_allocated`` on CUDA, the peak
resident set size (psutil, sampled every 2 ms) on the CPU, next to the bank's own size. Prints medians and the
ratios; writes ``evaluations/results/benchmark_flow_<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from pathlib import Path

import torch

from alignment import ModelLoadError, load_pipeline
from alignment.flow_sampler import baseline, best_of_n, sample_is
from alignment.sample_bank import SampleBank
from toyworld import sample_captions

from .benchmarking import timed
from .rewards import load_reward

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluations.benchmark_flow")
    parser.add_argument("--model", default="toy-sd3")
    parser.add_argument("--ns", type=int, nargs="+", default=[4, 8, 16, 32])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--beta", type=float, default=0.3)
    parser.add_argument("--reward", default="toy-pickscore", help="toy-taste (the oracle) for smoke runs only")
    parser.add_argument("--batch", type=int, default=8, help="bank samples per pipeline call")
    parser.add_argument("--prompts", type=int, default=8, help="captions per call (the guided batch)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    pipe, preset = load_pipeline(args.model, device=args.device)
    device = pipe._execution_device

    prompts = sample_captions(args.prompts, seed=7, split="heldout")
    reward = load_reward(args.reward)  # loaded once, shared by every bank

    def bank():
        return SampleBank(pipe, reward, preset=preset, batch_size=args.batch)

    for seed in range(2):  # warm-up
        sample_is(pipe, prompts, seed=10**6 + seed, n=2, bank=bank())
    rows = []
    for n in args.ns:
        runs = []
        for r in range(args.repeats):
            seed = 1000 * n + r
            bon_bank, is_bank = bank(), bank()
            _, t_base, m_base = timed(device, baseline, pipe, prompts, seed=seed, bank=bank())
            _, t_bon, m_bon = timed(device, best_of_n, pipe, prompts, seed=seed, n=n, bank=bon_bank)
            guided, t_is, m_is = timed(device, sample_is, pipe, prompts, seed=seed + 1, n=n, beta=args.beta,
                                       bank=is_bank)
            _, t_warm, m_warm = timed(device, sample_is, pipe, prompts, seed=seed + 1, n=n, beta=2 * args.beta,
                                      bank=is_bank)
            runs.append(dict(base=t_base, bon=t_bon, is_cold=t_is, is_warm=t_warm, mem_base=m_base, mem_bon=m_bon,
                             mem_is=m_is, mem_is_warm=m_warm,
                             bank_bytes=sum(is_bank.get(p, seed + 1, n).nbytes for p in prompts),
                             ess_b=float(guided.ess_b.mean())))
        med = {k: statistics.median(run[k] for run in runs) for k in runs[0]}
        row = {"n": n, **{f"{k}_median": v for k, v in med.items()},
               "is_over_bon": med["is_cold"] / med["bon"], "warm_is_over_base": med["is_warm"] / med["base"],
               "runs": runs}
        rows.append(row)
        mib = {k: med[k] / 2**20 for k in ("mem_base", "mem_bon", "mem_is", "mem_is_warm", "bank_bytes")}
        print(f"N={n:3d}  best-of-N {med['bon']:.3f} s  IS {med['is_cold']:.3f} s  IS/BoN {row['is_over_bon']:.3f}  "
              f"| new β on a warm bank {med['is_warm']:.3f} s = {row['warm_is_over_base']:.2f} x base "
              f"({med['base']:.3f} s)  | peak MiB: base {mib['mem_base']:.1f}, BoN {mib['mem_bon']:.1f}, "
              f"IS {mib['mem_is']:.1f}, IS warm {mib['mem_is_warm']:.1f}; bank {mib['bank_bytes']:.2f}", flush=True)
    report = {"model": args.model, "device": str(device), "cpu": platform.processor() or platform.machine(),
              "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
              "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None, "reward": args.reward,
              "smoke": args.reward == "toy-taste", "beta": args.beta, "batch": args.batch, "prompts": prompts,
              "repeats": args.repeats,
              "memory": "torch.cuda.max_memory_allocated" if device.type == "cuda" else "peak RSS (psutil, 2 ms)",
              "rows": rows}
    out = args.out or RESULTS / f"benchmark_flow_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except ModelLoadError as e:  # a missing model or reward: one clear line, no stack trace
        raise SystemExit(f"error: {e}") from None
