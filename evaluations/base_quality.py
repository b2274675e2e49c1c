"""Prompt fidelity and taste of the toy base presets on held-out captions, plus a picture grid.

    python -m evaluations.base_quality --models toy-sdxl toy-sd3 --n 200

For each preset: ``n`` captions of held-out (colour, shape, background) combinations (never seen in training),
one image each at the preset's default steps and guidance, read by the toy-world oracle. Prompt fidelity = the
oracle reads the asked colour and shape. Writes ``evaluations/results/base_quality.json`` and a 4x4 grid per preset.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from PIL import Image

from alignment import generate, load_pipeline
from toyworld import sample_captions, taste

RESULTS = Path(__file__).resolve().parent / "results"


def evaluate(model: str, n: int, caption_seed: int, batch: int = 25, device: str | None = None) -> tuple[dict, list]:
    pipe, preset = load_pipeline(model, device=device)
    captions = sample_captions(n, seed=caption_seed, split="heldout")
    rows, images = [], []
    start = time.perf_counter()
    for i in range(0, n, batch):
        result = generate(pipe, captions[i : i + batch], seed=caption_seed * 100_000 + i, preset=preset)
        for image, caption in zip(result.images, result.prompts):
            t = taste(image, caption)
            rows.append(t)
            images.append((image, caption))
    scores = np.array([t.score for t in rows])
    summary = {
        "model": model,
        "captions": n,
        "split": "heldout",
        "steps": preset.steps if preset else None,
        "guidance_scale": preset.guidance_scale if preset else None,
        "prompt_fidelity": float(np.mean([t.prompt_fidelity for t in rows])),
        "colour_right": float(np.mean([t.colour_ok for t in rows])),
        "shape_right": float(np.mean([t.shape_ok for t in rows])),
        "fidelity_all_terms": float(np.mean([t.fidelity for t in rows])),
        "taste_mean": float(scores.mean()),
        "taste_std": float(scores.std()),
        "taste_p10": float(np.percentile(scores, 10)),
        "taste_p90": float(np.percentile(scores, 90)),
        "aesthetic_mean": float(np.mean([t.aesthetic for t in rows])),
        "aesthetic_std": float(np.std([t.aesthetic for t in rows])),
        "seconds_per_image_batched": (time.perf_counter() - start) / n,
    }
    return summary, images


def save_grid(images: list, path: Path, cols: int = 4, scale: int = 3) -> None:
    tiles = [np.asarray(im.convert("RGB").resize((64 * scale, 64 * scale), Image.NEAREST)) for im, _ in images]
    rows = [np.concatenate(tiles[r * cols : (r + 1) * cols], axis=1) for r in range(len(tiles) // cols)]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)
    path.with_suffix(".md").write_text(
        f"# {path.stem}\n\nRow by row, left to right:\n\n" + "\n".join(f"{i + 1}. {c}" for i, (_, c) in enumerate(images))
        + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluations.base_quality")
    parser.add_argument("--models", nargs="+", default=["toy-sdxl", "toy-sd3"])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--caption-seed", type=int, default=1)
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", type=Path, default=RESULTS / "base_quality.json")
    args = parser.parse_args(argv)
    out = {"machine": platform.processor() or platform.machine(), "results": []}
    for model in args.models:
        summary, images = evaluate(model, args.n, args.caption_seed, device=args.device)
        print(json.dumps(summary))
        out["results"].append(summary)
        save_grid(images[:16], RESULTS / f"grid_{model}.png")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
