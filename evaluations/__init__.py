"""Evaluation: base-model quality, benchmarks, and the toy world's taste as a reward (registered on import)."""

from . import toy_taste_reward  # noqa: F401  (registers "toy-taste")
