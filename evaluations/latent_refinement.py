"""Two ways tried to lift the share of pairs whose guided reward beats the baseline's on toy-sdxl, beside the
shipped guidance at its default setting. Neither is a method of the samplers; this records what they give and cost.

    python -m evaluations.latent_refinement --split validation --captions 100     # tuning
    python -m evaluations.latent_refinement --split test --captions 200 --steps 0.035

* **Reward-gradient refinement of the final latent**: after sampling, ``z ← z + s·rms(z)·ĝ`` with ``ĝ`` the
  reward's gradient ``∇_z r(D(z), y)`` through the VAE decoder, scaled to unit RMS, then decoded again. One extra
  decoder forward and backward, reward forward and backward, and decode per image.
* **A last-step strength chosen by the reward**: the guided trajectory with the strength α of its last step set to
  each of a few values (earlier steps at the default); the candidate with the highest reward is kept. The
  candidates share all but the last denoiser step, so the extra cost is one decode and one reward call each.

Images come from ``training.guidance_control.unrolled_guided_sample`` (image for image the pipeline's), scored by
the reward and the toy world's taste; pairs are (caption, seed) as in ``evaluations.pareto``. Writes
``latent_refinement_toy-sdxl_<split>.{json,md}`` under ``evaluations/results/``.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from alignment import load_pipeline
from alignment.defaults import DIFFUSION_ALPHA, DIFFUSION_BETA, load_guidance_network
from alignment.rewards import load_reward
from alignment.sampling import encode_prompt_kwargs
from toyworld import taste
from training.guidance_control import decoded, unrolled_guided_sample

from .pareto import SPLITS, split_captions

RESULTS = Path(__file__).resolve().parent / "results"


class LastStepStrength(torch.nn.Module):
    """The guidance network with its output (so its gradient) scaled by α, and by ``last`` at the last timestep."""

    def __init__(self, network, last_timestep, alpha: float, last: float):
        super().__init__()
        self.network, self.last_timestep, self.alpha, self.last = network, last_timestep, alpha, last

    def forward(self, x, text, t, beta, eta):
        scale = torch.where(t == self.last_timestep, torch.tensor(self.last), torch.tensor(self.alpha))
        return self.network(x, text, t, beta, eta) * scale


def refined(vae, reward, z, prompts, steps):
    """``({s: images}, seconds)``: the final latents ``z`` moved by ``s`` RMS along the reward's normalised
    gradient and decoded; seconds of one refinement (the gradient and one decode)."""
    t0 = time.perf_counter()
    x = z.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(reward.score(decoded(vae, x), prompts).sum(), x)
    unit = grad / grad.flatten(1).pow(2).mean(1).sqrt().clamp_min(1e-12).view(-1, 1, 1, 1)
    rms = z.flatten(1).pow(2).mean(1).sqrt().view(-1, 1, 1, 1)
    gradient_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    with torch.no_grad():
        out = {s: decoded(vae, z + s * rms * unit) for s in steps}
    return out, gradient_s + (time.perf_counter() - t0) / len(steps)


def final_latents(pipe, network, kw, noise, beta, steps, res, guidance):
    """The sampler's final latents (``unrolled_guided_sample`` stopped before the decode)."""
    n = noise.shape[0]
    return unrolled_guided_sample(pipe, network, kw, noise, torch.full((n,), beta), torch.ones(n), steps, res,
                                  guidance, create_graph=False, decode=False)[0].detach()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluations.latent_refinement")
    parser.add_argument("--split", default="validation", choices=sorted(SPLITS))
    parser.add_argument("--captions", type=int, default=100)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--steps", type=float, nargs="+", default=[0.02, 0.035, 0.05, 0.1])
    parser.add_argument("--last", type=float, nargs="+", default=[0.0, 0.75, 2.5, 4.0],
                        help="last-step strengths tried besides the default α")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    torch.manual_seed(0)
    pipe, preset = load_pipeline("toy-sdxl")
    network, reward = load_guidance_network(), load_reward("toy-pickscore")
    captions, seeds = split_captions(args.split, args.captions), SPLITS[args.split]["seeds"]
    res, steps, guidance = preset.resolution, preset.steps, preset.guidance_scale
    side = res // pipe.vae_scale_factor
    pipe.scheduler.set_timesteps(steps)
    last_t = pipe.scheduler.timesteps[-1]
    lasts = sorted(set(args.last) | {DIFFUSION_ALPHA})
    rows: dict[str, list] = {}
    seconds: dict[str, float] = {}

    def add(name, images, chunk, elapsed=None, r=None):
        """Record the images' rewards (``r``, when already scored) and tastes under ``name``; returns the rewards."""
        r = reward.score(images, chunk).float() if r is None else r
        for caption, image, value in zip(chunk, images, r):
            pil = (image.permute(1, 2, 0).detach().numpy() * 255).round().astype(np.uint8)
            rows.setdefault(name, []).append((float(value), taste(pil, caption).score))
        if elapsed is not None:
            seconds[name] = seconds.get(name, 0.0) + elapsed
        return r

    for seed in seeds:
        for lo in range(0, len(captions), args.batch):
            chunk = captions[lo : lo + args.batch]
            n = len(chunk)
            noise = torch.stack([torch.randn(4, side, side, generator=torch.Generator().manual_seed(
                seed * 100_003 + lo + i)) for i in range(n)])
            kw = encode_prompt_kwargs(pipe, chunk, True)
            with torch.no_grad():
                t0 = time.perf_counter()
                z_base = final_latents(pipe, None, kw, noise, DIFFUSION_BETA, steps, res, guidance)
                base = decoded(pipe.vae, z_base)
                add("base", base, chunk, time.perf_counter() - t0)
            candidates = {}
            for a in lasts:
                t0 = time.perf_counter()
                z = final_latents(pipe, LastStepStrength(network, last_t, DIFFUSION_ALPHA, a), kw, noise,
                                  DIFFUSION_BETA, steps, res, guidance)
                with torch.no_grad():
                    images = decoded(pipe.vae, z)
                candidates[a] = (z, images, add(f"guided, last-step α {a:g}", images, chunk, time.perf_counter() - t0))
            z_guided = candidates[DIFFUSION_ALPHA][0]
            for label, z in (("guided", z_guided), ("base", z_base)):
                out, elapsed = refined(pipe.vae, reward, z, chunk, args.steps)
                for s, images in out.items():
                    add(f"{label} + refinement s={s:g}", images, chunk, elapsed)
            print(f"seed {seed}: {lo + n}/{len(captions)}", flush=True)
            for k in (2, 3):
                for combo in itertools.combinations(lasts, k):
                    name = "select last-step α from " + ", ".join(f"{a:g}" for a in combo)
                    imgs = torch.stack([candidates[a][1] for a in combo])  # (k, B, 3, H, W)
                    r = torch.stack([candidates[a][2] for a in combo])  # their rewards, scored once above
                    best = r.argmax(0)
                    add(name, imgs[best, torch.arange(n)], chunk, r=r[best, torch.arange(n)])

    base = np.array(rows["base"])
    per_image = {k: v / len(base) for k, v in seconds.items()}
    base_s = per_image["base"]
    table = []
    for name, values in rows.items():
        if name == "base":
            continue
        v = np.array(values)
        wins = lambda a, b: float(np.mean((a > b) + 0.5 * (a == b)))  # noqa: E731
        row = {"method": name, "reward_over_base": float(np.mean(v[:, 0] > base[:, 0])),
               "taste_beats_base": wins(v[:, 1], base[:, 1]), "reward_gain": float(np.mean(v[:, 0] - base[:, 0])),
               "taste_gain": float(np.mean(v[:, 1] - base[:, 1]))}
        if name.startswith("select"):
            k = name.count(",") + 1  # the default's trajectory plus a decode and a reward call per extra candidate
            row["cost_note"] = f"{k} decodes and reward calls"
        elif name in per_image:
            extra = per_image[name] + (per_image[f"guided, last-step α {DIFFUSION_ALPHA:g}"] if name.startswith(
                "guided +") else base_s if name.startswith("base +") else 0.0)
            row["seconds_over_base"] = extra / base_s
        table.append(row)
    report = {"split": args.split, "captions": len(captions), "seeds": seeds, "beta": DIFFUSION_BETA,
              "alpha": DIFFUSION_ALPHA, "base_seconds_per_image": base_s, "batch": args.batch, "table": table,
              "command": "python -m evaluations.latent_refinement " + " ".join(argv if argv is not None else
                                                                             __import__("sys").argv[1:]),
              "date": datetime.date.today().isoformat(), "machine": f"cpu ({platform.machine()})",
              "seconds": round(time.perf_counter() - started, 1)}
    stem = RESULTS / f"latent_refinement_toy-sdxl_{args.split}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1))
    lines = [f"# Refinement and last-step selection on toy-sdxl ({args.split} split)", "",
             f"{len(captions)} captions × seeds {seeds}, guided β = {DIFFUSION_BETA:g}, α = {DIFFUSION_ALPHA:g}, "
             f"{report['date']}, {report['machine']}, {report['seconds']} s. Command: `{report['command']}`. "
             "Time: seconds per image against the base sampler's, at the same batch.", "",
             "| method | reward > base | beats base on taste | reward gain | taste gain | time / base |",
             "|---|---|---|---|---|---|"]
    for r in table:
        cost = f"{r['seconds_over_base']:.2f}×" if "seconds_over_base" in r else r.get("cost_note", "")
        lines.append(f"| {r['method']} | {r['reward_over_base']:.1%} | {r['taste_beats_base']:.1%} | "
                     f"{r['reward_gain']:+.3f} | {r['taste_gain']:+.3f} | {cost} |")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
