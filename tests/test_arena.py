"""Blind A/B: sides swapped at random, nothing about the configurations before the vote, everything after it."""

import dataclasses
import hashlib
import io
import random

import numpy as np
import pytest
from PIL import Image

from studio.arena import Arena, BlindPair
from studio.schema import Generation
from studio.store import Store, VoteRefused

BASELINE, GUIDED = "toy-sdxl · baseline", "toy-sdxl · guided · β=0.5 η=1"


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'arena.sqlite'}", tmp_path / "data", vote_cap=1000, client_salt="s")
    yield s
    s.close()


def _pair_of_generations(store, prompt="a red star on a blue background"):
    baseline = store.add_generation(prompt, Image.fromarray(np.full((16, 16, 3), 30, np.uint8)), model="toy-sdxl",
                                    method="baseline", config={}, seed=7, rewards={"toy-pickscore": 0.1})
    guided = store.add_generation(prompt, Image.fromarray(np.full((16, 16, 3), 220, np.uint8)), model="toy-sdxl",
                                  method="guided", config={"beta": 0.5, "eta": 1.0}, seed=7,
                                  rewards={"toy-pickscore": 0.9})
    return baseline, guided


def test_what_the_browser_sees_before_the_vote_is_blind(store):
    arena, session = Arena(store, random.Random(0)), store.start_session()
    baseline, guided = _pair_of_generations(store)
    pair = arena.pair(session, guided, baseline)
    assert [f.name for f in dataclasses.fields(BlindPair)] == ["comparison_id", "prompt", "left", "right"]
    assert pair.prompt == "a red star on a blue background"
    assert len(pair.comparison_id) == 32 and int(pair.comparison_id, 16) >= 0  # random, not a counter
    for path in (pair.left, pair.right):
        data = path.read_bytes()
        assert path.name == f"{hashlib.sha256(data).hexdigest()}.png"  # named by its content, nothing else
        assert not any(word in data for word in (b"baseline", b"guided", b"toy-sdxl", b"beta"))
        with Image.open(path) as image:
            assert set(image.info) <= {"dpi"}  # no text chunk
    visible = pair.comparison_id + pair.prompt
    assert not any(word in visible for word in ("baseline", "guided", "toy-sdxl", "β"))
    with pytest.raises(ValueError, match="vote first"):
        arena.reveal(session, pair.comparison_id)


def test_reveal_after_the_vote_and_only_once(store):
    arena, session = Arena(store, random.Random(1)), store.start_session()
    baseline, guided = _pair_of_generations(store)
    pair = arena.pair(session, baseline, guided)
    left_is_baseline = np.asarray(Image.open(pair.left)).mean() < 128  # the baseline image is dark
    reveal = arena.vote(session, pair.comparison_id, "left")
    assert reveal.choice == "left" and reveal.winner == (BASELINE if left_is_baseline else GUIDED)
    assert {reveal.left["label"], reveal.right["label"]} == {BASELINE, GUIDED}
    guided_side = reveal.right if left_is_baseline else reveal.left
    assert guided_side["config"] == {"beta": 0.5, "eta": 1.0} and guided_side["rewards"] == {"toy-pickscore": 0.9}
    assert "image_sha256" not in guided_side
    with pytest.raises(VoteRefused, match="already voted"):
        arena.vote(session, pair.comparison_id, "right")
    assert arena.reveal(session, pair.comparison_id).choice == "left"
    assert arena.vote(session, arena.pair(session, baseline, guided).comparison_id, "tie").winner is None
    with pytest.raises(ValueError, match="another session"):
        arena.reveal(store.start_session(), pair.comparison_id)


def test_sides_are_swapped_at_random_and_the_rng_is_injectable(store):
    session = store.start_session()
    baseline, guided = _pair_of_generations(store)

    def baseline_on_left(seed, n):
        arena = Arena(store, random.Random(seed))
        return [np.asarray(Image.open(arena.pair(session, baseline, guided).left)).mean() < 128 for _ in range(n)]

    sides = baseline_on_left(0, 200)
    assert 0.4 < np.mean(sides) < 0.6
    assert baseline_on_left(5, 20) == baseline_on_left(5, 20)


def test_the_stored_comparison_keeps_the_sides_shown(store):
    arena, session = Arena(store, random.Random(3)), store.start_session()
    baseline, guided = _pair_of_generations(store)
    for _ in range(10):
        pair = arena.pair(session, baseline, guided)
        stored = store.comparison(pair.comparison_id)
        left = store.image(store.generation(stored["left_generation_id"])["image_sha256"])
        assert np.array_equal(np.asarray(left), np.asarray(Image.open(pair.left)))


def test_matchup_draws_two_different_configurations():
    arena = Arena(store=None, rng=random.Random(0))
    draws = {arena.matchup(["a", "b", "c", "a"]) for _ in range(200)}
    assert all(x != y for x, y in draws) and len(draws) == 6  # every ordered pair of three
    with pytest.raises(ValueError, match="two different"):
        arena.matchup(["a", "a"])


def test_pairs_must_share_a_prompt(store):
    arena, session = Arena(store), store.start_session()
    baseline, _ = _pair_of_generations(store)
    _, other = _pair_of_generations(store, prompt="a green cross")
    with pytest.raises(ValueError, match="same prompt"):
        arena.pair(session, baseline, other)


def test_no_pair_is_made_once_the_session_cap_is_reached(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'cap.sqlite'}", tmp_path / "data", vote_cap=1, client_salt="s")
    arena, session = Arena(store, random.Random(0)), store.start_session()
    baseline, guided = _pair_of_generations(store)
    arena.vote(session, arena.pair(session, baseline, guided).comparison_id, "right")
    with pytest.raises(VoteRefused, match="limit of 1 vote"):
        arena.pair(session, baseline, guided)
    store.close()


def _side(value: int, method: str) -> dict:
    return dict(image=Image.fromarray(np.full((16, 16, 3), value, np.uint8)), model="toy-sdxl", method=method,
                config={}, seed=3, rewards={"toy-pickscore": value / 255})


def test_a_new_pair_is_stored_with_its_generations_in_one_transaction_or_not_at_all(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'new.sqlite'}", tmp_path / "data", vote_cap=1, client_salt="s")
    arena, session = Arena(store, random.Random(2)), store.start_session()
    pair = arena.new_pair(session, "a pink ring", _side(30, "baseline"), _side(220, "guided"))
    stored = store.comparison(pair.comparison_id)
    left = store.generation(stored["left_generation_id"])
    assert left["prompt"] == pair.prompt == "a pink ring" and left["method"] in ("baseline", "guided")
    assert pair.left == store.image_path(left["image_sha256"])
    arena.vote(session, pair.comparison_id, "left")
    with store._session() as s:  # noqa: SLF001 - counting rows
        before = s.query(Generation).count()
    with pytest.raises(VoteRefused, match="limit of 1 vote"):  # refused: neither generation is stored
        arena.new_pair(session, "a pink ring", _side(40, "baseline"), _side(200, "guided"))
    with store._session() as s:  # noqa: SLF001
        assert s.query(Generation).count() == before == 2
    store.close()
