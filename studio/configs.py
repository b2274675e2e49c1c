"""The ways the studio makes an image: a ``Config`` is a model, a method and its knobs; the methods of each model
family; the named flow estimator settings as knobs; and the Arena's list of configurations.

    Config.of("toy-sd3", "is", beta=0.3, n=8).label        # 'toy-sd3 · is · β=0.3 N=8'
    default_arena_configs()                                 # baseline and aligned configurations of each model
"""

from __future__ import annotations

from dataclasses import dataclass

from .settings import TOY_MODELS
from .store import LABEL_KEYS, config_label

METHODS = {"diffusion": ("baseline", "guided", "guided-paper", "bon"), "flow": ("baseline", "is", "fk", "bon")}
METHOD_NAMES = {"baseline": "Baseline", "guided": "Aligned (guidance network)",
                "guided-paper": "Aligned (guidance network, paper's loss)", "is": "Aligned (importance-sampled)",
                "fk": "Feynman–Kac steering", "bon": "Best-of-N"}
# "guided" follows the model's guidance network (trained through its sampler); "guided-paper" the same network class
# trained with the paper's objective (StudioSettings.guidance_for(model, paper=True)).
GUIDED = ("guided", "guided-paper")
# An "is" configuration names the estimator by its options; absent options are the paper's (Estimator()).
ESTIMATOR_KNOBS = ("tau", "scale", "sigma_min", "sigma_max", "damping")
PARTICLE_KNOBS = ("particles", "rounds")
KNOBS = {"baseline": (), **dict.fromkeys(GUIDED, ("beta", "eta", "alpha")),
         "is": ("beta", "n", *ESTIMATOR_KNOBS, *PARTICLE_KNOBS), "fk": ("beta", "particles"), "bon": ("n",)}


@dataclass(frozen=True)
class Config:
    """One way of making an image: model, method (baseline, guided, is, fk, bon) and its knobs (β, η, α, N, …)."""

    model: str
    method: str
    knobs: tuple[tuple[str, float], ...] = ()

    @classmethod
    def of(cls, model: str, method: str, **knobs) -> Config:
        return cls(model, method, tuple(sorted((k, v) for k, v in knobs.items())))

    @property
    def config(self) -> dict:
        return dict(self.knobs)

    @property
    def label(self) -> str:
        return config_label(self.model, self.method, self.config)

    def knob_text(self) -> str:
        """The knobs as the page's titles show them: ``β=0.5 η=1 α=1``."""
        return " ".join(f"{LABEL_KEYS[k]}={v:g}" for k, v in self.knobs)


def estimator_knobs(name: str) -> dict:
    """The knobs of a named estimator setting (``alignment.defaults.ESTIMATORS``, with its guided particles
    ``PARTICLES``): only those that differ from the paper's, so the paper's configuration stays ``{beta, n}``."""
    from alignment.defaults import ESTIMATORS, PARTICLES
    from alignment.flow_guidance import PAPER

    if name not in ESTIMATORS:
        raise ValueError(f"the estimator must be one of {', '.join(sorted(ESTIMATORS))}, not {name!r:.40}")
    chosen, paper = ESTIMATORS[name].describe(), PAPER.describe()
    knobs = {k: v for k, v in chosen.items() if v != paper[k]}
    if PARTICLES.get(name, 1) > 1:
        knobs["particles"] = PARTICLES[name]
    return knobs


def guided_method(setting: str | None) -> str:
    """The diffusion method of a named setting: ``"tuned"`` (or None) follows the model's guidance network,
    ``"paper"`` the one trained with the paper's objective."""
    if setting in (None, "tuned"):
        return "guided"
    if setting == "paper":
        return "guided-paper"
    raise ValueError(f"the estimator must be one of paper, tuned, not {setting!r:.40}")


def default_arena_configs(models: tuple[str, ...] = TOY_MODELS, settings=None) -> list[Config]:
    """Baseline and aligned configurations of each model (the arena's list); with ``settings`` (StudioSettings),
    also the guidance network trained with the paper's loss where the settings name one."""
    from alignment import defaults
    from alignment.presets import find_preset

    configs = []
    for model in models:
        preset = find_preset(model)
        family = preset.family if preset else None
        configs.append(Config.of(model, "baseline"))
        if family == "diffusion":
            configs += [Config.of(model, "guided", alpha=defaults.DIFFUSION_ALPHA, beta=defaults.DIFFUSION_BETA,
                                  eta=defaults.DIFFUSION_ETA),
                        Config.of(model, "bon", n=2)]
            if settings is not None and settings.guidance_for(model, paper=True) is not None:
                configs.append(Config.of(model, "guided-paper", beta=defaults.PAPER_DIFFUSION_BETA, eta=1.0,
                                         alpha=1.0))
        elif family == "flow":  # the default and the paper's estimator, and its peers at the same compute (N + K)
            cost = defaults.FLOW_N + defaults.FLOW_PARTICLES
            configs += [Config.of(model, "is", beta=defaults.FLOW_BETA, n=defaults.FLOW_N,
                                  **estimator_knobs(defaults.FLOW_ESTIMATOR)),
                        Config.of(model, "is", beta=defaults.FLOW_BETA, n=defaults.FLOW_N),
                        Config.of(model, "bon", n=cost),
                        Config.of(model, "fk", beta=defaults.FLOW_BETA, particles=cost)]
    return configs
