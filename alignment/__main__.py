"""Command line.

    python -m alignment generate --model toy-sdxl --prompt "a red star on a blue background" --seed 0 --out out.png
    python -m alignment presets

``generate`` prints one line of JSON: model, seed, steps, guidance, seconds (sampling only) and the output path.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m alignment")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="sample one image")
    gen.add_argument("--model", default="toy-sdxl", help="preset name, hub id or local diffusers folder")
    gen.add_argument("--prompt", required=True)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--steps", type=int, default=None, help="default: the preset's")
    gen.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale; default: preset's")
    gen.add_argument("--method", choices=("baseline",), default="baseline")
    gen.add_argument("--device", default=None, help="e.g. cpu, cuda; default: what accelerate picks")
    gen.add_argument("--out", type=Path, default=Path("out.png"))
    sub.add_parser("presets", help="list the named models")
    args = parser.parse_args(argv)

    if args.command == "presets":
        from .presets import PRESETS

        for p in PRESETS.values():
            print(f"{p.name:20s} {p.family:9s} steps={p.steps} guidance={p.guidance_scale} {p.source}")
        return 0

    from .loading import ModelLoadError, load_pipeline
    from .sampling import generate

    try:
        pipe, preset = load_pipeline(args.model, device=args.device)
        result = generate(pipe, args.prompt, seed=args.seed, steps=args.steps, guidance_scale=args.guidance,
                          preset=preset)
    except (ModelLoadError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result.images[0].save(args.out)
    print(json.dumps({"model": args.model, "method": args.method, "seed": result.seed, "steps": result.steps,
                      "guidance": result.guidance_scale, "seconds": round(result.seconds, 4), "out": str(args.out)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
