"""The studio's input rules: which model, which method and knobs, which seed. The rules themselves are
``alignment.checks``' (one function per rule, its limit an argument); the studio's limits are here.

    check_seed(seed, SEED_LIMIT)                       # alignment.checks' rule, 0 .. 2**31 - 1 (the store's)
    check_config(Config.of("toy-sd3", "is", beta=0.3, n=8.0), "flow", max_n=64)   # n = 8, knobs as floats

The seed limit is the store's, not the samplers' 2**63: every image the studio makes may be voted on and stored.
"""

from __future__ import annotations

from collections.abc import Callable

from alignment.checks import check_range, number, whole_number
from alignment.sample_bank import check_n

from .configs import ESTIMATOR_KNOBS, GUIDED, KNOBS, METHODS, PARTICLE_KNOBS, Config
from .store import MAX_SEED

SEED_LIMIT = MAX_SEED + 1  # the vote store keeps seeds in a 32-bit integer column
MAX_PARTICLES = MAX_ROUNDS = 16
FLOW_BETA_RANGE = (1e-3, 1e3)  # any positive β, within what the page's slider can mean
N_NAME = "N (the bank size)"  # as the page names the knob


def check_model(model, models: tuple[str, ...]) -> str:
    if not isinstance(model, str) or model not in models:
        raise ValueError(f"unknown model {model!r:.80}; this studio offers {', '.join(models)}")
    return model


def check_config(config: Config, family: str, *, max_n: int,
                 trained_ranges: Callable[[], tuple[tuple[float, float], tuple[float, float]]] | None = None
                 ) -> Config:
    """The config with its knobs checked and normalised (floats, N and the particle counts ints); a ValueError
    says what is wrong. ``trained_ranges()`` gives the guidance network's (β range, η range): asked only for a
    guided config, after its method and knob names passed."""
    model = config.model
    if config.method not in METHODS[family]:
        raise ValueError(f"{model} is a {family} model: its methods are {', '.join(METHODS[family])}, "
                         f"not {config.method!r:.40}")
    knobs = config.config
    unknown = set(knobs) - set(KNOBS[config.method])
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)} for {config.method}")
    out = {}
    if config.method in GUIDED:
        beta_range, eta_range = trained_ranges()
        trained = " (the range the guidance network was trained for)"
        out["beta"] = check_range(knobs.get("beta", 1.0), "β", *beta_range, trained)
        out["eta"] = check_range(knobs.get("eta", 1.0), "η", *eta_range, trained)
        out["alpha"] = check_range(knobs.get("alpha", 1.0), "α (guidance strength)", 0.0, 20.0)
    if config.method == "is":
        from alignment.flow_guidance import Estimator

        out["beta"] = check_range(knobs.get("beta", 1.0), "β", *FLOW_BETA_RANGE)
        options = {k: number(knobs[k], k) for k in ESTIMATOR_KNOBS if k in knobs}
        Estimator(**options)  # a ValueError that names a bad option
        out.update(options)
        limits = {"particles": MAX_PARTICLES, "rounds": MAX_ROUNDS}
        out.update({k: whole_number(knobs[k], k, 1, limits[k]) for k in PARTICLE_KNOBS if k in knobs})
    if config.method == "fk":
        out["beta"] = check_range(knobs.get("beta", 1.0), "β", *FLOW_BETA_RANGE)
        out["particles"] = whole_number(knobs.get("particles", 8), "particles", 1, MAX_PARTICLES)
    if config.method in ("is", "bon"):
        out["n"] = check_n(knobs.get("n", 8), max_n, N_NAME)
    return Config.of(model, config.method, **out)
