"""The studio's engine on CUDA with its models accelerated (compiled and CUDA-graphed, as ``STUDIO_COMPILE=on`` or
the default on a GPU serves them) against the same engine eager: toy-sdxl Explore views at several β and from two
threads at once: how far the images move and how long a view takes; then which part of the acceleration moves
the sampler's pixels (each part on its own against eager). Prints a JSON line per check and, with
``--out FILE``, writes them all to FILE.

    python -m benchmarks.studio_graphs --out benchmarks/results/studio_graphs.json   # on a GPU
    STUDIO_GRAPHS_DEVICE=cpu python -m benchmarks.studio_graphs                      # the plumbing alone, eager twice
"""
import argparse
import datetime
import json
import os
import threading
import time
from pathlib import Path

import numpy as np

from studio.engine import Engine
from studio.settings import StudioSettings

DEVICE = os.environ.get("STUDIO_GRAPHS_DEVICE", "cuda")  # "cpu": the plumbing alone, eager twice
PROMPTS = ["a red star on a blue background", "a small green circle on a white background"]


def views(engine, betas=(0.05, 0.1, 0.3)):
    out = {}
    for prompt in PROMPTS:
        for beta in betas:
            start = time.perf_counter()
            view = engine.explore("toy-sdxl", prompt, 3, beta=beta)
            out[(prompt, beta)] = (np.asarray(view.aligned.image, dtype=np.int16),
                                   np.asarray(view.baseline.image, dtype=np.int16), time.perf_counter() - start)
    return out


def parts() -> dict:
    """Which part of ``accelerate`` moves pixels: the sampler's images (baseline and guided, β = 0.05, two prompts)
    with each part on its own against eager, as (largest, mean) absolute pixel difference per image."""
    import torch

    from alignment import load_pipeline
    from alignment.acceleration import accelerate
    from alignment.defaults import load_guidance_network
    from alignment.diffusion_sampler import sample_baseline, sample_guided

    def fresh():
        pipe, preset = load_pipeline("toy-sdxl", device=DEVICE)
        return pipe, preset, load_guidance_network().to(DEVICE).eval().requires_grad_(False)

    def images(pipe, preset, network):
        out = []
        for prompt in PROMPTS:
            for image in (sample_baseline(pipe, prompt, seed=3, preset=preset).images[0],
                          sample_guided(pipe, prompt, network=network, beta=0.05, alpha=1.5, seed=3,
                                        preset=preset).images[0]):
                out.append(np.asarray(image, dtype=np.int16))
        return out

    reference = images(*fresh())
    backend = {} if DEVICE == "cuda" else {"backend": "eager"}  # inductor on a CPU would take minutes
    variants = {"cuda graphs only": dict(compile=False, fuse=False, channels_last=False),
                "channels-last only": dict(compile=False, fuse=False, cuda_graphs=False),
                "fused projections only": dict(compile=False, channels_last=False, cuda_graphs=False),
                "compiled only": dict(fuse=False, channels_last=False, cuda_graphs=False, **backend),
                "all": dict(**backend)}
    out = {}
    for name, kwargs in variants.items():
        torch._dynamo.reset()
        pipe, preset, network = fresh()
        accelerate(pipe, network=network, **kwargs)
        out[name] = [(int(np.abs(a - b).max()), round(float(np.abs(a - b).mean()), 3))
                     for a, b in zip(reference, images(pipe, preset, network))]
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.studio_graphs")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    report = {"device": DEVICE, "date": datetime.date.today().isoformat()}
    if DEVICE == "cuda":
        import torch

        report["gpu"] = torch.cuda.get_device_name()

    def emit(part):
        report.update(part)
        print(json.dumps(part, ensure_ascii=False), flush=True)
        if args.out is not None:
            args.out.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")

    eager = Engine(StudioSettings(models=("toy-sdxl",), device=DEVICE, compile="off"))
    eager.warm_up()
    reference = views(eager)
    fast = Engine(StudioSettings(models=("toy-sdxl",), device=DEVICE, compile="on" if DEVICE == "cuda" else "off"))
    start = time.perf_counter()
    fast.warm_up()
    emit({"warm_up_seconds": round(time.perf_counter() - start, 1)})
    got = views(fast)
    diffs = {f"{p[:12]} β={b}": int(np.abs(got[(p, b)][0] - reference[(p, b)][0]).max()) for p, b in got}
    emit({"aligned_max_pixel_diff": diffs,
          "baseline_max_pixel_diff": max(int(np.abs(got[k][1] - reference[k][1]).max()) for k in got),
          "eager_s": [round(v[2], 3) for v in reference.values()],
          "accelerated_s": [round(v[2], 3) for v in got.values()]})
    errors, results = [], []

    def worker(i):
        try:
            view = fast.explore("toy-sdxl", PROMPTS[i % 2], 10 + i, beta=0.07 + 0.01 * i)
            results.append(view.aligned.rewards)
        except Exception as e:  # noqa: BLE001 - reported
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    emit({"threads": len(threads), "errors": errors, "views": len(results)})
    emit({"parts_max_and_mean_pixel_diff": parts()})


if __name__ == "__main__":
    main()
