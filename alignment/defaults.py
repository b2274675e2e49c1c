"""The defaults that the command line, the Python API and the studio start from: one place, chosen by the
compute-matched evaluation (``python -m evaluations.pareto``, tuned on the validation split, reported on the test
split; see ``evaluations/results/pareto_*.md``).

* Flow models: the ``"tuned"`` estimator (``TUNED``) at ``FLOW_BETA`` with a bank of ``FLOW_N``; the paper's exact
  estimator stays available as ``"paper"``.
* Diffusion models: the guidance network at ``DIFFUSION_BETA``, ``DIFFUSION_ETA``, strength ``DIFFUSION_ALPHA``.
"""

from __future__ import annotations

from pathlib import Path

from .flow_guidance import PAPER, Estimator
from .presets import CHECKPOINTS

# Flow: likelihood temperature and guidance scale keep the correction alive past the first steps (the paper's
# estimator collapses to ESS ≈ 1 by the third of six steps).
TUNED = Estimator(tau=16.0, scale=3.0)
ESTIMATORS: dict[str, Estimator] = {"paper": PAPER, "tuned": TUNED}  # named settings of the one estimator
FLOW_ESTIMATOR = "tuned"
FLOW_BETA = 0.3
FLOW_N = 8

# Diffusion: the guidance network's β, η and α.
DIFFUSION_BETA = 0.1
DIFFUSION_ETA = 1.0
DIFFUSION_ALPHA = 1.0
GUIDANCE_NETWORK = CHECKPOINTS / "toy-guidance"


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
