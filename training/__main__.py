"""Command line of the training package.

    python -m training tokenizer --out DIR [--pad "!"]
    python -m training toy-pool --out runs/pool.npz --n 200000 --workers 16
    python -m training toy-base --preset toy-sdxl --work runs/toy-sdxl --pool runs/pool.npz --export checkpoints/toy-sdxl

``accelerate launch -m training toy-base ...`` runs the same on the devices accelerate is configured for.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training")
    sub = parser.add_subparsers(dest="command", required=True)

    tok = sub.add_parser("tokenizer", help="write the CLIP BPE tokenizer built from open_clip's bundled vocabulary")
    tok.add_argument("--out", type=Path, required=True)
    tok.add_argument("--pad", default="<|endoftext|>", help='pad token: "<|endoftext|>" (SDXL tokenizer) or "!"')

    base = sub.add_parser("toy-base", help="train (or resume) a toy base pipeline on the renderer")
    base.add_argument("--preset", choices=("toy-sdxl", "toy-sd3"), required=True)
    base.add_argument("--work", type=Path, required=True, help="folder for resumable training state")
    base.add_argument("--export", type=Path, default=None, help="where to save the diffusers pipeline folder")
    base.add_argument("--init-from", type=Path, default=None, help="start from an exported pipeline folder")
    base.add_argument("--vae-steps", type=int, default=3000)
    base.add_argument("--steps", type=int, default=20000)
    base.add_argument("--batch-size", type=int, default=128)
    base.add_argument("--lr", type=float, default=3e-4)
    base.add_argument("--vae-lr", type=float, default=1e-3)
    base.add_argument("--workers", type=int, default=4)
    base.add_argument("--max-minutes", type=float, default=1e9, help="pause (state saved) after this long")
    base.add_argument("--save-every", type=int, default=1000)
    base.add_argument("--seed", type=int, default=0)
    base.add_argument("--pool", type=Path, default=None, help="cached render pool (.npz); rendered and saved if missing")
    base.add_argument("--pool-size", type=int, default=200_000)

    pool = sub.add_parser("toy-pool", help="render the training pool once, for toy-base --pool")
    pool.add_argument("--out", type=Path, required=True)
    pool.add_argument("--n", type=int, default=200_000)
    pool.add_argument("--seed", type=int, default=0)
    pool.add_argument("--workers", type=int, default=8)
    pool.add_argument("--tokenizer", type=Path, default=None, help="a CLIPTokenizer folder (default: build one)")

    prefs = sub.add_parser("toy-preferences", help="write the toy preference pairs (Pick-a-Pic v1 layout)")
    prefs.add_argument("--captions", type=int, default=1000)
    prefs.add_argument("--out", type=Path, required=True)
    prefs.add_argument("--seed", type=int, default=0)
    prefs.add_argument("--temperature", type=float, default=1.0, help="Bradley-Terry temperature on the taste")

    args = parser.parse_args(argv)
    if args.command == "tokenizer":
        from .clip_tokenizer import save_clip_tokenizer

        print(save_clip_tokenizer(args.out, pad_token=args.pad))
        return 0
    if args.command == "toy-base":
        from .toy_models import ToyTrainConfig, run

        cfg = ToyTrainConfig(
            preset=args.preset, work=args.work, export=args.export, init_from=args.init_from,
            vae_steps=args.vae_steps, steps=args.steps, batch_size=args.batch_size, lr=args.lr, vae_lr=args.vae_lr,
            workers=args.workers, max_minutes=args.max_minutes, save_every=args.save_every, seed=args.seed,
            pool=args.pool, pool_size=args.pool_size,
        )
        run(cfg)
        return 0
    if args.command == "toy-preferences":
        from .preference_data import LoadReport, iter_pairs
        from .toy_preferences import build

        path = build(args.captions, args.out, seed=args.seed, temperature=args.temperature)
        report = LoadReport()
        for _ in iter_pairs(path, report=report):
            pass
        print(f"{path}: {report}")
        return 0
    if args.command == "toy-pool":
        import time

        from .toy_models import ScenePool

        started = time.time()
        from transformers import CLIPTokenizer

        from .clip_tokenizer import save_slim_clip_tokenizer

        folder = args.tokenizer or save_slim_clip_tokenizer(Path("/tmp") / "toy-pool-tokenizer")
        tok = CLIPTokenizer.from_pretrained(folder)
        ScenePool.render(args.n, args.seed, args.workers, "cpu", tok).save(args.out)
        print(f"rendered {args.n} pairs to {args.out} in {time.time() - started:.0f} s")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
