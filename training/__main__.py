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

``accelerate launch -m training toy-base ...`` runs the same on the devices accelerate is configured for.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path


def _config(cls, args: argparse.Namespace):
    """A training config dataclass from the parsed options named like its fields (the rest keep their defaults)."""
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)})


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
    base.add_argument("--fresh-denoiser", action="store_true",
                      help="with --init-from: keep its VAE and text encoders, build the denoiser anew from toy_configs")
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
    base.add_argument("--time-shift", type=float, default=1.0,
                      help="flow presets: train on shifted sigmas k*s/(1+(k-1)*s), as the sampler's shift visits them")
    base.add_argument("--uniform-time-share", type=float, default=0.0,
                      help="flow presets: share of each batch whose sigma is drawn uniformly instead of logit-normal")
    base.add_argument("--logit-mean", type=float, default=0.0,
                      help="flow only: mean of the logit-normal the sigmas are drawn from (SD3: 0)")
    base.add_argument("--adaln-zero", action="store_true",
                      help="with --fresh-denoiser on toy-sd3: DiT's adaLN-Zero initialisation of the new transformer")
    base.add_argument("--anneal", action="store_true", help="cosine-decay the learning rate to 0 over this run")

    dec = sub.add_parser("toy-decoder", help="fine-tune the VAE decoder of a toy pipeline (encoder frozen)")
    dec.add_argument("--init-from", type=Path, required=True, help="the exported pipeline folder to improve")
    dec.add_argument("--work", type=Path, required=True, help="folder for resumable training state")
    dec.add_argument("--export", type=Path, default=None, help="where to save the pipeline with the new decoder")
    dec.add_argument("--steps", type=int, default=20000)
    dec.add_argument("--batch-size", type=int, default=256)
    dec.add_argument("--lr", type=float, default=3e-4)
    dec.add_argument("--workers", type=int, default=4)
    dec.add_argument("--max-minutes", type=float, default=1e9, help="pause (state saved) after this long")
    dec.add_argument("--save-every", type=int, default=1000)
    dec.add_argument("--seed", type=int, default=0)
    dec.add_argument("--pool", type=Path, default=None, help="cached render pool (.npz); rendered and saved if missing")
    dec.add_argument("--pool-size", type=int, default=200_000)

    dist = sub.add_parser("toy-distill", help="distil toy-sd3 into a few-step student (reflow on its own guided samples)")
    dist.add_argument("--init-from", type=Path, required=True, help="the exported toy-sd3 folder: the teacher")
    dist.add_argument("--work", type=Path, required=True, help="folder for the pairs and resumable training state")
    dist.add_argument("--export", type=Path, default=None, help="where to save the pipeline with the student")
    dist.add_argument("--pairs", type=int, default=200_000, help="teacher samples to distil from")
    dist.add_argument("--teacher-steps", type=int, default=16)
    dist.add_argument("--teacher-guidance", type=float, default=4.0)
    dist.add_argument("--student-steps", type=int, default=4, help="the step count the student is meant for")
    dist.add_argument("--sampler-share", type=float, default=0.5,
                      help="share of each batch trained at the sigmas the student's sampler visits")
    dist.add_argument("--logit-mean", type=float, default=0.0, help="the other sigmas' logit-normal mean")
    dist.add_argument("--steps", type=int, default=8000)
    dist.add_argument("--batch-size", type=int, default=1024)
    dist.add_argument("--pair-batch", type=int, default=4096, help="teacher samples made at once")
    dist.add_argument("--lr", type=float, default=2e-4)
    dist.add_argument("--workers", type=int, default=4)
    dist.add_argument("--max-minutes", type=float, default=1e9, help="pause (state saved) after this long")
    dist.add_argument("--save-every", type=int, default=1000)
    dist.add_argument("--seed", type=int, default=0)
    dist.add_argument("--pool", type=Path, default=None, help="cached render pool (.npz): its captions are used")
    dist.add_argument("--pool-size", type=int, default=200_000)

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

    prefs.add_argument("--split", choices=("train", "heldout"), default="train", help="caption split")
    prefs.add_argument("--detail-share", type=float, default=0.0,
                       help="share of detail pairs (renders differing in blur and noise, or a soft faithful render "
                            "against a sharp mistake) that keep a reward from taking sharpness for fidelity")
    prefs.add_argument("--sources", nargs="+", default=None, metavar="A:B",
                       help="what pair i compares, cycling over the list: two models (preset, hub id or folder) or "
                            "render:render (default: toy-sdxl:toy-sd3 toy-sdxl:toy-sdxl render:render)")
    prefs.add_argument("--device", default=None)

    pick = sub.add_parser("toy-pickscore", help="train (or resume) the toy PickScore reward")
    pick.add_argument("--pairs", type=Path, required=True, help="Pick-a-Pic-format parquet file or folder")
    pick.add_argument("--work", type=Path, required=True, help="folder for resumable training state")
    pick.add_argument("--export", type=Path, default=None, help="where to save the CLIPModel + CLIPProcessor folder")
    pick.add_argument("--pool", type=Path, default=None, help="cached render pool (.npz) for the contrastive stage")
    pick.add_argument("--pool-size", type=int, default=100_000)
    pick.add_argument("--init-from", type=Path, default=None,
                       help="continue from an exported toy-pickscore folder (fresh optimiser; e.g. --pretrain-steps 0)")
    pick.add_argument("--pretrain-steps", type=int, default=3000)
    pick.add_argument("--steps", type=int, default=3000)
    pick.add_argument("--batch-size", type=int, default=512)
    pick.add_argument("--lr", type=float, default=1e-3)
    pick.add_argument("--clip-weight", type=float, default=0.2, help="weight of the contrastive loss in stage 2")
    pick.add_argument("--workers", type=int, default=8)
    pick.add_argument("--max-minutes", type=float, default=1e9)
    pick.add_argument("--save-every", type=int, default=500)
    pick.add_argument("--seed", type=int, default=0)

    cache = sub.add_parser("guidance-cache", help="cache latents, text embeddings and rewards of a Pick-a-Pic set")
    cache.add_argument("--pairs", type=Path, required=True, help="Pick-a-Pic-format parquet file or folder (or hub id)")
    cache.add_argument("--out", type=Path, required=True)
    cache.add_argument("--model", default="toy-sdxl", help="the pipeline whose VAE and text encoders encode")
    cache.add_argument("--reward", default="toy-pickscore")
    cache.add_argument("--models", nargs="*", default=[], help="keep only images of these model_0/model_1 names")
    cache.add_argument("--chunk", type=int, default=2048)
    cache.add_argument("--batch", type=int, default=256)
    cache.add_argument("--limit", type=int, default=None, help="read at most this many pairs")
    cache.add_argument("--consistency-draws", type=int, default=0,
                       help="also cache K noisings and the frozen UNet's residual per preferred image, so that "
                            "`guidance --consistency-source cache` never calls the UNet")

    guide = sub.add_parser("guidance", help="train (or resume) the guidance network")
    guide.add_argument("--cache", type=Path, required=True)
    guide.add_argument("--work", type=Path, required=True)
    guide.add_argument("--export", type=Path, default=None)
    guide.add_argument("--model", default="toy-sdxl", help="the pretrained pipeline (its UNet is frozen)")
    guide.add_argument("--size", choices=("toy", "sdxl"), default="toy")
    guide.add_argument("--init-from", type=Path, default=None, help="continue from an exported network")
    guide.add_argument("--consistency-fraction", type=float, default=1.0,
                       help="compute L_consistency (one pretrained-UNet call per row) on this share of the expected "
                            "eligible rows (preferred, η > 0), a fixed number per step, weighted so the loss is "
                            "unbiased; below 1 it saves UNet calls at full scale")
    guide.add_argument("--consistency-source", choices=("unet", "cache"), default="unet",
                       help="L_consistency's ε_θ(x_t): from the frozen UNet each step, or the cache's fixed draws")
    guide.add_argument("--focus", type=float, default=0.0,
                       help="share of the rows trained at the sampler's own timesteps (the rest uniform over t)")
    guide.add_argument("--steps", type=int, default=20000)
    guide.add_argument("--readout-steps", type=int, default=0,
                       help="warm start: the first N steps regress β·log h onto the reward at t < --readout-t-max")
    guide.add_argument("--readout-t-max", type=int, default=50)
    guide.add_argument("--no-cuda-graph", dest="cuda_graph", action="store_false",
                       help="run each step eagerly instead of replaying a captured CUDA graph (one CUDA process)")
    guide.add_argument("--batch-size", type=int, default=256, help="per process")
    guide.add_argument("--lr", type=float, default=5e-4)
    guide.add_argument("--beta-range", type=float, nargs=2, default=(0.05, 5.0))
    guide.add_argument("--eta-range", type=float, nargs=2, default=(0.0, 2.0))
    guide.add_argument("--max-minutes", type=float, default=1e9)
    guide.add_argument("--save-every", type=int, default=1000)
    guide.add_argument("--seed", type=int, default=0)

    geval = sub.add_parser("guidance-eval", help="held-out losses of a guidance network (sharded with accelerate)")
    geval.add_argument("--cache", type=Path, required=True, help="a guidance cache of held-out images")
    geval.add_argument("--network", type=Path, required=True)
    geval.add_argument("--model", default="toy-sdxl")
    geval.add_argument("--betas", type=float, nargs="+", default=[0.5, 1.0, 2.0])
    geval.add_argument("--seed", type=int, default=0)
    geval.add_argument("--out", type=Path, default=None, help="also write the report (JSON) here")

    link = sub.add_parser("link-vocabulary",
                          help="store the identical CLIP vocab.json / merges.txt files under checkpoints/ once (links)")
    link.add_argument("--checkpoints", type=Path, default=Path(__file__).resolve().parent.parent / "checkpoints")

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
    if args.command == "toy-base":
        from .toy_models import ToyTrainConfig, run

        cfg = ToyTrainConfig(
            preset=args.preset, work=args.work, export=args.export, init_from=args.init_from,
            vae_steps=args.vae_steps, steps=args.steps, batch_size=args.batch_size, lr=args.lr, vae_lr=args.vae_lr,
            workers=args.workers, max_minutes=args.max_minutes, save_every=args.save_every, seed=args.seed,
            pool=args.pool, pool_size=args.pool_size, time_shift=args.time_shift, anneal=args.anneal,
            uniform_time_share=args.uniform_time_share,
            fresh_denoiser=args.fresh_denoiser, logit_mean=args.logit_mean, adaln_zero=args.adaln_zero,
        )
        run(cfg)
        return 0
    if args.command == "toy-decoder":
        from .toy_decoder import DecoderTrainConfig, run as run_decoder

        return 0 if run_decoder(_config(DecoderTrainConfig, args)) else 3
    if args.command == "toy-distill":
        from .toy_distill import DistillConfig, run as run_distill

        return 0 if run_distill(_config(DistillConfig, args)) else 3
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
    if args.command == "toy-pickscore":
        from .toy_pickscore import PickScoreTrainConfig, run as run_pickscore

        cfg = PickScoreTrainConfig(
            work=args.work, pairs=args.pairs, export=args.export, pool=args.pool, pool_size=args.pool_size,
            pretrain_steps=args.pretrain_steps, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
            clip_weight=args.clip_weight, seed=args.seed, workers=args.workers, max_minutes=args.max_minutes,
            save_every=args.save_every, init_from=args.init_from)
        return 0 if run_pickscore(cfg) else 3
    if args.command == "guidance-cache":
        from .guidance_data import CacheConfig, build_cache

        build_cache(CacheConfig(pairs=args.pairs, out=args.out, model=args.model, reward=args.reward,
                                models=tuple(args.models), chunk=args.chunk, batch=args.batch, limit=args.limit,
                                consistency_draws=args.consistency_draws))
        return 0
    if args.command == "guidance":
        from .guidance import GuidanceTrainConfig, run as run_guidance

        cfg = GuidanceTrainConfig(
            cache=args.cache, work=args.work, export=args.export, model=args.model, size=args.size, steps=args.steps,
            batch_size=args.batch_size, lr=args.lr, beta_range=tuple(args.beta_range), eta_range=tuple(args.eta_range),
            max_minutes=args.max_minutes, save_every=args.save_every, seed=args.seed, init_from=args.init_from,
            consistency_fraction=args.consistency_fraction, focus=args.focus,
            consistency_source=args.consistency_source, readout_steps=args.readout_steps,
            readout_t_max=args.readout_t_max, cuda_graph=args.cuda_graph)
        return 0 if run_guidance(cfg) else 3
    if args.command == "guidance-eval":
        from .guidance_eval import GuidanceEvalConfig, evaluate

        evaluate(GuidanceEvalConfig(cache=args.cache, network=args.network, model=args.model, betas=tuple(args.betas),
                                    seed=args.seed, out=args.out))
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
