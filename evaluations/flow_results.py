"""The earlier results table of flow-matching alignment (``python -m evaluations.pareto`` is the current one):
base, IS-guided and best-of-N on held-out captions.

    python -m evaluations.flow_results --captions 200 --seeds 0 1 --reward toy-pickscore
    python -m evaluations.flow_results --captions 4 --ns 4 8 --reward toy-taste --out-dir /tmp/flow-smoke  # smoke

For every held-out caption and seed: the base pipeline from the seed's noise; importance-sampled guidance
(``sample_is``) for each bank size N and temperature β, from the same noise; best-of-N from the same bank. One bank
of max(N) samples per (caption, seed), made once; smaller N use its first samples. Columns: the guidance reward,
the oracle's taste and prompt fidelity (evaluation only, never seen by the method), diversity (mean pairwise RMS
pixel distance between a caption's images across seeds), compute seconds per image from scratch (bank share +
trajectory; batches of ``--batch`` for bank and trajectories alike), and the mean ESS of the weights a and b over
steps and images. Plus the share of paired (caption, seed) where IS with N = 8 beats base on taste, and a picture
grid. Writes JSON and markdown (and the grid) to ``evaluations/results/``.

Guiding with ``toy-taste`` (the oracle) is allowed for smoke runs only; such outputs are marked SMOKE.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import re
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from alignment import ModelLoadError, load_pipeline
from alignment.flow_guidance import check_beta
from alignment.flow_sampler import baseline, best_of_n, sample_is
from alignment.sample_bank import SampleBank, check_n
from toyworld import sample_captions, taste

from .base_quality import save_grid
from .rewards import load_reward

RESULTS = Path(__file__).resolve().parent / "results"
ORACLE = "toy-taste"


def method_name(method: str, n: int | None = None, beta: float | None = None) -> str:
    if method == "is":
        return f"IS N={n} β={beta:g}"
    return f"best-of-{n}" if method == "bon" else "base"


def method_fields(name: str) -> dict:
    """The numbers a method name carries (N, β), as fields: the dashboard plots reward and taste against β."""
    m = re.fullmatch(r"IS N=(\d+) β=(\S+)", name) or re.fullmatch(r"best-of-(\d+)", name)
    if m is None:
        return {}
    return {"n": int(m.group(1)), **({"beta": float(m.group(2))} if m.re.groups == 2 else {})}


def diversity(images_by_seed: list) -> float:
    """Mean pairwise RMS distance (pixels in [0, 1]) between one caption's images across seeds."""
    arrays = [np.asarray(im, dtype=np.float64) / 255.0 for im in images_by_seed]
    pairs = list(itertools.combinations(arrays, 2))
    return float(np.mean([np.sqrt(((a - b) ** 2).mean()) for a, b in pairs])) if pairs else float("nan")


def run(model: str, captions: list[str], seeds: list[int], ns: list[int], betas: list[float], reward: str,
        batch: int, device: str | None, bank_dir: Path | None) -> tuple[dict, dict, float]:
    """All methods on all (caption, seed): per-method records, the images (for diversity and the grid), and the
    reward's standard deviation within a bank, averaged over banks."""
    pipe, preset = load_pipeline(model, device=device, dtype=torch.float32)  # fp32 everywhere: CPU and GPU agree
    bank = SampleBank(pipe, load_reward(reward, device=pipe._execution_device), preset=preset, batch_size=batch, cache_dir=bank_dir,
                      max_entries=len(captions) * len(seeds) + 1)
    records: dict[str, list[dict]] = defaultdict(list)  # method -> one record per (caption, seed)
    images: dict[tuple[str, str, int], object] = {}  # (method, caption, seed) -> image

    def keep(name, result):
        per_image = (result.bank_seconds + result.sample_seconds) / len(result.images)
        for i, (image, caption) in enumerate(zip(result.images, result.prompts)):
            t = taste(image, caption)
            row = {"caption": caption, "seed": result.seed, "reward": float(result.rewards[i]), "taste": t.score,
                   "prompt_fidelity": float(t.prompt_fidelity), "seconds": per_image}
            if result.ess_b is not None:
                row.update(ess_a=float(result.ess_a[:, i].mean()), ess_b=float(result.ess_b[:, i].mean()),
                           ess_b_first=float(result.ess_b[0, i]))
            records[name].append(row)
            images[name, caption, result.seed] = image

    spread = []  # the reward's standard deviation within each bank: the scale β is measured against
    start = time.perf_counter()
    for seed in seeds:
        for lo in range(0, len(captions), batch):
            chunk = captions[lo : lo + batch]
            for caption in chunk:  # the bank, once per (caption, seed), at the largest N
                spread.append(float(bank.get(caption, seed, max(ns)).rewards.std(correction=0)))
            keep("base", baseline(pipe, chunk, seed=seed, bank=bank))
            for n in ns:
                keep(method_name("bon", n), best_of_n(pipe, chunk, seed=seed, n=n, bank=bank))
                for beta in betas:
                    keep(method_name("is", n, beta), sample_is(pipe, chunk, seed=seed, n=n, beta=beta, bank=bank))
            print(f"seed {seed}: {min(lo + batch, len(captions))}/{len(captions)} captions, "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
    return records, images, float(np.mean(spread))


def summarise(records: dict, images: dict, captions: list[str], seeds: list[int], ns: list[int],
              betas: list[float]) -> dict:
    table = []
    for name, rows in records.items():
        row = {"method": name, **method_fields(name)}
        for col in ("reward", "taste", "prompt_fidelity", "seconds", "ess_a", "ess_b", "ess_b_first"):
            if col in rows[0]:
                row[col] = float(np.mean([r[col] for r in rows]))
        row["taste_se"] = float(np.std([r["taste"] for r in rows]) / np.sqrt(len(rows)))
        row["diversity"] = float(np.mean([diversity([images[name, c, s] for s in seeds]) for c in captions]))
        table.append(row)

    def wins(a: str, b: str) -> dict:
        """Share of paired (caption, seed) where a's taste beats b's (ties count half, and are reported)."""
        pa = {(r["caption"], r["seed"]): r["taste"] for r in records[a]}
        pb = {(r["caption"], r["seed"]): r["taste"] for r in records[b]}
        diffs = np.array([pa[k] - pb[k] for k in pa])
        return {"a": a, "b": b, "pairs": len(diffs), "win_rate": float(((diffs > 0) + 0.5 * (diffs == 0)).mean()),
                "ties": int((diffs == 0).sum()), "mean_taste_gain": float(diffs.mean())}

    n8 = 8 if 8 in ns else ns[0]
    comparisons = [wins(method_name("is", n8, b), "base") for b in betas]
    comparisons += [wins(method_name("bon", n8), "base")]
    comparisons += [wins(method_name("is", n8, b), method_name("bon", n8)) for b in betas]
    return {"table": table, "comparisons": comparisons}


def markdown(report: dict) -> str:
    head = report["config"]
    lines = [f"# Flow-matching alignment on {head['model']}", ""]
    if head["smoke"]:
        lines += [f"**SMOKE RUN: guided by `{head['reward']}`"
                  + (" (the evaluation oracle itself: not a valid result)" if head["reward"] == ORACLE else "")
                  + f", {head['captions']} captions.** Not the results table.", ""]
    lines += [f"{head['captions']} held-out captions × seeds {head['seeds']}, reward `{head['reward']}`, "
              f"{head['steps']} steps, CFG {head['guidance_scale']}, batch {head['batch']}, {head['device']} "
              f"({head['machine']}), {head['wall_seconds']:.0f} s in all. The reward's standard deviation within "
              f"a bank of {max(head['ns'])}, averaged over banks (the scale of β): {report['bank_reward_std']:.4f}.",
              "",
              "| method | reward | taste (± s.e.) | prompt fidelity | diversity | s / image | ESS a | ESS b "
              "| ESS b, σ=1 |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in report["table"]:
        ess = (f"{r['ess_a']:.2f} | {r['ess_b']:.2f} | {r['ess_b_first']:.2f}" if "ess_b" in r else "– | – | –")
        lines.append(f"| {r['method']} | {r['reward']:.3f} | {r['taste']:.3f} ± {r['taste_se']:.3f} | "
                     f"{r['prompt_fidelity']:.3f} | {r['diversity']:.4f} | {r['seconds']:.3f} | {ess} |")
    lines += ["", "Paired comparisons on taste (same caption, same seed; ties count half):", ""]
    lines += [f"* {c['a']} vs {c['b']}: wins {100 * c['win_rate']:.1f} % of {c['pairs']} pairs "
              f"({c['ties']} ties), mean taste gain {c['mean_taste_gain']:+.3f}" for c in report["comparisons"]]
    lines += ["", "Seconds per image = the image's share of its bank (generation, decoding, scoring) plus its own "
              "trajectory; best-of-N pays the bank only, IS the bank plus one guided trajectory. ESS: mean over "
              "steps and images of (Σw)²/Σw² (1 = one bank sample holds all the weight, N = uniform).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluations.flow_results")
    parser.add_argument("--model", default="toy-sd3")
    parser.add_argument("--captions", type=int, default=200, help="held-out captions")
    parser.add_argument("--caption-seed", type=int, default=1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--ns", type=int, nargs="+", default=[4, 8, 16, 32], help="bank sizes")
    parser.add_argument("--betas", type=float, nargs="+", default=[0.1, 0.3, 1.0], help="reward temperatures")
    parser.add_argument("--reward", default="toy-pickscore", help="the guidance reward (toy-taste: smoke only)")
    parser.add_argument("--batch", type=int, default=8, help="images per pipeline call, bank and guided alike")
    parser.add_argument("--device", default=None)
    parser.add_argument("--bank-dir", type=Path, default=None, help="keep the sample banks on disk here")
    parser.add_argument("--grid-captions", type=int, default=4, help="captions in the image grid (0: none)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.captions < 1 or len(args.seeds) < 1:
        parser.error("need at least one caption and one seed")
    if args.grid_captions < 0:
        parser.error(f"--grid-captions must be 0 (no grid) or more, got {args.grid_captions}")
    try:  # refuse bad numbers before loading anything
        for n in args.ns:
            check_n(n)
        for beta in args.betas:
            check_beta(beta)
    except ValueError as e:
        parser.error(str(e))

    captions = sample_captions(args.captions, seed=args.caption_seed, split="heldout")
    start = time.perf_counter()
    records, images, spread = run(args.model, captions, args.seeds, sorted(set(args.ns)), args.betas, args.reward,
                          args.batch, args.device, args.bank_dir)
    ns = sorted(set(args.ns))
    report = summarise(records, images, captions, args.seeds, ns, args.betas)
    report["bank_reward_std"] = spread
    from alignment.presets import find_preset

    preset = find_preset(args.model)
    smoke = args.reward == ORACLE or args.captions < 200
    report["config"] = {
        "model": args.model, "captions": args.captions, "caption_seed": args.caption_seed, "split": "heldout",
        "seeds": args.seeds, "ns": ns, "betas": args.betas, "reward": args.reward, "batch": args.batch,
        "steps": preset.steps if preset else None, "guidance_scale": preset.guidance_scale if preset else None,
        "device": str(args.device or ("cuda" if torch.cuda.is_available() else "cpu")),
        "machine": platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads(),
        "wall_seconds": time.perf_counter() - start, "smoke": smoke,
    }
    report["records"] = dict(records)
    stem = f"flow_results_{args.model}_{args.reward}_{args.captions}x{len(args.seeds)}".replace("/", "_")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out_dir / f"{stem}.md").write_text(markdown(report))
    n8 = 8 if 8 in ns else ns[0]
    columns = ["base"] + [method_name("is", n8, b) for b in args.betas] + [method_name("bon", n8)]
    tiles = [(images[m, c, args.seeds[0]], f"{c} | {m}") for c in captions[: args.grid_captions] for m in columns]
    if tiles:  # --grid-captions 0: no grid
        save_grid(tiles, args.out_dir / f"{stem}_grid.png", cols=len(columns))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except ModelLoadError as e:  # a missing model or reward: one clear line, no stack trace
        raise SystemExit(f"error: {e}") from None
