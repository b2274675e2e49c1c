"""How well a reward stands in for the toy taste (the hidden "voters"), on captions it never saw.

    python -m evaluations.reward_quality --reward toy-pickscore

1. Agreement on held-out preference pairs: the share of pairs where the reward prefers the image with the higher
   taste, among pairs whose taste gap is clear (|Δtaste| ≥ 1 point of 10; other gaps reported too). The pairs are
   ``python -m training toy-preferences --split heldout`` sets (made here when missing).
2. Ranking: Spearman correlation between reward and taste over base samples (half toy-sdxl, half toy-sd3), one per
   held-out caption, and within captions (several seeds per caption).

Writes ``evaluations/results/reward_quality_<reward>.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from alignment import generate, load_pipeline
from toyworld import sample_captions, taste

from .rewards import load_reward

RESULTS = Path(__file__).resolve().parent / "results"

HELDOUT_PAIRS = Path(__file__).resolve().parents[1] / "runs" / "heldout-pairs"


def spearman(a, b) -> float:
    """Pearson correlation of the ranks (ties get their mean rank)."""
    ra, rb = pd.Series(np.asarray(a, dtype=float)).rank(), pd.Series(np.asarray(b, dtype=float)).rank()
    return float(ra.corr(rb))


def pair_agreement(reward, source: Path, gaps=(0.5, 1.0, 2.0), batch: int = 256) -> dict:
    from alignment.pickapic import iter_pairs

    pairs = list(iter_pairs(source))
    r0, r1, t0, t1 = [], [], [], []
    for i in range(0, len(pairs), batch):
        part = pairs[i : i + batch]
        captions = [p.caption for p in part]
        r0 += reward.score([p.image_0 for p in part], captions).tolist()
        r1 += reward.score([p.image_1 for p in part], captions).tolist()
        t0 += [taste(p.image_0, p.caption).score for p in part]
        t1 += [taste(p.image_1, p.caption).score for p in part]
    dr, dt = np.array(r0) - np.array(r1), np.array(t0) - np.array(t1)
    out = {"pairs": len(pairs)}
    for gap in gaps:
        clear = np.abs(dt) >= gap
        out[f"agreement_gap_{gap:g}"] = float(np.mean(np.sign(dr[clear]) == np.sign(dt[clear])))
        out[f"pairs_gap_{gap:g}"] = int(clear.sum())
    # agreement with the recorded (Bradley-Terry-drawn) votes, the noisy labels the reward was trained on
    labels = np.array([p.label_0 - p.label_1 for p in pairs])
    decided = labels != 0
    out["agreement_with_votes"] = float(np.mean(np.sign(dr[decided]) == np.sign(labels[decided])))
    out["taste_agreement_with_votes"] = float(np.mean(np.sign(dt[decided]) == np.sign(labels[decided])))
    return out


def ranking(reward, n: int = 500, seeds_per_caption: int = 4, caption_seed: int = 5, batch: int = 50) -> dict:
    """Spearman over ``n`` base samples (one per caption, half per preset), and mean within-caption Spearman over
    ``seeds_per_caption`` samples of 50 captions."""
    rewards, tastes, within = [], [], []
    captions = sample_captions(n, seed=caption_seed, split="heldout")
    for k, model in enumerate(("toy-sdxl", "toy-sd3")):
        pipe, preset = load_pipeline(model, device="cpu")
        mine = captions[k::2]
        for i in range(0, len(mine), batch):
            result = generate(pipe, mine[i : i + batch], seed=caption_seed * 1000 + k * 100 + i, preset=preset)
            rewards += reward.score(result.images, result.prompts).tolist()
            tastes += [taste(im, c).score for im, c in zip(result.images, result.prompts)]
        for c in mine[:25]:
            result = generate(pipe, [c] * seeds_per_caption, seed=caption_seed + k, preset=preset)
            rs = reward.score(result.images, result.prompts).tolist()
            ts = [taste(im, c).score for im in result.images]
            if np.std(ts) > 0 and np.std(rs) > 0:
                within.append(spearman(rs, ts))
    return {"samples": len(rewards), "spearman": spearman(rewards, tastes),
            "within_caption_spearman_mean": float(np.mean(within)), "within_caption_groups": len(within)}


def ensure_heldout_pairs(folder: Path, captions: int = 1200) -> Path:
    if not list(folder.glob("*.parquet")):
        from training.toy_preferences import build

        for seed, name in ((100, "a"), (101, "b")):
            build(captions, folder / f"{name}.parquet", seed=seed, split="heldout", device="cpu")
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluations.reward_quality")
    parser.add_argument("--reward", default="toy-pickscore")
    parser.add_argument("--pairs", type=Path, default=HELDOUT_PAIRS, help="held-out Pick-a-Pic-format pairs")
    parser.add_argument("--n", type=int, default=500, help="base samples for the ranking")
    args = parser.parse_args(argv)
    reward = load_reward(args.reward)
    out = {"reward": args.reward, "pairs": pair_agreement(reward, ensure_heldout_pairs(args.pairs)),
           "ranking": ranking(reward, args.n)}
    print(json.dumps(out, indent=1))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"reward_quality_{args.reward}.json").write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
