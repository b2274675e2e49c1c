"""Eager against accelerated (``alignment.acceleration.accelerate``: fused projections, channels-last, regional
compilation) on one GPU, side by side in one run, full-size architectures with random weights, bf16:

    python -m evaluations.benchmark_compile --sections sdxl sd35 --out evaluations/results/benchmark_compile.json

* ``sdxl``: SDXL-Turbo 512², one step: baseline and guided (the SDXL-size guidance network) at batch 1 and 8, and
  reward scoring (PickScore architecture) of 8 images, measured eager; then ``accelerate`` and the first call at
  each shape (the compile, reported as ``compile_seconds``); then the same measured again. Correctness: the
  same seed's baseline and guided image eager and accelerated (mean and max absolute pixel difference, 0–255).
* ``sd35``: SD3.5-Large-Turbo 1024², four steps: the baseline image and a β change on a made bank (IS at the
  default N and K, and with one guided particle), eager then accelerated, and the compile.

Every time is a median of ``--repeats`` interleaved rounds, synchronised; ``--smoke`` runs it all on the toy
presets on the CPU with ``backend="eager"`` (tracing only), which is what tests/test_acceleration.py does.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from alignment.acceleration import accelerate
from alignment.defaults import FLOW_BETA, FLOW_N
from alignment.diffusion_sampler import sample_baseline, sample_guided
from alignment.flow_sampler import baseline, sample_is
from alignment.repeated_context import attend_repeats_once
from alignment.sample_bank import SampleBank
from toyworld import sample_captions

from . import benchmark_gpu as gpu
from .benchmarking import machine

RESULTS = Path(__file__).resolve().parent / "results"


def pixel_difference(a, b) -> dict:
    a, b = (np.asarray(x.convert("RGB"), dtype=np.float64) for x in (a, b))
    return {"mean_abs": float(np.abs(a - b).mean()), "max_abs": float(np.abs(a - b).max())}


def first_calls(configs: dict) -> None:
    """One call of every config, synchronised: where the compiler runs."""
    for fn in configs.values():
        fn(10**6)
    gpu.synchronize()


def eager_then_accelerated(configs: dict, args, section: str, **parts) -> tuple[dict, dict, dict]:
    """Every config measured eager (saved as the section's report at once, so a compile that fails or runs out of
    time keeps them), then ``accelerate(**parts)`` and the first call of each (the compile), then measured again:
    (eager times, accelerated times, the report's common fields)."""
    eager = gpu.interleaved(configs, args.repeats, args.warmup)
    args.save(section, {"eager": {name: {"ms": r["seconds"] * 1e3} for name, r in eager.items()}})
    torch._dynamo.reset()  # no graphs of another section's models (the VAE decoder and CLIP code are shared)
    started = time.perf_counter()
    done = accelerate(**parts, **args.compile_kwargs)
    first_calls(configs)
    compile_seconds = time.perf_counter() - started
    fast = gpu.interleaved(configs, args.repeats, args.warmup)
    rows = {name: {"eager_ms": eager[name]["seconds"] * 1e3, "accelerated_ms": fast[name]["seconds"] * 1e3,
                   "speed_up": eager[name]["seconds"] / fast[name]["seconds"]} for name in eager}
    return eager, fast, {"accelerated": done, "compile_seconds": compile_seconds, "rows": rows}


def print_report(model: str, out: dict) -> None:
    for name, row in out["rows"].items():
        print(f"{model} {name}: eager {row['eager_ms']:.1f} ms, accelerated {row['accelerated_ms']:.1f} ms "
              f"({row['speed_up']:.2f}×)", flush=True)
    guided = f", guided {out['same_seed_guided']}" if "same_seed_guided" in out else ""
    print(f"compile {out['compile_seconds']:.1f} s; same seed: {out['same_seed']}{guided}; {out['accelerated']}",
          flush=True)


def bench_sdxl(args) -> dict:
    pipe, preset = gpu.SCALE.diffusion()
    reward = gpu.SCALE.reward()
    network = gpu.SCALE.network().to(gpu.SCALE.device, gpu.SCALE.dtype).eval().requires_grad_(False)  # as served
    captions = sample_captions(max(args.batches), seed=3)
    holder: dict = {}

    def configs_for(batch):
        prompts = captions[:batch]
        return {
            f"baseline b{batch}": lambda s: sample_baseline(pipe, prompts, seed=s, preset=preset),
            f"guided b{batch}": lambda s: sample_guided(pipe, prompts, network=network, beta=1.0, eta=1.0, seed=s,
                                                        preset=preset),
            **({f"scoring b{batch}": lambda s: reward.score(holder["images"][:batch], prompts)} if batch > 1 else {}),
        }

    holder["images"] = sample_baseline(pipe, captions, seed=0, preset=preset).images
    reference = sample_baseline(pipe, captions[:1], seed=7, preset=preset).images[0]
    guided_reference = sample_guided(pipe, captions[:1], network=network, beta=1.0, eta=1.0, seed=7,
                                     preset=preset).images[0]
    configs = {k: v for b in args.batches for k, v in configs_for(b).items()}
    eager, fast, out = eager_then_accelerated(configs, args, "sdxl", pipe=pipe, network=network, reward=reward)
    out["same_seed"] = pixel_difference(reference, sample_baseline(pipe, captions[:1], seed=7, preset=preset).images[0])
    out["same_seed_guided"] = pixel_difference(guided_reference, sample_guided(
        pipe, captions[:1], network=network, beta=1.0, eta=1.0, seed=7, preset=preset).images[0])
    for b in args.batches:
        out[f"baseline_images_per_second_b{b}"] = {"eager": b / eager[f"baseline b{b}"]["seconds"],
                                                   "accelerated": b / fast[f"baseline b{b}"]["seconds"]}
        out[f"guided_over_baseline_b{b}"] = {
            name: times[f"guided b{b}"]["seconds"] / times[f"baseline b{b}"]["seconds"]
            for name, times in (("eager", eager), ("accelerated", fast))}
        if f"scoring b{b}" in out["rows"]:
            out["rows"][f"scoring b{b}"]["accelerated_ms_per_image"] = out["rows"][f"scoring b{b}"]["accelerated_ms"] / b
    print_report(preset.name, out)
    gpu.free(pipe, reward, network)
    return out


def bench_sd35(args) -> dict:
    pipe, preset = gpu.SCALE.flow()
    attend_repeats_once(pipe)  # as load_pipeline and so the studio run SD3 without T5
    reward = gpu.SCALE.reward()
    prompt = sample_captions(1, seed=5)
    bank = SampleBank(pipe, reward, preset=preset, batch_size=args.bank_batch)
    sample_is(pipe, prompt, seed=3, n=FLOW_N, beta=FLOW_BETA, bank=bank)  # makes the bank
    reference = baseline(pipe, prompt, seed=7, bank=bank).images[0]
    betas = iter(FLOW_BETA * (1 + k / 100) for k in range(1, 10_000))  # every call a new β: only the guided half runs
    configs = {"baseline": lambda s: baseline(pipe, prompt, seed=s, bank=bank),
               "β change": lambda s: sample_is(pipe, prompt, seed=3, n=FLOW_N, beta=next(betas), bank=bank),
               "β change, one particle": lambda s: sample_is(pipe, prompt, seed=3, n=FLOW_N, beta=next(betas),
                                                             bank=bank, particles=1)}
    _, _, out = eager_then_accelerated(configs, args, "sd35", pipe=pipe, reward=reward)
    out.update(n=FLOW_N, same_seed=pixel_difference(reference, baseline(pipe, prompt, seed=7, bank=bank).images[0]))
    print_report(preset.name, out)
    gpu.free(pipe, reward, bank)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluations.benchmark_compile")
    parser.add_argument("--sections", nargs="+", default=["sdxl", "sd35"], choices=["sdxl", "sd35"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--bank-batch", type=int, default=8)
    parser.add_argument("--mode", default=None, help="torch.compile mode (default: inductor's default)")
    parser.add_argument("--smoke", action="store_true", help="toy presets on the CPU, tracing only (checks the script)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    gpu.SCALE = gpu.Scale(args.smoke)
    if not args.smoke and not torch.cuda.is_available():
        raise SystemExit("error: this benchmark needs a CUDA GPU; --smoke runs it on the toy presets on the CPU")
    args.compile_kwargs = {"backend": "eager"} if args.smoke else ({"mode": args.mode} if args.mode else {})
    torch.backends.cuda.matmul.allow_tf32 = True
    out = args.out or RESULTS / ("benchmark_compile_smoke.json" if args.smoke else "benchmark_compile.json")
    report = {"machine": machine(gpu.SCALE.device), "dtype": str(gpu.SCALE.dtype).removeprefix("torch."),
              "weights": "toy presets (smoke run)" if args.smoke else "random, from alignment/model_configs",
              "command": "python -m evaluations.benchmark_compile " + " ".join(argv if argv is not None else sys.argv[1:]),
              "date": time.strftime("%Y-%m-%d")}

    def save(section: str, data: dict) -> None:  # as it goes: a killed run keeps what it measured
        report[section] = data
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1) + "\n")

    args.save = save
    if not args.smoke:  # the compiler toolchain works at all (Triton, a C compiler), before minutes of eager runs
        started = time.time()
        torch.compile(lambda x: x.sin() + 1)(torch.ones(8, device="cuda"))
        report["preflight_compile_seconds"] = round(time.time() - started, 1)
    for name in args.sections:
        started = time.time()
        data = {"bench_sdxl": bench_sdxl, "bench_sd35": bench_sd35}[f"bench_{name}"](args)
        save(name, {**data, "wall_seconds": round(time.time() - started, 1)})  # rows hold the eager times too
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
