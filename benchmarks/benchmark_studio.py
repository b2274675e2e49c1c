"""How fast the studio answers on this machine with the toy presets: the first side-by-side pair, and a β change
re-rendered over a cached sample bank. Printed and written as JSON.

    python -m benchmarks.benchmark_studio                      # → benchmarks/results/benchmark_studio.json
    python -m benchmarks.benchmark_studio --threads 2 --out /tmp/b.json

Measured twice: on the studio's engine (``studio.engine.Engine.explore``: sampling, reward scoring, caches), and
through the page's HTTP API as the browser speaks it (``build_demo()`` served on loopback; join Gradio's queue and
read its event stream until the outputs arrive: the engine plus the queue, PNG encoding and the plotly figure),
which is what a person at the page waits for. Each number is wall-clock, with the process's CPU seconds beside it
(``cpu_median_s``): on a shared machine the CPU time is what the work takes with the machine to itself.
Models, reward and
guidance network are loaded first, as the app's warm-up does at start; their load time is reported separately.

* first pair: a (prompt, seed) never seen — baseline and aligned made and scored (diffusion: toy-sdxl with the
  guidance network; flow: toy-sd3, whose first pair also builds the bank of N samples and is reported apart).
* β change: the same (prompt, seed) at a β not yet seen, the bank (flow) and the baseline cached; through HTTP,
  the β slider's own release event.

The machine's load average is recorded: on a shared 2-core machine other processes change these numbers a lot.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import time
from functools import partial
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
PROMPTS = ["a red star on a blue background", "a large yellow circle on a black background",
           "a small white cross on a green background", "a purple triangle on an orange background",
           "a green ring on a white background", "a blue square on a pink background"]
BETAS = [0.3, 0.7, 1.2, 2.0, 0.15, 3.0]
TARGETS = {"first_pair_s": 2.0, "beta_change_s": 0.3}


def stats(samples: list[tuple[float, float]]) -> dict:
    """Wall-clock and CPU seconds (this process) of each sample: median, min, max."""
    wall, cpu = [w for w, _ in samples], [c for _, c in samples]
    return {"median_s": round(statistics.median(wall), 4), "min_s": round(min(wall), 4),
            "max_s": round(max(wall), 4), "cpu_median_s": round(statistics.median(cpu), 4), "n": len(samples)}


def timed(fn) -> tuple[float, float]:
    """(wall-clock, CPU) seconds of ``fn()``; CPU time counts every thread of this process, so on a shared machine
    it is what the work would take with the machine to itself (one torch thread)."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def engine_numbers(engine, n: int, seeds: range) -> dict:
    out = {}
    for model in ("toy-sdxl", "toy-sd3"):
        first, change = [], []
        for i, prompt in enumerate(PROMPTS):
            seed = seeds[i]
            first.append(timed(partial(engine.explore, model, prompt, seed, beta=0.5, n=n)))
            if i < 3:
                for beta in BETAS:
                    change.append(timed(partial(engine.explore, model, prompt, seed, beta=beta, n=n)))
        key = "diffusion" if model == "toy-sdxl" else "flow"
        out[key] = {"model": model, "first_pair": stats(first), "beta_change": stats(change)}
    # the flow bank once more, alone: what the first flow pair spends on its N samples
    bank = engine.resources.bank("toy-sd3")
    made = bank.samples_made
    start = time.perf_counter()
    engine._fill_bank("toy-sd3", "a cyan cross on a black background", seeds[-1], n, None)
    out["flow"]["bank_s"] = round(time.perf_counter() - start, 4)
    out["flow"]["bank_samples"] = bank.samples_made - made
    return out


def queue_call(client, api: str, fn_index: int, data: list, session: str) -> None:
    """One event through Gradio's queue as the page sends it (join, then the event stream until it completes)."""
    client.post(api + "queue/join", json={"data": data, "fn_index": fn_index, "session_hash": session,
                                          "event_data": None, "trigger_id": None}).raise_for_status()
    with client.stream("GET", api + "queue/data", params={"session_hash": session}) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:") and '"process_completed"' in line:
                if '"success":true' not in line.replace(" ", ""):
                    raise RuntimeError(line[:500])
                return


def http_numbers(engine, n: int, seeds: range) -> dict:
    import tempfile
    import uuid

    import httpx

    from studio.store import Store
    from studio.ui import LAUNCH_KWARGS, build_demo

    folder = Path(tempfile.mkdtemp(prefix="studio-bench-"))
    store = Store(f"sqlite:///{folder / 'studio.sqlite'}", folder / "data", client_salt="bench")
    demo = build_demo(engine=engine, store=store, warm_up=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                        **LAUNCH_KWARGS)
    fn_index = next(i for i, fn in demo.fns.items() if fn.api_name == "explore")
    beta_slider = next(b._id for b in demo.blocks.values() if getattr(b, "elem_id", None) == "explore-beta")
    # what releasing the β slider sends: its own event (one answer, not the Generate button's stream)
    release_index = next(i for i, fn in demo.fns.items() if (beta_slider, "release") in fn.targets)
    api = demo.local_url + "gradio_api/"
    try:
        out = {}
        with httpx.Client(timeout=300) as client:
            for model in ("toy-sdxl", "toy-sd3"):
                session = uuid.uuid4().hex[:11]

                def explore(prompt, seed, beta, model=model, session=session, index=fn_index):
                    data = [model, prompt, seed, beta, 1.0, 1.0, n, "tuned"]
                    # the slider's event also reads the page's state (None: the server keeps it per session)
                    queue_call(client, api, index, data + [None] * (index == release_index), session)

                first, change = [], []
                for i, prompt in enumerate(PROMPTS[:4]):
                    seed = seeds[i]
                    first.append(timed(partial(explore, prompt, seed, 0.5)))
                    if i < 2:
                        for beta in BETAS[:4]:
                            change.append(timed(partial(explore, prompt, seed, beta, index=release_index)))
                key = "diffusion" if model == "toy-sdxl" else "flow"
                out[key] = {"model": model, "first_pair": stats(first), "beta_change": stats(change)}
        return out
    finally:
        demo.close()
        store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.benchmark_studio")
    parser.add_argument("--n", type=int, default=8, help="flow bank size N")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: the app's choice, 1 on a CPU of 2 cores or fewer)")
    parser.add_argument("--no-http", action="store_true", help="measure the engine only")
    parser.add_argument("--out", type=Path, default=RESULTS / "benchmark_studio.json")
    args = parser.parse_args(argv)

    import torch

    from studio.engine import Engine
    from studio.settings import StudioSettings, set_threads

    if args.threads:
        torch.set_num_threads(args.threads)
    else:
        set_threads("cpu")
    load_before = os.getloadavg()
    engine = Engine(StudioSettings(device="cpu"))
    start = time.perf_counter()
    for model in ("toy-sdxl", "toy-sd3"):
        engine.resources.pipeline(model)
        engine.resources.reward(model)
    engine.resources.network("toy-sdxl")
    load_s = time.perf_counter() - start
    engine.explore("toy-sdxl", "a warm-up", 0)  # first calls pay one-time allocations; the app's warm-up too
    engine.explore("toy-sd3", "a warm-up", 0, n=2)

    report = {"device": "cpu", "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
              "torch_threads": torch.get_num_threads(), "n": args.n, "targets": TARGETS,
              "models_load_s": round(load_s, 3), "load_average_before": [round(x, 2) for x in load_before],
              "engine": engine_numbers(engine, args.n, range(100, 200))}
    if not args.no_http:
        report["http"] = http_numbers(engine, args.n, range(200, 300))
    report["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    report["measured_at"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")

    for where in ("engine", "http"):
        for family, row in report.get(where, {}).items():
            first, change = row["first_pair"], row["beta_change"]
            print(f"{where:6s} {family:9s} first pair median {first['median_s']:.3f} s "
                  f"(CPU {first['cpu_median_s']:.3f}; "
                  f"target ≤ {TARGETS['first_pair_s']} s) · β change median {change['median_s']:.3f} s "
                  f"(CPU {change['cpu_median_s']:.3f}; target ≤ {TARGETS['beta_change_s']} s)"
                  + (f" · bank of {row['bank_samples']}: {row['bank_s']:.3f} s" if "bank_s" in row else ""))
    print(f"torch threads {report['torch_threads']}, load average before {report['load_average_before']}, "
          f"after {report['load_average_after']}, models loaded in {report['models_load_s']} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
