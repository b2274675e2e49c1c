"""The arena's page logic without a browser: a pair is stored blind, the vote is stored once and reveals the
configurations, the per-session cap holds, pairings choose sensible configurations, a missing store is a message."""

from __future__ import annotations

import random
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from test_studio_helpers import PROMPT, REWARD, studio_engine, studio_store  # noqa: F401  (fixtures)

from studio.arena_tab import PAIRINGS, ArenaSession, PairState, client_address, reveal_markdown
from studio.configs import Config
from studio.store import StoreError, VoteRefused

BASELINE = Config.of("toy-sdxl", "baseline")
GUIDED = Config.of("toy-sdxl", "guided", alpha=1.0, beta=0.5, eta=1.0)
BON = Config.of("toy-sd3", "bon", n=4)


@pytest.fixture()
def session(studio_engine, studio_store):
    return ArenaSession(studio_engine, studio_store, [BASELINE, GUIDED, BON], rng=random.Random(0))


def test_pair_vote_reveal_and_the_database(session, studio_store):
    progress = []
    state, left, right, votes_left = session.new_pair(None, PROMPT, PAIRINGS[0], None, "203.0.113.7",
                                                      progress=lambda f, desc=None: progress.append(desc))
    assert isinstance(state, PairState) and state.session_id and state.comparison_id and not state.voted
    left, right = Image.open(left), Image.open(right)  # the store's files, served as they are
    assert left.size == right.size == (64, 64) and set(left.info) | set(right.info) <= {"dpi"} and votes_left == 3
    assert set(progress) == {"Making the pair…"}, "progress text names no configuration"
    state, reveal, votes_left = session.vote(state, "right")
    assert state.voted and votes_left == 2
    assert {reveal.left["label"], reveal.right["label"]} == {BASELINE.label, GUIDED.label}
    assert reveal.winner == reveal.right["label"] and REWARD in reveal.left["rewards"]
    shown_right = np.asarray(right)
    stored = studio_store.vote_records()
    assert list(stored["choice"]) == ["right"] and stored["right_label"][0] == reveal.right["label"]
    assert np.array_equal(np.asarray(studio_store.image(stored["right_image"][0])), shown_right)
    generation = studio_store.generation(int(stored["right_generation_id"][0]))
    assert generation["config"]["steps"] == 4 and generation["seed"] >= 0 and generation["latency_s"] >= 0
    markdown = reveal_markdown(reveal)
    assert "You chose" in markdown and "Left" in markdown and "toy" in markdown
    with pytest.raises(VoteRefused, match="already voted"):
        session.vote(state, "left")
    assert len(studio_store.vote_records()) == 1


def test_the_session_cap_stops_new_pairs(session):
    state = None
    for _ in range(3):
        state, *_ = session.new_pair(state, PROMPT, PAIRINGS[0], None)
        state, _, _ = session.vote(state, "tie")
    with pytest.raises(VoteRefused, match="limit of 3 votes"):
        session.new_pair(state, PROMPT, PAIRINGS[0], None)


def test_pairings(session):
    for _ in range(5):
        a, b = session.choose(PAIRINGS[0], None)
        assert (a.method, b.method) == ("baseline", "guided") and a.model == b.model
    seen = {frozenset((a.label, b.label)) for a, b in (session.choose(PAIRINGS[1], None) for _ in range(40))}
    assert len(seen) == 3 and all(len(pair) == 2 for pair in seen)
    assert {a.label for a in session.choose(PAIRINGS[1], [BON.label, GUIDED.label])} == {BON.label, GUIDED.label}
    with pytest.raises(ValueError, match="baseline and an aligned"):
        session.choose(PAIRINGS[0], [BON.label, GUIDED.label])
    with pytest.raises(ValueError, match="at least two"):
        session.choose(PAIRINGS[1], [BON.label])
    with pytest.raises(ValueError, match="unknown configuration"):
        session.choose(PAIRINGS[1], ["<script>"])
    with pytest.raises(ValueError, match="pairing"):
        session.choose("all of them", None)


def test_voting_before_a_pair_and_bad_choices_are_refused(session):
    with pytest.raises(ValueError, match="no pair"):
        session.vote(None, "left")
    state, *_ = session.new_pair(None, PROMPT, PAIRINGS[0], None)
    with pytest.raises(ValueError, match="choice"):
        session.vote(state, "middle")
    with pytest.raises(ValueError, match="prompt is empty"):
        session.new_pair(state, "   ", PAIRINGS[0], None)


def test_without_a_store_the_arena_says_so(studio_engine):
    session = ArenaSession(studio_engine, None, [BASELINE, GUIDED], store_error="The disk is full.")
    with pytest.raises(StoreError, match="The disk is full. Votes can't be saved right now"):
        session.new_pair(None, PROMPT, PAIRINGS[0], None)


def test_client_address(monkeypatch):
    request = SimpleNamespace(headers={"x-forwarded-for": "198.51.100.1, 10.0.0.1"},
                              client=SimpleNamespace(host="10.0.0.2"))
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.delenv("STUDIO_TRUST_PROXY", raising=False)
    assert client_address(request) == "10.0.0.2"  # a header anyone can send is not trusted by default
    monkeypatch.setenv("SPACE_ID", "someone/studio")
    assert client_address(request) == "198.51.100.1"
    assert client_address(None) is None
