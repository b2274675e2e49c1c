"""The earlier diffusion results table (``python -m evaluations.pareto`` is the current one): toy-sdxl on held-out
captions × 2 seeds — base; guided for each η × β; Tweedie/backprop guidance at a toy-pickscore gain matched to the best guided setting's.

    python -m evaluations.diffusion_results --captions 200 --network checkpoints/toy-guidance

Columns: reward (toy-pickscore), taste, prompt fidelity, diversity (mean pairwise RMS pixel distance between a
caption's images across seeds), seconds per image (batched sampling, scoring excluded). Also: for each guided
setting the share of paired (caption, seed) draws where it beats base on taste (same initial noise), and a
picture grid: base | best guided | Tweedie, row by row. Writes ``evaluations/results/diffusion_results.{json,md}``
and ``diffusion_grid.png``.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np
import torch
from accelerate import PartialState
from accelerate.utils import gather_object
from PIL import Image

from alignment import load_pipeline
from alignment.diffusion_sampler import sample_baseline, sample_guided, sample_tweedie
from alignment.guidance_network import GuidanceNetwork
from alignment.presets import CHECKPOINTS
from toyworld import sample_captions, taste

from .rewards import load_reward

RESULTS = Path(__file__).resolve().parent / "results"


def run_config(pipe, preset, captions, seeds, reward, batch, method, **kw) -> dict:
    """Images, rewards, tastes and fidelities for every (seed, caption), in that order, plus seconds per image.

    The batches are dealt round-robin to the processes of ``accelerate launch`` (one process without it); each
    batch's noise depends only on (seed, batch), so any process count gives the same images."""
    state = PartialState()
    jobs = [(seed, i) for seed in seeds for i in range(0, len(captions), batch)]
    mine = []
    for j in range(state.process_index, len(jobs), state.num_processes):
        seed, i = jobs[j]
        part = captions[i : i + batch]
        if method == "base":
            out = sample_baseline(pipe, part, seed=seed * 7919 + i, preset=preset, reward=reward)
        elif method == "guided":
            out = sample_guided(pipe, part, seed=seed * 7919 + i, preset=preset, reward=reward, **kw)
        else:
            out = sample_tweedie(pipe, part, seed=seed * 7919 + i, preset=preset, reward=reward, **kw)
        mine.append((j, out.images, out.rewards.tolist(), out.seconds))
    done = sorted(gather_object(mine) if state.num_processes > 1 else mine, key=lambda d: d[0])
    images = [im for d in done for im in d[1]]
    rewards = [r for d in done for r in d[2]]
    seconds = sum(d[3] for d in done)  # device-seconds, summed over processes
    prompts = [c for _ in seeds for c in captions]
    tastes = [taste(im, c) for im, c in zip(images, prompts)]
    return {"images": images, "reward": np.array(rewards), "taste": np.array([t.score for t in tastes]),
            "fidelity": np.array([t.prompt_fidelity for t in tastes], dtype=float), "seconds": seconds / len(images)}


def diversity(images: list[Image.Image], n_captions: int, n_seeds: int) -> float:
    """Mean pairwise RMS distance (pixels in [0, 1]) between the images of one caption across seeds."""
    x = np.stack([np.asarray(im, dtype=np.float32) / 255 for im in images]).reshape(n_seeds, n_captions, -1)
    d = [np.sqrt(((x[a] - x[b]) ** 2).mean(-1)).mean() for a in range(n_seeds) for b in range(a + 1, n_seeds)]
    return float(np.mean(d))


def summarise(name: str, res: dict, base: dict | None, n_captions: int, n_seeds: int, **config) -> dict:
    row = {"config": name, **config, "reward": float(res["reward"].mean()), "taste": float(res["taste"].mean()),
           "taste_std": float(res["taste"].std()), "prompt_fidelity": float(res["fidelity"].mean()),
           "diversity": diversity(res["images"], n_captions, n_seeds), "seconds_per_image": res["seconds"]}
    if base is not None:
        row["reward_gain"] = row["reward"] - float(base["reward"].mean())
        row["beats_base_on_taste"] = float(np.mean(res["taste"] > base["taste"]))
        row["ties_base_on_taste"] = float(np.mean(res["taste"] == base["taste"]))
    return row


def save_grid(columns: list[list[Image.Image]], path: Path, rows: int = 8, scale: int = 2) -> None:
    rows = min(rows, *(len(col) for col in columns))
    tiles = [[np.asarray(col[r].convert("RGB").resize((64 * scale, 64 * scale), Image.NEAREST)) for col in columns]
             for r in range(rows)]
    Image.fromarray(np.concatenate([np.concatenate(t, axis=1) for t in tiles], axis=0)).save(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluations.diffusion_results")
    parser.add_argument("--captions", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--network", type=Path, default=CHECKPOINTS / "toy-guidance")
    parser.add_argument("--reward", default="toy-pickscore")
    parser.add_argument("--betas", type=float, nargs="+", default=[0.5, 1.0, 2.0])
    parser.add_argument("--etas", type=float, nargs="+", default=[0.0, 0.5, 2.0])
    parser.add_argument("--tweedie-betas", type=float, nargs="+", default=[0.5, 2.0, 8.0, 32.0],
                        help="Tweedie β tried on the first --probe-captions captions to match the best guided reward gain")
    parser.add_argument("--probe-captions", type=int, default=50)
    parser.add_argument("--batch", type=int, default=25)
    parser.add_argument("--caption-seed", type=int, default=11)
    parser.add_argument("--out", type=Path, default=RESULTS / "diffusion_results.json")
    args = parser.parse_args(argv)

    state = PartialState()  # `accelerate launch` shards the batches over its processes
    say = print if state.is_main_process else (lambda *a, **k: None)
    pipe, preset = load_pipeline("toy-sdxl", device=state.device, dtype=torch.float32)
    network = GuidanceNetwork.from_pretrained(args.network)
    reward = load_reward(args.reward, device=state.device)
    captions = sample_captions(args.captions, seed=args.caption_seed, split="heldout")
    seeds = list(range(args.seeds))
    n = (len(captions), len(seeds))
    common = dict(captions=captions, seeds=seeds, reward=reward, batch=args.batch)

    base = run_config(pipe, preset, method="base", **common)
    rows = [summarise("base", base, None, *n)]
    say(json.dumps(rows[-1]), flush=True)
    guided = {}
    for eta in args.etas:
        for beta in args.betas:
            res = run_config(pipe, preset, method="guided", network=network, beta=beta, eta=eta, **common)
            guided[(beta, eta)] = res
            rows.append(summarise("guided", res, base, *n, beta=beta, eta=eta))
            say(json.dumps(rows[-1]), flush=True)
    best = max((r for r in rows if r["config"] == "guided"), key=lambda r: r["taste"])
    target = best["reward_gain"]

    # Tweedie: pick the β whose reward gain on the first probe captions is closest to the best guided setting's
    probe = dict(common, captions=captions[: args.probe_captions], seeds=seeds[:1])
    probe_base = run_config(pipe, preset, method="base", **probe)
    gains = {}
    for beta in args.tweedie_betas:
        res = run_config(pipe, preset, method="tweedie", beta=beta, **probe)
        gains[beta] = float(res["reward"].mean() - probe_base["reward"].mean())
        say(json.dumps({"tweedie_probe_beta": beta, "reward_gain": gains[beta]}), flush=True)
    t_beta = min(gains, key=lambda b: abs(gains[b] - target))
    tweedie = run_config(pipe, preset, method="tweedie", beta=t_beta, **common)
    rows.append(summarise("tweedie", tweedie, base, *n, beta=t_beta))
    say(json.dumps(rows[-1]), flush=True)

    if not state.is_main_process:
        return 0
    report = {"model": "toy-sdxl", "processes": state.num_processes, "device": str(state.device), "reward": args.reward, "network": str(args.network), "captions": len(captions),
              "seeds": len(seeds), "split": "heldout", "machine": torch.cuda.get_device_name() if state.device.type == "cuda"
              else platform.processor() or platform.machine(),
              "best_guided": {"beta": best["beta"], "eta": best["eta"]}, "tweedie_probe_gains": gains,
              "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    cols = ["config", "beta", "eta", "reward", "reward_gain", "taste", "prompt_fidelity", "diversity",
            "seconds_per_image", "beats_base_on_taste"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(
            f"{r[c]:.3f}" if isinstance(r.get(c), float) else str(r.get(c, "")) for c in cols) + " |")
    args.out.with_suffix(".md").write_text(
        f"# toy-sdxl: base, guided and Tweedie ({len(captions)} held-out captions × {len(seeds)} seeds)\n\n"
        f"Reward: {args.reward}. Guidance network: {args.network.relative_to(Path.cwd()) if args.network.is_relative_to(Path.cwd()) else args.network}. Command: `python -m evaluations.diffusion_results`.\n"
        f"Tweedie's β was matched to the best guided setting's reward gain ({target:.3f}) on {args.probe_captions} "
        "captions, one seed: "
        f"{json.dumps(gains)}.\n\n" + "\n".join(lines) + "\n\n`diffusion_grid.png`: columns base | best guided | "
        "Tweedie, one held-out caption per row (the first captions, seed 0).\n")
    save_grid([base["images"], guided[(best["beta"], best["eta"])]["images"], tweedie["images"]],
              args.out.parent / "diffusion_grid.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
