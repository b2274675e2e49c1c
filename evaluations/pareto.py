"""Compute-matched evaluation: every alignment method against best-of-N at the same budget.

    python -m evaluations.pareto --model toy-sd3 --split test             # the flow table (200 captions × 2 seeds)
    python -m evaluations.pareto --model toy-sdxl --split test            # the diffusion table
    python -m evaluations.pareto --model toy-sd3 --split validation --methods "is:n=8,beta=0.3,tau=16,scale=3" ...

Every method runs on the same captions × seeds. Its cost is counted in **trajectories** per image (one full run
of the sampler: ``steps`` denoiser calls; base 1, best-of-N N, importance sampling with a bank of N and K guided
particles over R rounds N + K·R) and in measured seconds per image from scratch. Columns: the guidance reward,
the toy world's taste and prompt fidelity (the oracle: evaluation only, never seen by a method), diversity (mean
pairwise RMS pixel distance between one caption's images across seeds), and paired win rates on taste against
base and against best-of-N with the **same number of trajectories** (same caption, same seed; ties count half).

Splits: ``validation`` (caption seed 2, noise seeds 100, 101; captions that also occur in the test draw removed)
is for tuning; ``test`` (caption seed 1, noise seeds 0, 1, the project's held-out evaluation draw) is for
reporting. Both draw from the held-out (colour, shape, background) combinations, never seen in training. ``train``
(caption seed 3, noise seeds 200, 201) draws from the training combinations, to check whether a result is a gap
between seen and new captions; it never chooses or reports a setting.

Methods (``--methods``), ``kind:key=value,...``:

* ``base``; ``bon:n=9`` (best-of-N by the reward, from the flow bank or, for diffusion models, N seeds);
* flow: ``is:n=8,beta=0.3`` plus estimator options ``tau``, ``scale``, ``sigma_min``, ``sigma_max``,
  ``damping``, ``particles``, ``rounds``, or ``estimator=paper|tuned``; ``fk:particles=9,beta=0.3[,noise=0.5]``
  (Feynman–Kac steering, ``alignment.fk_steering``);
* diffusion: ``guided:beta=0.1,eta=1,alpha=1`` (the guidance network of ``--network``; ``network=paper`` for
  ``checkpoints/toy-guidance-paper``, trained with the paper's objective, or ``network=FOLDER``),
  ``tweedie:beta=1``.

Writes ``pareto_<model>_<split>.{json,md,html,png}`` to ``evaluations/results/`` (the PNG through a headless
Chromium when playwright has one) and prints the markdown.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import re
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from alignment import ModelLoadError, load_pipeline
from alignment.defaults import ESTIMATORS, PAPER_GUIDANCE_NETWORK
from alignment.flow_guidance import Estimator
from alignment.fk_steering import sample_fk
from alignment.flow_sampler import baseline, best_of_n, sample_is
from alignment.presets import find_preset, sampling_settings
from alignment.sample_bank import SampleBank
from toyworld import sample_captions, taste

from .flow_results import diversity
from .rewards import load_reward

RESULTS = Path(__file__).resolve().parent / "results"
# "train": captions of the toy world's training split (what the guidance network trained on), to tell a gap between
# seen and new captions from a limit of the method; never used to choose or report a setting.
SPLITS = {"validation": {"caption_seed": 2, "seeds": [100, 101]}, "test": {"caption_seed": 1, "seeds": [0, 1]},
          "train": {"caption_seed": 3, "seeds": [200, 201]}}
ESTIMATOR_KEYS = ("tau", "scale", "sigma_min", "sigma_max", "damping")
# The reported tables: each method at budgets of 5, 9 and 17 trajectories beside best-of-N at the same budget.
DEFAULT_METHODS = {
    "flow": ["base"] + [f"bon:n={b}" for b in (5, 9, 17)]
            + [f"is:n={n},beta=0.3,estimator=paper" for n in (4, 8, 16)]
            + [f"is:n={n},beta=0.3,estimator=tuned" for n in (4, 8, 16)],
    "diffusion": ["base", "bon:n=2", "bon:n=4", "guided:beta=0.05,eta=1,alpha=1.5", "guided:beta=0.05,eta=1",
                  "guided:beta=0.3,eta=1", "guided:beta=0.3,eta=1,network=paper", "tweedie:beta=2"],
}


def split_captions(split: str, n: int) -> list[str]:
    """``n`` captions of a split. Validation drops any caption that the test draw of the same size holds, so
    tuning never sees a reported prompt."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: choose one of {sorted(SPLITS)}")
    if split == "test":
        return sample_captions(n, seed=SPLITS["test"]["caption_seed"], split="heldout")
    if split == "train":
        return sample_captions(n, seed=SPLITS["train"]["caption_seed"], split="train")
    test = set(sample_captions(max(n, 200), seed=SPLITS["test"]["caption_seed"], split="heldout"))
    out, draw = [], n
    while len(out) < n:  # draw more until n captions remain after the removal
        out = [c for c in sample_captions(draw, seed=SPLITS["validation"]["caption_seed"], split="heldout")
               if c not in test][:n]
        draw += n
    return out


@dataclass(frozen=True)
class Method:
    """One row of the table: a kind and its settings."""

    kind: str  # base | bon | is | fk | guided | tweedie
    n: int = 1
    beta: float | None = None
    eta: float | None = None
    alpha: float = 1.0
    estimator: Estimator = field(default_factory=Estimator)
    estimator_name: str | None = None
    particles: int = 1
    rounds: int = 1
    noise: float = 0.5  # FK steering: the share η of fresh noise per step
    network: str | None = None  # guided: a named (NETWORKS) or folder guidance network instead of --network

    @property
    def trajectories(self) -> int:
        return {"base": 1, "bon": self.n, "is": self.n + self.particles * self.rounds,
                "fk": self.particles}.get(self.kind, 1)

    @property
    def name(self) -> str:
        if self.kind == "base":
            return "base"
        if self.kind == "bon":
            return f"best-of-{self.n}"
        if self.kind == "is":
            label = self.estimator_name or ",".join(
                f"{k}={v:g}" for k, v in self.estimator.describe().items() if v != getattr(Estimator(), k)) or "paper"
            extra = (f" K={self.particles}" if self.particles > 1 else "") + (f" R={self.rounds}" if self.rounds > 1
                                                                              else "")
            return f"IS[{label}] N={self.n}{extra} β={self.beta:g}"
        if self.kind == "fk":
            return f"FK K={self.particles} β={self.beta:g}" + (f" η={self.noise:g}" if self.noise != 0.5 else "")
        if self.kind == "guided":
            return (f"guided{f'[{self.network}]' if self.network else ''} β={self.beta:g} η={self.eta:g}"
                    + (f" α={self.alpha:g}" if self.alpha != 1 else ""))
        return f"tweedie β={self.beta:g}" + (f" α={self.alpha:g}" if self.alpha != 1 else "")


def parse_method(text: str) -> Method:
    """``kind:key=value,...`` -> Method; a ValueError that names the bad part."""
    kind, _, rest = text.strip().partition(":")
    if kind not in ("base", "bon", "is", "fk", "guided", "tweedie"):
        raise ValueError(f"unknown method kind {kind!r} in {text!r}: base, bon, is, fk, guided or tweedie")
    fields: dict = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"{item!r} in {text!r} is not key=value")
        fields[key.strip()] = value.strip()
    options = {k: float(fields.pop(k)) for k in ESTIMATOR_KEYS if k in fields}
    name = fields.pop("estimator", None)
    if name is not None:
        if name not in ESTIMATORS:
            raise ValueError(f"unknown estimator {name!r}: choose one of {sorted(ESTIMATORS)}")
        options = {**ESTIMATORS[name].describe(), **options}
    method = Method(kind, n=int(fields.pop("n", 1)), beta=float(fields["beta"]) if "beta" in fields else None,
                    eta=float(fields["eta"]) if "eta" in fields else None, alpha=float(fields.pop("alpha", 1.0)),
                    estimator=Estimator(**options), estimator_name=name if name and len(options) == 5 else None,
                    particles=int(fields.pop("particles", 1)), rounds=int(fields.pop("rounds", 1)),
                    noise=float(fields.pop("noise", 0.5)), network=fields.pop("network", None))
    fields.pop("beta", None), fields.pop("eta", None)
    if fields:
        raise ValueError(f"unknown option(s) {sorted(fields)} in {text!r}")
    if kind in ("is", "fk", "guided", "tweedie") and method.beta is None:
        raise ValueError(f"{text!r} needs beta=")
    if method.network is not None and kind != "guided":
        raise ValueError(f"network= is an option of guided methods only, in {text!r}")
    if kind == "guided" and method.eta is None:
        raise ValueError(f"{text!r} needs eta=")
    if kind in ("bon", "is") and not 1 <= method.n <= 1024:
        raise ValueError(f"n must be from 1 to 1024 in {text!r}")
    return method


# ---- running the methods --------------------------------------------------------------------------------------------

def run_flow(pipe, preset, reward, captions, seeds, methods, batch, bank_dir):
    """(method name -> [(caption, seed, image, reward, seconds per image)])."""
    bank = SampleBank(pipe, reward, preset=preset, batch_size=batch, cache_dir=bank_dir,
                      max_entries=len(captions) * len(seeds) + 1)
    top = max([m.n for m in methods if m.kind in ("bon", "is")], default=1)
    warm = SampleBank(pipe, reward, preset=preset, batch_size=batch)  # first calls pay one-off costs: not timed
    baseline(pipe, captions[:1], seed=10**9, bank=warm)
    sample_is(pipe, captions[:1], seed=10**9, n=2, beta=1.0, bank=warm)
    out = defaultdict(list)
    for seed in seeds:
        for lo in range(0, len(captions), batch):
            chunk = captions[lo : lo + batch]
            for caption in chunk:
                bank.get(caption, seed, top)  # the bank, made once at the largest N
            for m in methods:
                if m.kind == "base":
                    res = baseline(pipe, chunk, seed=seed, bank=bank)
                elif m.kind == "bon":
                    res = best_of_n(pipe, chunk, seed=seed, n=m.n, bank=bank)
                elif m.kind == "fk":
                    res = sample_fk(pipe, chunk, seed=seed, particles=m.particles, beta=m.beta, eta=m.noise,
                                    bank=bank)
                elif m.kind == "is":
                    res = sample_is(pipe, chunk, seed=seed, n=m.n, beta=m.beta, bank=bank, estimator=m.estimator,
                                    particles=m.particles, rounds=m.rounds)
                else:
                    raise ValueError(f"{m.kind} is not a method for flow models")
                per_image = (res.bank_seconds + res.sample_seconds) / len(res.images)
                for caption, image, r in zip(chunk, res.images, res.rewards):
                    out[m.name].append((caption, seed, image, float(r), per_image))
            print(f"seed {seed}: {lo + len(chunk)}/{len(captions)} captions", flush=True)
    return out


NETWORKS = {"paper": PAPER_GUIDANCE_NETWORK}  # guidance networks a guided method may name


def guidance_networks(methods: list[Method], default: str | None) -> dict:
    """(method's ``network`` option or None) -> the loaded network, for every guided method: None is
    ``default`` (``--network``), a name of ``NETWORKS`` its folder, anything else a folder."""
    from alignment.defaults import load_guidance_network

    keys = {m.network for m in methods if m.kind == "guided"}
    return {k: load_guidance_network(NETWORKS.get(k, k) if k is not None else default) for k in keys}


def run_diffusion(pipe, preset, reward, captions, seeds, methods, batch, networks):
    """Diffusion models: every image of (caption, seed) starts from noise seeded by (seed, caption index), so
    base, guided and Tweedie pair image by image; best-of-N adds N − 1 more seeds of the same caption.
    ``networks``: what ``guidance_networks`` returns."""
    from alignment.diffusion_sampler import sample_baseline, sample_guided, sample_tweedie

    sample_baseline(pipe, captions[:1], seed=10**9, preset=preset, reward=reward)  # one-off costs: not timed
    for network in networks.values():
        sample_guided(pipe, captions[:1], network=network, eta=1.0, seed=10**9, preset=preset, reward=reward)
    out = defaultdict(list)
    for seed in seeds:
        for lo in range(0, len(captions), batch):
            chunk = captions[lo : lo + batch]
            noise = [seed * 100_003 + lo + i for i in range(len(chunk))]
            cache: dict[int, tuple] = {}  # draw j of this chunk (j = 0: base) -> (images, rewards, s, scoring s)

            def draw(j):
                if j not in cache:
                    start = time.perf_counter()
                    res = sample_baseline(pipe, chunk, seed=[s + 7_000_003 * j for s in noise], preset=preset,
                                          reward=reward)
                    cache[j] = (res.images, res.rewards, res.seconds, time.perf_counter() - start - res.seconds)
                return cache[j]

            for m in methods:
                if m.kind == "base":  # seconds: sampling only (the image needs no score)
                    images, rewards, seconds, _ = draw(0)
                elif m.kind == "bon":  # sampling and scoring of all N draws
                    draws = [draw(j) for j in range(m.n)]
                    scores = torch.stack([d[1] for d in draws])  # (N, B)
                    pick = scores.argmax(0)
                    images = [draws[int(p)][0][i] for i, p in enumerate(pick)]
                    rewards = scores.max(0).values
                    seconds = sum(d[2] + d[3] for d in draws)
                else:  # sampling only
                    common = dict(seed=noise, preset=preset, reward=reward, beta=m.beta, alpha=m.alpha)
                    res = (sample_guided(pipe, chunk, network=networks[m.network], eta=m.eta, **common)
                           if m.kind == "guided"
                           else sample_tweedie(pipe, chunk, **common))
                    images, rewards, seconds = res.images, res.rewards, res.seconds
                for caption, image, r in zip(chunk, images, rewards):
                    out[m.name].append((caption, seed, image, float(r), seconds / len(chunk)))
            print(f"seed {seed}: {lo + len(chunk)}/{len(captions)} captions", flush=True)
    return out


# ---- the table ------------------------------------------------------------------------------------------------------

def paired(rows_a: list, rows_b: list) -> dict:
    """Win rate of a over b on taste over paired (caption, seed) (ties count half) and the mean gains."""
    ta = {(r["caption"], r["seed"]): r for r in rows_a}
    diffs = np.array([[ta[(r["caption"], r["seed"])][k] - r[k] for k in ("taste", "reward", "prompt_fidelity")]
                      for r in rows_b])
    d, dr = diffs[:, 0], diffs[:, 1]
    wins = (d > 0) + 0.5 * (d == 0)
    return {"pairs": len(d), "win_rate": float(wins.mean()), "win_rate_se": float(wins.std() / np.sqrt(len(d))),
            "ties": int((d == 0).sum()), "taste_gain": float(d.mean()), "reward_gain": float(dr.mean()),
            "reward_win_rate": float(((dr > 0) + 0.5 * (dr == 0)).mean()), "fidelity_gain": float(diffs[:, 2].mean())}


def summarise(results: dict, methods: list[Method], seeds: list[int], steps: int) -> dict:
    records = {}
    for m in methods:
        rows = []
        for caption, seed, image, r, sec in results[m.name]:
            t = taste(image, caption)
            rows.append({"caption": caption, "seed": seed, "reward": r, "taste": t.score,
                         "prompt_fidelity": float(t.prompt_fidelity), "seconds": sec})
        records[m.name] = rows
    table = []
    for m in methods:
        rows = records[m.name]
        by_caption = defaultdict(dict)
        for caption, seed, image, *_ in results[m.name]:
            by_caption[caption][seed] = image
        col = lambda k: np.array([r[k] for r in rows])  # noqa: E731
        row = {"method": m.name, "kind": m.kind, "n": m.n, "beta": m.beta, "eta": m.eta, "alpha": m.alpha,
               "trajectories": m.trajectories, "denoiser_calls": m.trajectories * steps,
               "reward": float(col("reward").mean()), "taste": float(col("taste").mean()),
               "taste_se": float(col("taste").std() / np.sqrt(len(rows))),
               "prompt_fidelity": float(col("prompt_fidelity").mean()),
               "seconds_per_image": float(col("seconds").mean()),
               "diversity": float(np.mean([diversity([v[s] for s in seeds if s in v]) for v in by_caption.values()]))}
        if m.kind == "is":
            row.update(estimator=m.estimator.describe(), particles=m.particles, rounds=m.rounds)
        if m.name != "base" and "base" in records:
            row["vs_base"] = paired(rows, records["base"])
        if m.kind not in ("bon", "base"):
            row["vs_bon"] = {b.name: paired(rows, records[b.name]) for b in methods if b.kind == "bon"}
            # the cheapest best-of-N that costs at least as many trajectories: equal compute, or more
            fair = sorted((b for b in methods if b.kind == "bon" and b.n >= m.trajectories), key=lambda b: b.n)
            if fair:
                row["vs_matched_bon"] = {"against": fair[0].name, **row["vs_bon"][fair[0].name]}
        table.append(row)
    return {"table": table, "records": records}


def markdown(report: dict) -> str:
    c = report["config"]
    lines = [f"# Compute-matched alignment on {c['model']} ({c['split']} split)", "",
             f"{c['captions']} held-out captions × noise seeds {c['seeds']} (caption seed {c['caption_seed']}), "
             f"reward `{c['reward']}`, {c['steps']} steps per trajectory, {c['device']} ({c['machine']}), "
             f"{c['wall_seconds']:.0f} s in all, {c['date']}. Command: `{c['command']}`.", "",
             "Cost: trajectories per image (one full sampler run = steps denoiser calls) and measured seconds per "
             "image from scratch. Win rates: paired (caption, seed), taste, ties half; ± one standard error. \"reward > "
             "base\": the share of pairs whose reward is above the baseline's.", "",
             "| method | traj. | s / image | reward | taste ± s.e. | fidelity | diversity | beats base | reward > base | "
             "beats best-of-N (the cheapest with ≥ its trajectories) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["table"]:
        vb = r.get("vs_base")
        vm = r.get("vs_matched_bon")
        base_cell = f"{100 * vb['win_rate']:.1f} %" if vb else "–"
        reward_cell = f"{100 * vb['reward_win_rate']:.1f} %" if vb else "–"
        bon_cell = (f"{100 * vm['win_rate']:.1f} ± {100 * vm['win_rate_se']:.1f} % vs {vm['against']} "
                    f"(taste {vm['taste_gain']:+.3f}, reward {vm['reward_gain']:+.3f})") if vm else "–"
        lines.append(f"| {r['method']} | {r['trajectories']} | {r['seconds_per_image']:.3f} | {r['reward']:.3f} | "
                     f"{r['taste']:.3f} ± {r['taste_se']:.3f} | {r['prompt_fidelity']:.3f} | {r['diversity']:.4f} | "
                     f"{base_cell} | {reward_cell} | {bon_cell} |")
    gap = [r for r in report["table"] if r.get("vs_base")]
    if gap:
        lines += ["", "Adversarial gap (reward gain against taste gain over base; a large reward gain with a small "
                  "taste gain is reward hacking):", ""]
        lines += [f"* {r['method']}: reward {r['vs_base']['reward_gain']:+.3f}, taste {r['vs_base']['taste_gain']:+.3f}"
                  for r in gap]
    return "\n".join(lines) + "\n"


def figure(report: dict):
    """Taste, reward and win rate against base over trajectories per image: one line per method family."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=3, subplot_titles=("taste (oracle)", "reward", "beats base on taste (%)"))
    families = defaultdict(list)
    for r in report["table"]:
        family = (re.sub(r" N=\d+", "", r["method"]) if r["kind"] == "is" else
                  re.sub(r" K=\d+", "", r["method"]) if r["kind"] == "fk" else
                  "best-of-N" if r["kind"] == "bon" else r["method"])  # one line per method over its budgets
        families[family].append(r)
    import plotly.colors

    palette = plotly.colors.qualitative.Plotly + plotly.colors.qualitative.D3
    for i, (family, rows) in enumerate(sorted(families.items())):
        rows = sorted(rows, key=lambda r: r["trajectories"])
        x = [r["trajectories"] for r in rows]
        text = [r["method"] for r in rows]
        common = dict(mode="lines+markers", name=family, legendgroup=family, text=text,
                      line=dict(color=palette[i % len(palette)]),  # one colour per method in every panel
                      hovertemplate="%{text}<br>%{x} trajectories: %{y:.3f}<extra></extra>")
        fig.add_trace(go.Scatter(x=x, y=[r["taste"] for r in rows],
                                 error_y=dict(array=[r["taste_se"] for r in rows]), **common), row=1, col=1)
        fig.add_trace(go.Scatter(x=x, y=[r["reward"] for r in rows], showlegend=False, **common), row=1, col=2)
        fig.add_trace(go.Scatter(x=x, y=[100 * r["vs_base"]["win_rate"] if r.get("vs_base") else 50 for r in rows],
                                 showlegend=False, **common), row=1, col=3)
    for col in (1, 2, 3):
        fig.update_xaxes(type="log", title_text="trajectories per image (log)", row=1, col=col)
    c = report["config"]
    fig.update_layout(title=f"Alignment at equal compute: {c['model']}, {c['split']} split, {c['captions']} captions × "
                            f"{len(c['seeds'])} seeds", height=460, width=1400, template="plotly_white")
    return fig


def write_png(html: Path, png: Path) -> bool:
    """A screenshot of the HTML figure in headless Chromium (playwright); False when none is available."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return False
    import shutil

    chromium = shutil.which("chromium")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium) if chromium else p.chromium.launch()
            page = browser.new_page(viewport={"width": 1420, "height": 480})
            page.goto(html.resolve().as_uri())
            page.wait_for_selector(".main-svg", timeout=30_000)
            page.screenshot(path=str(png), full_page=True)
            browser.close()
        return True
    except Exception as e:  # noqa: BLE001 - no browser: the HTML and JSON are the result
        print(f"no PNG: {e}")
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluations.pareto")
    parser.add_argument("--model", default="toy-sd3")
    parser.add_argument("--split", choices=sorted(SPLITS), default="test")
    parser.add_argument("--captions", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="noise seeds (default: the split's)")
    parser.add_argument("--methods", nargs="+", default=None, help="default: the model family's DEFAULT_METHODS")
    parser.add_argument("--reward", default="toy-pickscore")
    parser.add_argument("--network", default=None, help="guidance network folder (diffusion models)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--device", default=None)
    parser.add_argument("--bank-dir", type=Path, default=None, help="keep the flow sample banks on disk here")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--tag", default="", help="appended to the output file names")
    parser.add_argument("--grid-captions", type=int, default=6, help="captions in the picture grid (0: none)")
    args = parser.parse_args(argv)
    preset = find_preset(args.model)
    family = preset.family if preset else "flow"
    try:
        methods = [parse_method(t) for t in (args.methods or DEFAULT_METHODS[family])]
    except ValueError as e:
        parser.error(str(e))
    if len({m.name for m in methods}) != len(methods):
        parser.error("two methods have the same name")
    if args.captions < 1:
        parser.error("need at least one caption")
    if args.grid_captions < 0:
        parser.error(f"--grid-captions must be 0 (no grid) or more, got {args.grid_captions}")
    seeds = args.seeds or SPLITS[args.split]["seeds"]
    captions = split_captions(args.split, args.captions)

    start = time.perf_counter()
    pipe, preset = load_pipeline(args.model, device=args.device, dtype=torch.float32)  # fp32: CPU and GPU agree
    reward = load_reward(args.reward, device=pipe._execution_device)
    if family == "flow":
        results = run_flow(pipe, preset, reward, captions, seeds, methods, args.batch, args.bank_dir)
    else:
        try:
            networks = guidance_networks(methods, args.network)
        except ValueError as e:
            parser.error(str(e))
        results = run_diffusion(pipe, preset, reward, captions, seeds, methods, args.batch, networks)
    steps, _ = sampling_settings(preset)
    report = summarise(results, methods, seeds, steps)
    device = pipe._execution_device
    report["config"] = {
        "model": args.model, "split": args.split, "captions": len(captions),
        "caption_seed": SPLITS[args.split]["caption_seed"], "seeds": seeds, "reward": args.reward, "steps": steps,
        "methods": [m.name for m in methods], "batch": args.batch, "device": str(device),
        "machine": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or platform.machine(),
        "wall_seconds": time.perf_counter() - start, "date": datetime.date.today().isoformat(),
        "command": "python -m evaluations.pareto " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    stem = f"pareto_{args.model}_{args.split}{args.tag}".replace("/", "_")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"{stem}.json").write_text(json.dumps({k: report[k] for k in ("config", "table", "records")},
                                                          indent=1) + "\n")
    text = markdown(report)
    (args.out_dir / f"{stem}.md").write_text(text)
    if args.grid_captions > 0:  # one row per caption (first noise seed), one column per method
        from .base_quality import save_grid

        images = {(m.name, c, s): im for m in methods for c, s, im, *_ in results[m.name]}
        tiles = [(images[m.name, c, seeds[0]], f"{c} | {m.name}") for c in captions[: args.grid_captions]
                 for m in methods]
        save_grid(tiles, args.out_dir / f"{stem}_grid.png", cols=len(methods), scale=2)
    fig = figure(report)
    fig.write_html(args.out_dir / f"{stem}.html", include_plotlyjs="cdn")
    with tempfile.TemporaryDirectory() as tmp:  # offline: the screenshot's page carries plotly.js inline
        inline = Path(tmp) / "figure.html"
        fig.write_html(inline, include_plotlyjs=True)
        write_png(inline, args.out_dir / f"{stem}.png")
    print(text)
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except ModelLoadError as e:
        raise SystemExit(f"error: {e}") from None
