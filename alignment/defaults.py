"""The defaults that the command line, the Python API and the studio start from: one place, chosen by the
compute-matched evaluation (``python -m evaluations.pareto``, tuned on the validation split, reported on the test
split; see ``evaluations/results/pareto_*.md``).

* Flow models: the ``"tuned"`` estimator (``TUNED``) at ``FLOW_BETA`` with a bank of ``FLOW_N`` and
  ``PARTICLES["tuned"]`` guided particles (the one with the highest reward is kept); the paper's exact estimator
  stays available as ``"paper"`` (one guided trajectory).
* Diffusion models: the guidance network ``GUIDANCE_NETWORK`` (trained through its sampler) at ``DIFFUSION_BETA``,
  ``DIFFUSION_ETA``, strength ``DIFFUSION_ALPHA``; ``PAPER_GUIDANCE_NETWORK`` is the one trained with the paper's loss.
"""

from __future__ import annotations

from pathlib import Path

from .flow_guidance import PAPER, Estimator
from .presets import CHECKPOINTS

# Flow: a likelihood temperature τ and a guidance scale λ keep the correction alive past the first steps (the
# paper's estimator collapses to ESS ≈ 1 by the third of six steps). Chosen on the validation split (100 captions ×
# 2 seeds, toy-sd3, N = 8): τ = 16, λ = 3, β = 0.1 beat best-of-9 on taste in 82.5 % of pairs (paper: 31 %); the
# neighbours β = 0.05 / 0.3 gave 86 / 69.5 %, τ = 4 / 64 at λ = 6 gave 82 / 74 %, a damped reward scale or a σ
# window did not help. τ acts on squared latent distances, which grow with the latent's size: at other resolutions
# it has not been tuned.
TUNED = Estimator(tau=16.0, scale=3.0)
ESTIMATORS: dict[str, Estimator] = {"paper": PAPER, "tuned": TUNED}  # named settings of the one estimator
FLOW_ESTIMATOR = "tuned"
FLOW_BETA = 0.1
FLOW_N = 8
# Guided particles K of each named setting (cost N + K trajectories; the K run as one batch). On the validation
# split, K = 2 at N = 8, β = 0.1 raised the share of pairs whose reward beats the baseline's from 71 % to 78 % and
# beat best-of-10 (equal trajectories) on taste in 81 % of pairs (K = 1 against best-of-9: 82.5 %).
PARTICLES: dict[str, int] = {"paper": 1, "tuned": 2}
FLOW_PARTICLES = PARTICLES[FLOW_ESTIMATOR]

# Diffusion: the guidance network and its β, η and α, chosen on the validation split (100 captions × 2 seeds,
# toy-sdxl). The shipped network (1.2 M parameters, toy_wide_size) is trained through its own sampler from scratch
# (`python -m training guidance-control --size toy-wide`); at β = 0.05 it beat base on taste in 82.5 % of pairs and
# best-of-2 in 65.5 % with α = 1.5 (α = 1: 81.5 / 65.5 %, higher β lower against best-of-2;
# evaluations/results/pareto_toy-sdxl_validation_control_wide.md). The network of the same objective at a quarter of
# the size reached 76.5 / 61 % there, and the one trained with the paper's objective (checkpoints/toy-guidance-paper)
# 68.8 / 48.5 % at its best β = 0.3. η does not matter to the shipped network; it is kept for networks trained with
# the paper's objective, where it weighs L_consistency.
DIFFUSION_BETA = 0.05
DIFFUSION_ETA = 1.0
DIFFUSION_ALPHA = 1.5
GUIDANCE_NETWORK = CHECKPOINTS / "toy-guidance"
PAPER_GUIDANCE_NETWORK = CHECKPOINTS / "toy-guidance-paper"  # the same network class, trained with the paper's loss
PAPER_DIFFUSION_BETA = 0.3  # that network's best β on the same validation split (α = 1)


def load_guidance_network(folder: str | Path | None = None):
    """The guidance network from ``folder`` (default: the shipped ``checkpoints/toy-guidance``), or a ValueError
    that says how to get one."""
    from .guidance_network import GuidanceNetwork

    folder = Path(folder) if folder is not None else GUIDANCE_NETWORK
    try:
        return GuidanceNetwork.from_pretrained(folder)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot load the guidance network from {folder}: {e}. Train one with "
                         "`python -m training guidance` or pass --network FOLDER") from e
