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

**A studio served elsewhere** (``--url``): the page at that address, driven through its HTTP API alone (the event
ids and inputs read from its ``/config``, no studio code loaded here), for the models named (the page's own model
names, ``NAME=FOLDER`` included). For each model: the first pair of a new prompt (which loads the model unless the
app's warm-up did), the pair of a second new prompt, a β change (the β slider's release), for flow models an N
change (the N slider's release: the bank's missing samples and the guided image), then one Arena pair (its baseline
against the default aligned configuration) and one vote. Every step is bounded (``--request-timeout``, and
``--budget`` for the whole run: what doesn't fit is reported as skipped), records the GPU's memory in use after it
(``nvidia-smi``, when there is one), and the report is written after every step, so a run cut short leaves what it
measured. With ``--out`` an existing JSON file is kept and the results go under its ``"studio"`` key.

    python -m benchmarks.benchmark_studio --url http://127.0.0.1:7860/ --out /tmp/s.json \
        --models sdxl-turbo=/models/sdxl-turbo sd3.5-large-turbo=/models/sd3.5-large-turbo
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
import uuid
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


# -- a studio served elsewhere (--url) -----------------------------------------------------------------------------

EXPLORE_IDS = {"model": "explore-model", "prompt": "explore-prompt", "seed": "explore-seed", "beta": "explore-beta",
               "eta": "explore-eta", "alpha": "explore-alpha", "n": "explore-n", "estimator": "explore-estimator"}
ARENA_IDS = {"prompt": "arena-prompt", "pairing": "arena-pairing", "labels": "arena-configs"}
REMOTE_PROMPTS = ["a lighthouse on a cliff at dusk, oil painting", "a bowl of ramen on a wooden table, photograph",
                  "a fox in a snowy forest, watercolor"]
REMOTE_SEEDS = (11, 12, 13)
PAIRING = "baseline vs aligned"


class EventFailed(RuntimeError):
    """The event completed without success: the page's error message."""


def page_events(config: dict) -> dict[str, int]:
    """The ids (``fn_index``) of the events the benchmark sends, from the page's ``/config``: the Generate button's
    (``explore``), the β and N sliders' release, ``arena_pair`` and ``vote_left``."""
    by_elem = {c.get("props", {}).get("elem_id"): c["id"] for c in config["components"]}
    events, named = {}, {d.get("api_name"): d["id"] for d in config["dependencies"]}
    for key, api_name in (("explore", "explore"), ("arena_pair", "arena_pair"), ("vote", "vote_left")):
        if api_name not in named:
            raise ValueError(f"the page has no API named {api_name!r}")
        events[key] = named[api_name]
    for key, elem_id in (("beta", EXPLORE_IDS["beta"]), ("n", EXPLORE_IDS["n"])):
        target = [by_elem.get(elem_id), "release"]
        found = [d["id"] for d in config["dependencies"] if target in [list(t) for t in d["targets"]]]
        if not found:
            raise ValueError(f"the page has no release event on {elem_id}")
        events[key] = found[0]
    return events


def event_data(config: dict, fn_index: int, values: dict[str, object]) -> list:
    """The event's inputs in the page's order: each component's value by its ``elem_id`` from ``values``; a
    ``gr.State`` is sent as None (the server keeps the session's)."""
    components = {c["id"]: c for c in config["components"]}
    dependency = next(d for d in config["dependencies"] if d["id"] == fn_index)
    data = []
    for component_id in dependency["inputs"]:
        component = components[component_id]
        if component.get("type") == "state":
            data.append(None)
            continue
        elem_id = component.get("props", {}).get("elem_id")
        if elem_id not in values:
            raise ValueError(f"event {fn_index} reads {elem_id or component.get('type')!r}, which the benchmark "
                             "does not know how to fill")
        data.append(values[elem_id])
    return data


def choices(config: dict, elem_id: str) -> list:
    """The values a dropdown, radio or checkbox group offers."""
    component = next(c for c in config["components"] if c.get("props", {}).get("elem_id") == elem_id)
    return [c[1] if isinstance(c, (list, tuple)) else c for c in component["props"].get("choices") or []]


def model_family(labels: list[str], model: str) -> str:
    """"flow" when the arena offers an importance-sampled configuration of the model, else "diffusion"."""
    return "flow" if any(label.startswith(f"{model} · is") for label in labels) else "diffusion"


def arena_labels(labels: list[str], model: str) -> list[str]:
    """The model's baseline and its default aligned configuration (the first aligned one of the arena's list)."""
    own = [label for label in labels if label.startswith(f"{model} · ")]
    baseline = [label for label in own if label == f"{model} · baseline"]
    aligned = [label for label in own if label != f"{model} · baseline" and " · bon · " not in label]
    if not baseline or not aligned:
        raise ValueError(f"the arena offers no baseline and aligned configuration of {model}: {own}")
    return [baseline[0], aligned[0]]


def queue_event(client, api: str, fn_index: int, data: list, session: str, timeout_s: float) -> dict:
    """One event through Gradio's queue as the browser sends it: join, then read the session's event stream until
    the event completes. Returns ``output`` (the outputs' ``data``), ``first_output_s`` (when a streaming handler's
    first answer came), ``warnings`` (the page's toasts) and ``seconds``; ``EventFailed`` with the page's message,
    ``TimeoutError`` after ``timeout_s``."""
    start = time.perf_counter()
    deadline = time.monotonic() + timeout_s
    joined = client.post(api + "queue/join", json={"data": data, "fn_index": fn_index, "session_hash": session,
                                                   "event_data": None, "trigger_id": None})
    joined.raise_for_status()
    event_id = joined.json().get("event_id")
    first, warnings = None, []
    with client.stream("GET", api + "queue/data", params={"session_hash": session}) as stream:
        for line in stream.iter_lines():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no answer within {timeout_s:.0f} s")
            if not line.startswith("data:"):
                continue
            message = json.loads(line[5:])
            if message.get("event_id", event_id) != event_id:
                continue
            kind = message.get("msg")
            if kind == "log" and message.get("log"):
                warnings.append(str(message["log"])[:300])
            elif kind == "process_generating" and first is None:
                first = time.perf_counter() - start
            elif kind == "process_completed":
                output = message.get("output") or {}
                if not message.get("success"):
                    raise EventFailed(str(output.get("error") or message.get("title") or output)[:500])
                return {"output": output.get("data") or [], "first_output_s": first, "warnings": warnings,
                        "seconds": time.perf_counter() - start}
    raise ConnectionError("the event stream ended before the event completed")


def gpu_memory(pid: int | None = None) -> dict | None:
    """Memory in use on the GPU (``nvidia-smi``): the card's, in MiB, and the process ``pid``'s where nvidia-smi
    sees it (in a container it often sees none). None without nvidia-smi."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        used = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=20).stdout.split()
        apps = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=20).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return None
    out = {"used_mib": int(used[0]) if used and used[0].isdigit() else None}
    for row in apps:
        parts = [p.strip() for p in row.split(",")]
        if pid is not None and len(parts) == 2 and parts[0] == str(pid) and parts[1].isdigit():
            out["server_mib"] = int(parts[1])
    return out


def caption_text(output: list, index: int) -> str | None:
    value = output[index] if len(output) > index else None
    return value if isinstance(value, str) else None


def save_images(client, output: list, folder: Path, stem: str, page_url: str, size: int = 256) -> list[str]:
    """The answer's baseline and aligned images (outputs 0 and 2), fetched as the browser does and saved as small
    PNGs (``size`` pixels at most a side)."""
    from io import BytesIO

    from PIL import Image

    saved = []
    folder.mkdir(parents=True, exist_ok=True)
    for index, name in ((0, "baseline"), (2, "aligned")):
        value = output[index] if len(output) > index else None
        url = value.get("url") if isinstance(value, dict) else None
        if not url:
            continue
        import httpx

        response = client.get(httpx.URL(page_url).join(url))
        image = Image.open(BytesIO(response.raise_for_status().content)).convert("RGB")
        image.thumbnail((size, size))
        path = folder / f"{stem}-{name}.png"
        image.save(path)
        saved.append(str(path))
    return saved


class Report:
    """The remote run's results, written to ``path`` after every step (under ``"studio"``, keeping what else the
    file holds)."""

    def __init__(self, path: Path | None, head: dict):
        self.path, self.data = path, {**head, "models": {}}

    def write(self) -> None:
        if self.path is None:
            return
        try:
            whole = json.loads(self.path.read_text())
            if not isinstance(whole, dict):
                whole = {}
        except (OSError, ValueError):
            whole = {}
        whole["studio"] = self.data
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_name(self.path.name + ".tmp")
        temp.write_text(json.dumps(whole, indent=1, ensure_ascii=False) + "\n")
        os.replace(temp, self.path)


def remote_numbers(url: str, models: list[str], *, n: int = 8, n_change: int = 12, budget_s: float = 480.0,
                   request_timeout_s: float = 120.0, server_pid: int | None = None, out: Path | None = None,
                   images: Path | None = None, command: str | None = None, transport=None) -> dict:
    """Drive the studio served at ``url`` for each of ``models`` (see the module's doc); the report, also written
    to ``out`` after every step. ``transport``: httpx's, for tests."""
    import httpx

    from alignment import defaults

    start = time.monotonic()
    url = url.rstrip("/") + "/"
    report = Report(out, {"url": url, "command": command, "n": n, "n_change": n_change,
                          "request_timeout_s": request_timeout_s, "budget_s": budget_s,
                          "measured_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "gpu_memory_start": gpu_memory()})
    report.write()
    timeout = httpx.Timeout(connect=10.0, read=max(30.0, request_timeout_s), write=30.0, pool=10.0)
    with httpx.Client(timeout=timeout, transport=transport) as client:
        config = client.get(url + "config").raise_for_status().json()
        api = url + (config.get("api_prefix") or "/gradio_api").strip("/") + "/"
        events = page_events(config)
        offered, labels = choices(config, EXPLORE_IDS["model"]), choices(config, ARENA_IDS["labels"])
        unknown = [m for m in models if m not in offered]
        if unknown:
            raise ValueError(f"the page offers no model {unknown}; it offers {offered}")
        saved_images = False
        for model in models:
            family = model_family(labels, model)
            row = {"family": family, "steps": {}}
            report.data["models"][model] = row
            session = uuid.uuid4().hex[:11]
            beta = defaults.FLOW_BETA if family == "flow" else defaults.DIFFUSION_BETA
            knobs = {"model": model, "seed": REMOTE_SEEDS[0], "beta": beta, "eta": defaults.DIFFUSION_ETA,
                     "alpha": defaults.DIFFUSION_ALPHA, "n": n, "estimator": defaults.FLOW_ESTIMATOR}
            new_beta = 0.3 if family == "flow" else 0.7
            steps = [("first_pair", "explore", {"prompt": REMOTE_PROMPTS[0]}),
                     ("second_prompt", "explore", {"prompt": REMOTE_PROMPTS[1], "seed": REMOTE_SEEDS[1]}),
                     ("beta_change", "beta", {"beta": new_beta})]
            if family == "flow":
                steps.append(("n_change", "n", {"n": n_change}))
            steps += [("arena_pair", "arena_pair", {}), ("vote", "vote", {})]
            for name, event, change in steps:
                left = budget_s - (time.monotonic() - start)
                if left < 5:
                    row["steps"][name] = {"ok": False, "error": "skipped: out of time"}
                    report.write()
                    continue
                if event in ("explore", "beta", "n"):
                    knobs.update(change)
                    values = {EXPLORE_IDS[k]: v for k, v in knobs.items()}
                else:
                    values = {ARENA_IDS["prompt"]: REMOTE_PROMPTS[2], ARENA_IDS["pairing"]: PAIRING,
                              ARENA_IDS["labels"]: arena_labels(labels, model)}
                step = {"ok": False}
                try:
                    data = event_data(config, events[event], values)
                    answer = queue_event(client, api, events[event], data, session, min(request_timeout_s, left))
                    step.update(ok=True, seconds=round(answer["seconds"], 3), warnings=answer["warnings"])
                    if answer["first_output_s"] is not None:
                        step["first_output_s"] = round(answer["first_output_s"], 3)
                    output = answer["output"]
                    if event in ("explore", "beta", "n"):
                        step["aligned_made"] = isinstance(output[2] if len(output) > 2 else None, dict)
                        step["summary"] = caption_text(output, 7)
                        step["aligned_caption"] = caption_text(output, 3)
                        if not step["aligned_made"]:
                            step["ok"] = False
                            step["error"] = "no aligned image: " + " | ".join(answer["warnings"])[:300]
                    elif event == "arena_pair":
                        step["labels"] = values[ARENA_IDS["labels"]]
                    else:
                        step["status"] = caption_text(output, 4)
                        step["ok"] = bool(step["status"] and step["status"].startswith("Vote saved"))
                    if images is not None and name == "second_prompt" and step["ok"] and not saved_images:
                        try:
                            step["images"] = save_images(client, output, images, model.split("=")[0], url)
                            saved_images = True
                        except Exception as e:  # noqa: BLE001 - the images are a bonus
                            step["images_error"] = f"{type(e).__name__}: {e}"[:300]
                except Exception as e:  # noqa: BLE001 - every step is reported, the run goes on
                    step["error"] = f"{type(e).__name__}: {e}"[:500]
                step["gpu_memory_after"] = gpu_memory(server_pid)
                row["steps"][name] = step
                report.data["elapsed_s"] = round(time.monotonic() - start, 3)
                report.write()
    report.data["gpu_memory_end"] = gpu_memory(server_pid)
    report.data["elapsed_s"] = round(time.monotonic() - start, 3)
    report.write()
    return report.data


def print_remote(data: dict) -> None:
    """A short table of the remote run: one row per model and step."""
    print(f"{'model':40s} {'step':14s} {'seconds':>8s} {'first':>7s} {'GPU MiB':>8s}  note")
    for model, row in data["models"].items():
        for name, step in row["steps"].items():
            seconds = f"{step['seconds']:.2f}" if "seconds" in step else "-"
            first = f"{step['first_output_s']:.2f}" if step.get("first_output_s") is not None else ""
            memory = (step.get("gpu_memory_after") or {}).get("used_mib")
            note = "ok" if step.get("ok") else (step.get("error") or "failed")
            print(f"{model[:40]:40s} {name:14s} {seconds:>8s} {first:>7s} {memory if memory is not None else '':>8}  "
                  f"{note[:100]}")


def http_numbers(engine, n: int, seeds: range) -> dict:
    import tempfile
    import uuid

    import httpx

    from studio.store import Store
    from studio.ui import LAUNCH_KWARGS, QUEUE_KWARGS, build_demo

    folder = Path(tempfile.mkdtemp(prefix="studio-bench-"))
    store = Store(f"sqlite:///{folder / 'studio.sqlite'}", folder / "data", client_salt="bench")
    demo = build_demo(engine=engine, store=store, warm_up=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.queue(**QUEUE_KWARGS).launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
                                      quiet=True, **LAUNCH_KWARGS)
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
                    queue_event(client, api, index, data + [None] * (index == release_index), session, 300)

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
    parser.add_argument("--out", type=Path, default=None,
                        help="the JSON report (default: benchmarks/results/benchmark_studio.json; with --url, none: "
                             "an existing file's other keys are kept, the results go under \"studio\")")
    parser.add_argument("--url", default=None, help="drive the studio served at this address instead (HTTP only)")
    parser.add_argument("--models", nargs="+", default=None,
                        help="with --url: the page's model names to drive, NAME=FOLDER included (default: all)")
    parser.add_argument("--n-change", type=int, default=12, help="with --url: the N a flow model's N change moves to")
    parser.add_argument("--budget", type=float, default=480.0,
                        help="with --url: seconds the whole run may take; steps that don't fit are skipped")
    parser.add_argument("--request-timeout", type=float, default=120.0, help="with --url: seconds one event may take")
    parser.add_argument("--server-pid", type=int, default=None,
                        help="with --url: the server's process id, for its own GPU memory in nvidia-smi")
    parser.add_argument("--images", type=Path, default=None,
                        help="with --url: save the first model's second pair (baseline, aligned) here as small PNGs")
    args = parser.parse_args(argv)

    if args.url:
        import httpx

        models = args.models
        if not models:
            with httpx.Client(timeout=30) as client:
                models = choices(client.get(args.url.rstrip("/") + "/config").raise_for_status().json(),
                                 EXPLORE_IDS["model"])
        command = "python -m benchmarks.benchmark_studio " + " ".join(sys.argv[1:] if argv is None else argv)
        data = remote_numbers(args.url, models, n=args.n, n_change=args.n_change, budget_s=args.budget,
                              request_timeout_s=args.request_timeout, server_pid=args.server_pid, out=args.out,
                              images=args.images, command=command)
        print_remote(data)
        if args.out:
            print(f"wrote {args.out}")
        return 0 if all(s.get("ok") for row in data["models"].values() for s in row["steps"].values()) else 1
    args.out = args.out or RESULTS / "benchmark_studio.json"

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
