"""Prompt fidelity and taste of the toy base presets on held-out captions, plus a picture grid.

    python -m evaluations.base_quality --models toy-sdxl toy-sd3 --n 200
    python -m evaluations.base_quality --models toy-sd3 --caption-seed 3 --steps 6 --shift 4 --out /tmp/s.json

For each preset: ``n`` captions of held-out (colour, shape, background) combinations (never seen in training),
one image each at the preset's default steps and guidance, read by the toy-world oracle. Prompt fidelity = the
oracle reads the asked colour and shape. Writes ``evaluations/results/base_quality.json`` (or ``--out``) and, at
the presets' own settings, a 4x4 grid per preset beside it.
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


def with_shift(pipe, shift: float):
    """The pipeline with its flow-matching scheduler's ``shift`` replaced (toy-sd3 / SD3 class only)."""
    if "shift" not in pipe.scheduler.config:
        raise ValueError(f"--shift applies to flow-matching schedulers; {type(pipe.scheduler).__name__} has none")
    if not 0 < shift <= 100:
        raise ValueError(f"--shift must lie in (0, 100], got {shift}")
    pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, shift=float(shift))
    return pipe


def evaluate(model: str, n: int, caption_seed: int, batch: int = 25, device: str | None = None,
             steps: int | None = None, guidance_scale: float | None = None,
             shift: float | None = None) -> tuple[dict, list]:
    """Prompt fidelity and taste of ``model`` at its preset's sampling defaults, or at the ``steps``,
    ``guidance_scale`` and scheduler ``shift`` given (how the defaults were chosen)."""
    pipe, preset = load_pipeline(model, device=device)
    if shift is not None:
        with_shift(pipe, shift)
    captions = sample_captions(n, seed=caption_seed, split="heldout")
    rows, images = [], []
    start = time.perf_counter()
    for i in range(0, n, batch):
        result = generate(pipe, captions[i : i + batch], seed=caption_seed * 100_000 + i, preset=preset,
                          steps=steps, guidance_scale=guidance_scale)
        for image, caption in zip(result.images, result.prompts):
            t = taste(image, caption)
            rows.append(t)
            images.append((image, caption))
    scores = np.array([t.score for t in rows])
    summary = {
        "model": model,
        "captions": n,
        "split": "heldout",
        "steps": result.steps,
        "guidance_scale": result.guidance_scale,
        "shift": pipe.scheduler.config.get("shift"),
        "caption_seed": caption_seed,
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
    if not images:
        raise ValueError("a grid needs at least one image")
    tiles = [np.asarray(im.convert("RGB").resize((64 * scale, 64 * scale), Image.NEAREST)) for im, _ in images]
    cols = min(cols, len(tiles))  # a short list is one row
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
    parser.add_argument("--steps", type=int, default=None, help="override the preset's step count")
    parser.add_argument("--guidance-scale", type=float, default=None, help="override the preset's CFG scale")
    parser.add_argument("--shift", type=float, default=None, help="override a flow scheduler's shift")
    parser.add_argument("--out", type=Path, default=RESULTS / "base_quality.json")
    args = parser.parse_args(argv)
    overridden = any(v is not None for v in (args.steps, args.guidance_scale, args.shift))
    if overridden and args.out == RESULTS / "base_quality.json":
        parser.error("with --steps, --guidance-scale or --shift, name an --out: base_quality.json holds the "
                     "presets' own defaults")
    out = {"machine": platform.processor() or platform.machine(), "results": []}
    for model in args.models:
        summary, images = evaluate(model, args.n, args.caption_seed, device=args.device, steps=args.steps,
                                   guidance_scale=args.guidance_scale, shift=args.shift)
        print(json.dumps(summary))
        out["results"].append(summary)
        if not overridden:
            save_grid(images[:16], args.out.parent / f"grid_{model}.png")  # beside the JSON, not over the shipped one
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
