"""Blind side-by-side voting, as in Chatbot Arena and GenAI-Arena: two configurations answer one prompt, the sides
are swapped at random, the person votes left / right / tie / both bad, and only then are the configurations
revealed. Pure logic over the store (no Gradio).

    arena = Arena(store, rng=random.Random(0))
    a, b = arena.matchup(["toy-sdxl · baseline", "toy-sdxl · guided · β=0.5"])   # which two to generate next
    pair = arena.pair(session, generation_a, generation_b)   # BlindPair: comparison id, prompt, two image files
    pair = arena.new_pair(session, prompt, side_a, side_b)   # the same for two generations not stored yet
    reveal = arena.vote(session, pair.comparison_id, "left")  # Reveal: both configurations, rewards, the choice

What reaches the browser before the vote is a :class:`BlindPair` and nothing else: a random comparison id, the
prompt, and the store's two PNG files, written from the images' pixels alone (no metadata) and named by the hash of
their content. The page serves those files as they are: no second encoding on the way out.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from .store import Store


@dataclass(frozen=True)
class BlindPair:
    """What the page may show before the vote."""

    comparison_id: str
    prompt: str
    left: Path   # the store's PNG of each side (``Image.open`` it for the pixels)
    right: Path


@dataclass(frozen=True)
class Reveal:
    """What the page shows after the vote: the choice and each side's configuration."""

    comparison_id: str
    choice: str
    left: dict   # label, model, method, config, seed, rewards, latency_s
    right: dict
    votes_left: int | None = None  # the session's, right after this vote (None when revealed later)

    @property
    def winner(self) -> str | None:
        """The chosen configuration's label; None for a tie or both bad."""
        return {"left": self.left["label"], "right": self.right["label"]}.get(self.choice)


def _public(generation: dict) -> dict:
    keys = ("label", "model", "method", "config", "seed", "rewards", "latency_s")
    return {k: generation[k] for k in keys}


class Arena:
    def __init__(self, store: Store, rng: random.Random | None = None):
        self.store = store
        self.rng = rng if rng is not None else random.SystemRandom()

    def matchup(self, configurations: list[str]) -> tuple[str, str]:
        """Two different configurations drawn uniformly, in random order: what to generate for the next pair."""
        unique = list(dict.fromkeys(configurations))
        if len(unique) < 2:
            raise ValueError("the arena needs at least two different configurations")
        a, b = self.rng.sample(unique, 2)
        return a, b

    def pair(self, session_id: str, generation_a: int, generation_b: int) -> BlindPair:
        """A new comparison of two stored generations of one prompt, sides swapped with probability 1/2. Refused
        (VoteRefused) when the session has no votes left, so no pair is shown that can't be voted on."""
        left, right = self._sides(generation_a, generation_b)
        return self._blind(self.store.show_pair(session_id, left, right))  # one transaction

    def new_pair(self, session_id: str, prompt: str, side_a: dict, side_b: dict) -> BlindPair:
        """:meth:`pair` for two generations not stored yet (``Store.add_generations``' dicts), stored with their
        comparison in one transaction: refused, nothing is stored."""
        left, right = self._sides(side_a, side_b)
        return self._blind(self.store.add_pair(session_id, prompt, left, right))

    def _sides(self, a, b) -> tuple:
        return (b, a) if self.rng.random() < 0.5 else (a, b)

    def _blind(self, shown: dict) -> BlindPair:
        return BlindPair(shown["id"], shown["left"]["prompt"], self.store.image_path(shown["left"]["image_sha256"]),
                         self.store.image_path(shown["right"]["image_sha256"]))

    def vote(self, session_id: str, comparison_id: str, choice: str) -> Reveal:
        """Record the vote (exactly once: a repeat raises VoteRefused) and reveal both configurations."""
        voted = self.store.record_vote_and_reveal(session_id, comparison_id, choice)  # one transaction
        return Reveal(comparison_id, choice, _public(voted["left"]), _public(voted["right"]), voted["votes_left"])

    def reveal(self, session_id: str, comparison_id: str) -> Reveal:
        """The configurations of a pair this session has voted on; ValueError before the vote."""
        comparison = self.store.comparison(comparison_id, generations=True)  # one read of the database
        if comparison["session_id"] != session_id:
            raise ValueError("this pair was shown to another session")
        if comparison["choice"] is None:
            raise ValueError("vote first: the configurations are revealed only after the vote")
        return Reveal(comparison_id, comparison["choice"], _public(comparison["left"]), _public(comparison["right"]))
