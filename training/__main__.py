"""Command line of the training package.

    python -m training tokenizer --out DIR [--pad "!"]
    python -m training link-vocabulary [--checkpoints checkpoints]   (after copying an export into checkpoints/)
    python -m training toy-pool --out runs/pool.npz --n 200000 --workers 16
    python -m training toy-base --preset toy-sdxl --work runs/toy-sdxl --pool runs/pool.npz --export checkpoints/toy-sdxl
    python -m training toy-decoder --init-from checkpoints/toy-sdxl --work runs/dec --pool runs/pool.npz --export runs/dec-export
    python -m training toy-distill --init-from checkpoints/toy-sd3 --work runs/distill --pool runs/pool.npz --export runs/distill-export
    python -m training toy-preferences --captions 30000 --out runs/toy-pickapic.parquet
    python -m training toy-pickscore --pairs runs/toy-pickapic.parquet --work runs/toy-pickscore --export checkpoints/toy-pickscore
    python -m training guidance-cache --pairs runs/toy-pickapic.parquet --out runs/guidance-cache --models toy-sdxl
    python -m training guidance --cache runs/guidance-cache --work runs/toy-guidance --export checkpoints/toy-guidance
    python -m training guidance-control --init-from checkpoints/toy-guidance --work runs/control --export checkpoints/toy-guidance

``accelerate launch -m training toy-base ...`` runs the same on the devices accelerate is configured for.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from .configs import (
    CacheConfig,
    DecoderTrainConfig,
    DistillConfig,
    GuidanceControlConfig,
    GuidanceEvalConfig,
    GuidanceTrainConfig,
    PickScoreTrainConfig,
    ToyTrainConfig,
)
from .options import add_options, config_from

# the commands whose options are the fields of a config dataclass: (name, config, "module:function" it is handed
# to, help). The module is imported only when its command runs.
CONFIG_COMMANDS = (
    ("toy-base", ToyTrainConfig, "toy_base:run", "train (or resume) a toy base pipeline on the renderer"),
    ("toy-decoder", DecoderTrainConfig, "toy_decoder:run",
     "fine-tune the VAE decoder of a toy pipeline (encoder frozen)"),
    ("toy-distill", DistillConfig, "toy_distill:run",
     "distil toy-sd3 into a few-step student (reflow on its own guided samples)"),
    ("toy-pickscore", PickScoreTrainConfig, "toy_pickscore:run", "train (or resume) the toy PickScore reward"),
    ("guidance-cache", CacheConfig, "guidance_data:build_cache",
     "cache latents, text embeddings and rewards of a Pick-a-Pic set"),
    ("guidance", GuidanceTrainConfig, "guidance:run", "train (or resume) the guidance network"),
    ("guidance-control", GuidanceControlConfig, "guidance_control:run",
     "train (or resume) the guidance network through its own sampler (reward minus a KL-style price)"),
    ("guidance-eval", GuidanceEvalConfig, "guidance_eval:evaluate",
     "held-out losses of a guidance network (sharded with accelerate)"),
)
PAUSED = 3  # the exit status of a trainer that paused at --max-minutes (run it again to resume)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help)

    tok = command("tokenizer", "write the CLIP BPE tokenizer built from open_clip's bundled vocabulary")
    tok.add_argument("--out", type=Path, required=True)
    tok.add_argument("--pad", default="<|endoftext|>", help='pad token: "<|endoftext|>" (SDXL tokenizer) or "!"')

    for name, config, _, help in CONFIG_COMMANDS:
        add_options(command(name, help), config)

    pool = command("toy-pool", "render the training pool once, for toy-base --pool")
    pool.add_argument("--out", type=Path, required=True)
    pool.add_argument("--n", type=int, default=200_000)
    pool.add_argument("--seed", type=int, default=0)
    pool.add_argument("--workers", type=int, default=8)
    pool.add_argument("--tokenizer", type=Path, default=None, help="a CLIPTokenizer folder (default: build one)")

    prefs = command("toy-preferences", "write the toy preference pairs (Pick-a-Pic v1 layout)")
    prefs.add_argument("--captions", type=int, default=1000)
    prefs.add_argument("--out", type=Path, required=True)
    prefs.add_argument("--seed", type=int, default=0)
    prefs.add_argument("--temperature", type=float, default=1.0, help="Bradley-Terry temperature on the taste")
    prefs.add_argument("--split", choices=("train", "heldout"), default="train", help="caption split")
    prefs.add_argument("--detail-share", type=float, default=0.0,
                       help="share of detail pairs (renders differing in blur and noise, or a soft faithful render "
                            "against a sharp mistake) that keep a reward from taking sharpness for fidelity")
    prefs.add_argument("--sources", nargs="+", default=None, metavar="A:B",
                       help="what pair i compares, cycling over the list: two models (preset, hub id or folder) or "
                            "render:render (default: toy-sdxl:toy-sd3 toy-sdxl:toy-sdxl render:render)")
    prefs.add_argument("--device", default=None)

    link = command("link-vocabulary",
                   "store the identical CLIP vocab.json / merges.txt files under checkpoints/ once (links)")
    link.add_argument("--checkpoints", type=Path, default=Path(__file__).resolve().parent.parent / "checkpoints")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; 0 when it is done, ``PAUSED`` when a trainer paused at --max-minutes."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "link-vocabulary":
        from .clip_tokenizer import link_shared_vocabulary

        replaced = link_shared_vocabulary(args.checkpoints)
        print(f"{len(replaced)} files now link to {args.checkpoints / 'clip-bpe'}")
        return 0
    if args.command == "tokenizer":
        from .clip_tokenizer import save_clip_tokenizer

        print(save_clip_tokenizer(args.out, pad_token=args.pad))
        return 0
    for name, config, target, _ in CONFIG_COMMANDS:
        if args.command == name:
            module, function = target.split(":")
            result = getattr(importlib.import_module(f".{module}", __package__), function)(config_from(config, args))
            # toy-base exits 0 when paused: its recipes pause every few minutes on purpose and are run in sequence
            return PAUSED if result is False and name != "toy-base" else 0
    if args.command == "toy-preferences":
        from .preference_data import LoadReport, iter_pairs
        from .toy_preferences import SOURCES, build, parse_sources

        try:
            sources = parse_sources(args.sources) if args.sources is not None else SOURCES
        except ValueError as e:
            parser.error(str(e))
        path = build(args.captions, args.out, seed=args.seed, temperature=args.temperature, split=args.split,
                     device=args.device, detail_share=args.detail_share, sources=sources)
        report = LoadReport()
        for _ in iter_pairs(path, report=report):
            pass
        print(f"{path}: {report}")
        return 0
    if args.command == "toy-pool":
        import time

        from transformers import CLIPTokenizer

        from .clip_tokenizer import save_slim_clip_tokenizer
        from .toy_pool import ScenePool

        started = time.time()
        folder = args.tokenizer or save_slim_clip_tokenizer(Path("/tmp") / "toy-pool-tokenizer")
        tok = CLIPTokenizer.from_pretrained(folder)
        ScenePool.render(args.n, args.seed, args.workers, "cpu", tok).save(args.out)
        print(f"rendered {args.n} pairs to {args.out} in {time.time() - started:.0f} s")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
