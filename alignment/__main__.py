"""Command line.

    python -m alignment generate --model toy-sdxl --prompt "a red star on a blue background" --seed 0 --out out.png
    python -m alignment generate --model toy-sd3 --method is --prompt ...          # the tuned estimator, N = 8
    python -m alignment generate --model toy-sd3 --method is --estimator paper --n 8 --beta 0.3 --prompt ...
    python -m alignment generate --model toy-sd3 --method bon --n 9 --prompt ...     # also for diffusion models
    python -m alignment generate --model toy-sd3 --method fk --particles 9 --beta 0.3 --prompt ...
    python -m alignment generate --model toy-sdxl --method guided [--beta 0.1 --eta 1 --alpha 1] --prompt ...
    python -m alignment generate --model toy-sdxl --method tweedie --beta 1 --reward toy-pickscore --prompt ...
    python -m alignment presets

Defaults (β, η, α, N, the estimator) come from ``alignment.defaults``: the settings that won the compute-matched
evaluation. ``generate`` prints one line of JSON: model, method, seed, steps, guidance, seconds (sampling only), the output path,
and for the flow methods the reward of the image (with ``--reward``, the baseline's too), and for ``is`` the ESS of
the weights a and b at every step. Methods are the functions in ``METHODS``: (pipe, preset, args) -> (image, fields).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _baseline(pipe, preset, args):
    from .rewards import load_reward
    from .sampling import generate

    result = generate(pipe, args.prompt, seed=args.seed, steps=args.steps, guidance_scale=args.guidance, preset=preset)
    fields = {"seed": result.seed, "steps": result.steps, "guidance": result.guidance_scale,
              "seconds": round(result.seconds, 4)}
    if args.reward:
        fields["reward"] = round(float(load_reward(args.reward).score(result.images, result.prompts)[0]), 4)
    return result.images[0], fields


def _flow(method):
    def run(pipe, preset, args):
        from .flow_sampler import best_of_n, sample_is
        from .sample_bank import DEFAULT_REWARD, SampleBank

        bank = SampleBank(pipe, args.reward or DEFAULT_REWARD, preset=preset, steps=args.steps,
                          guidance_scale=args.guidance, cache_dir=args.bank_dir)
        if method == "is":
            result = sample_is(pipe, args.prompt, seed=args.seed, n=args.n, beta=args.beta, bank=bank,
                               estimator=args.estimator, particles=args.particles, rounds=args.rounds)
        else:
            result = best_of_n(pipe, args.prompt, seed=args.seed, n=args.n, bank=bank)
        fields = {"seed": result.seed, "steps": bank.settings.steps, "guidance": bank.settings.guidance_scale,
                  "seconds": round(result.seconds, 4), "n": result.n, "reward_name": bank.reward_name,
                  "reward": round(float(result.rewards[0]), 4)}
        if method == "is":
            fields.update(beta=result.beta, estimator=result.estimator, trajectories=result.trajectories, sigmas=[round(s, 4) for s in result.sigmas],
                          ess_a=[round(float(e), 3) for e in result.ess_a[:, 0]],
                          ess_b=[round(float(e), 3) for e in result.ess_b[:, 0]])
        else:
            fields["pick"] = result.picks[0]
        return result.images[0], fields
    return run


def _fk(pipe, preset, args):
    from .fk_steering import sample_fk
    from .sample_bank import DEFAULT_REWARD, SampleBank

    bank = SampleBank(pipe, args.reward or DEFAULT_REWARD, preset=preset, steps=args.steps,
                      guidance_scale=args.guidance)
    result = sample_fk(pipe, args.prompt, seed=args.seed, particles=args.particles, beta=args.beta, bank=bank)
    fields = {"seed": result.seed, "steps": bank.settings.steps, "guidance": bank.settings.guidance_scale,
              "seconds": round(result.seconds, 4), "particles": args.particles, "beta": result.beta,
              "reward_name": bank.reward_name, "reward": round(float(result.rewards[0]), 4),
              "resampled": result.resampled, "pick": result.picks[0]}
    return result.images[0], fields


def _bon(pipe, preset, args):
    """Best-of-N: from the flow sample bank, or N baseline draws of a diffusion model."""
    if getattr(pipe, "transformer", None) is not None:
        return _flow("bon")(pipe, preset, args)
    from .diffusion_sampler import best_of_n

    result = best_of_n(pipe, args.prompt, n=args.n, seed=args.seed, reward=args.reward or "toy-pickscore",
                       steps=args.steps, guidance_scale=args.guidance, preset=preset)
    fields = result.summary()
    fields.pop("method")
    fields.update(n=args.n, reward=fields.pop("rewards")[0])
    return result.images[0], fields


def _diffusion(method):
    def run(pipe, preset, args):
        from .diffusion_sampler import sample_guided, sample_tweedie
        from .defaults import load_guidance_network

        common = dict(beta=args.beta, alpha=args.alpha, seed=args.seed, steps=args.steps,
                      guidance_scale=args.guidance, preset=preset)
        if method == "guided":
            network = load_guidance_network(args.network)
            result = sample_guided(pipe, args.prompt, network=network, eta=args.eta,
                                   reward=args.reward or "toy-pickscore", **common)
        else:
            result = sample_tweedie(pipe, args.prompt, reward=args.reward or "toy-pickscore", **common)
        fields = result.summary()
        fields.pop("method")
        fields["reward"] = fields.pop("rewards")[0]
        return result.images[0], fields
    return run


FAMILY = {"is": "flow", "fk": "flow", "guided": "diffusion", "tweedie": "diffusion"}  # the family a method needs


def _check_family(method: str, model: str, family: str | None) -> None:
    """ValueError when ``method`` needs a family of model that ``model`` (of ``family``) is not."""
    needed = FAMILY.get(method)
    if needed is not None and family is not None and family != needed:
        examples = "toy-sd3, sd3.5-large-turbo" if needed == "flow" else "toy-sdxl, sdxl-turbo"
        raise ValueError(f"--method {method} needs a {needed} model (e.g. {examples}); {model} is a {family} model")


METHODS = {"baseline": _baseline, "is": _flow("is"), "fk": _fk, "bon": _bon, "guided": _diffusion("guided"),
           "tweedie": _diffusion("tweedie")}


def main(argv: list[str] | None = None) -> int:
    from . import defaults

    parser = argparse.ArgumentParser(prog="python -m alignment")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="sample one image")
    gen.add_argument("--model", default="toy-sdxl", help="preset name, hub id or local diffusers folder")
    gen.add_argument("--prompt", required=True)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--steps", type=int, default=None, help="default: the preset's")
    gen.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale; default: preset's")
    gen.add_argument("--method", choices=tuple(METHODS), default="baseline",
                     help="baseline; bon = best of N (any model); is = importance-sampled flow guidance; fk = "
                          "Feynman-Kac steering (flow models); guided = guidance network; tweedie = reward "
                          "gradient through x̂0 (diffusion models)")
    gen.add_argument("--n", type=int, default=defaults.FLOW_N, help="is/bon: samples in the bank")
    gen.add_argument("--beta", type=float, default=None,
                     help=f"is/guided/tweedie: reward temperature, smaller = stronger (default {defaults.FLOW_BETA} "
                          f"for is, {defaults.DIFFUSION_BETA} for guided and tweedie)")
    gen.add_argument("--estimator", choices=sorted(defaults.ESTIMATORS), default=defaults.FLOW_ESTIMATOR,
                     help="is: the estimator's settings (paper = the paper's exact estimator)")
    gen.add_argument("--particles", type=int, default=None, help="is: guided particles K, the best by reward is "
                                                                  "kept (default: the estimator setting's, "
                                                                  f"{defaults.PARTICLES}); fk: particles (default "
                                                                  "N + that)")
    gen.add_argument("--rounds", type=int, default=1, help="is: rounds of iterated tilting R (cost N + K·R)")
    gen.add_argument("--eta", type=float, default=defaults.DIFFUSION_ETA, help="guided: weight of the consistency "
                                                                                "term")
    gen.add_argument("--alpha", type=float, default=defaults.DIFFUSION_ALPHA, help="guided/tweedie: guidance "
                                                                                    "strength")
    gen.add_argument("--network", type=Path, default=None, help="guided: guidance network folder "
                                                                "(default checkpoints/toy-guidance)")
    gen.add_argument("--reward", default=None, help="reward name or sum, e.g. toy-pickscore; is/bon default "
                                                    "toy-pickscore; baseline scores only when given")
    gen.add_argument("--bank-dir", type=Path, default=None, help="is/bon: keep the sample bank on disk here")
    gen.add_argument("--device", default=None, help="e.g. cpu, cuda; default: what accelerate picks")
    gen.add_argument("--out", type=Path, default=Path("out.png"))
    sub.add_parser("presets", help="list the named models")
    args = parser.parse_args(argv)
    if args.command == "generate" and args.beta is None:
        args.beta = defaults.FLOW_BETA if args.method in ("is", "fk", "bon") else defaults.DIFFUSION_BETA
    if args.command == "generate" and args.particles is None:
        args.particles = (defaults.FLOW_N + defaults.FLOW_PARTICLES if args.method == "fk"
                          else defaults.PARTICLES.get(args.estimator, 1))

    if args.command == "presets":
        from .presets import PRESETS

        for p in PRESETS.values():
            print(f"{p.name:20s} {p.family:9s} steps={p.steps} guidance={p.guidance_scale} {p.source}")
        return 0

    from .diffusion_guidance import check_alpha, check_eta
    from .flow_guidance import check_beta
    from .loading import ModelLoadError, load_pipeline
    from .sample_bank import check_n

    try:
        if args.reward is not None:  # refuse an unknown reward name before loading anything
            from .rewards.registry import parse_spec

            parse_spec(args.reward)
        if args.method in ("is", "bon"):  # refuse bad numbers before loading anything
            check_n(args.n)
        if args.method in ("is", "fk") and not 1 <= args.particles <= 64:
            raise ValueError(f"--particles must be from 1 to 64, got {args.particles}")
        if args.method in ("is", "fk", "guided", "tweedie"):
            check_beta(args.beta)
        if args.method == "guided":
            check_eta(args.eta)
        if args.method in ("guided", "tweedie"):
            check_alpha(args.alpha)
        from .presets import find_preset

        known = find_preset(args.model)
        _check_family(args.method, args.model, known.family if known else None)  # before loading, when known
        pipe, preset = load_pipeline(args.model, device=args.device)
        _check_family(args.method, args.model, "flow" if getattr(pipe, "transformer", None) is not None
                      else "diffusion")
        image, fields = METHODS[args.method](pipe, preset, args)
    except (ModelLoadError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    image.save(args.out)
    print(json.dumps({"model": args.model, "method": args.method, **fields, "out": str(args.out)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
