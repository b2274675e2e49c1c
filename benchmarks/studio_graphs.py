"""The studio's engine on CUDA with its models accelerated (compiled and CUDA-graphed, as ``STUDIO_COMPILE=on`` or
the default on a GPU serves them) against the same engine eager: toy-sdxl Explore views at several β and from two
threads at once, the same images within bf16-free float32 tolerance. Prints a JSON line per check.

    python -m benchmarks.studio_graphs                          # on a GPU
    STUDIO_GRAPHS_DEVICE=cpu python -m benchmarks.studio_graphs # the plumbing alone, eager twice
"""
import json
import os
import threading
import time

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


def main():
    eager = Engine(StudioSettings(models=("toy-sdxl",), device=DEVICE, compile="off"))
    eager.warm_up()
    reference = views(eager)
    fast = Engine(StudioSettings(models=("toy-sdxl",), device=DEVICE, compile="on" if DEVICE == "cuda" else "off"))
    start = time.perf_counter()
    fast.warm_up()
    print(json.dumps({"warm_up_seconds": round(time.perf_counter() - start, 1)}), flush=True)
    got = views(fast)
    diffs = {f"{p[:12]} β={b}": int(np.abs(got[(p, b)][0] - reference[(p, b)][0]).max()) for p, b in got}
    print(json.dumps({"aligned_max_pixel_diff": diffs,
                      "baseline_max_pixel_diff": max(int(np.abs(got[k][1] - reference[k][1]).max()) for k in got),
                      "eager_s": [round(v[2], 3) for v in reference.values()],
                      "accelerated_s": [round(v[2], 3) for v in got.values()]}), flush=True)
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
    print(json.dumps({"threads": len(threads), "errors": errors, "views": len(results)}), flush=True)


if __name__ == "__main__":
    main()
