"""Win rates, Bradley–Terry ratings and reward agreement against closed forms and synthetic votes of known
strength (all seeded)."""

import math

import numpy as np
import pytest

from studio.ratings import (bradley_terry, bradley_terry_strengths, expected_score, left_scores,
                            reward_agreement, win_rate)


def _votes(pairs):
    """(left, right, choice, count) tuples → vote records."""
    return [dict(left_label=a, right_label=b, choice=c) for a, b, c, n in pairs for _ in range(n)]


def _synthetic(true: dict, n: int, seed: int):
    """Votes drawn from the Bradley–Terry model itself: P(a beats b) = 1 / (1 + 10^((R_b − R_a) / 400))."""
    rng, labels, votes = np.random.default_rng(seed), list(true), []
    for _ in range(n):
        i, j = rng.choice(len(labels), 2, replace=False)
        a, b = labels[i], labels[j]
        choice = "left" if rng.random() < expected_score(true[a], true[b]) else "right"
        votes.append(dict(left_label=a, right_label=b, choice=choice))
    return votes


def test_win_rate_counts_ties_half_from_either_side():
    votes = _votes([("A", "B", "left", 6), ("B", "A", "left", 2), ("B", "A", "right", 3), ("A", "B", "tie", 4),
                    ("A", "B", "both_bad", 5), ("A", "C", "left", 9)])
    # A won 6 + 3 = 9, lost 2, tied 4, both-bad 5 of 20 votes between A and B
    assert win_rate(votes, "A", "B", n_boot=0).rate == pytest.approx((9 + 0.5 * 9) / 20)
    assert win_rate(votes, "A", "B", both_bad="exclude", n_boot=0).rate == pytest.approx((9 + 2) / 15)
    assert win_rate(votes, "B", "A", n_boot=0).rate == pytest.approx(1 - (9 + 4.5) / 20)
    assert win_rate(votes, "A", "B").n == 20
    never = win_rate(votes, "B", "C")
    assert never.n == 0 and math.isnan(never.rate)
    with pytest.raises(ValueError, match="unknown vote choice"):
        win_rate(votes + [dict(left_label="A", right_label="B", choice="bad")], "A", "B")


def test_win_rate_interval_has_the_binomial_width_and_covers_the_truth_95_percent_of_the_time():
    p, n, hits = 0.7, 120, 0
    rng = np.random.default_rng(0)
    for trial in range(200):
        wins = rng.random(n) < p
        votes = [dict(left_label="A", right_label="B", choice="left" if w else "right") for w in wins]
        result = win_rate(votes, "A", "B", n_boot=400, rng=trial)
        hits += result.low <= p <= result.high
        if trial == 0:
            width = result.high - result.low
            assert width == pytest.approx(2 * 1.96 * math.sqrt(p * (1 - p) / n), rel=0.2)
    assert 0.90 <= hits / 200 <= 0.99


def test_bradley_terry_two_configurations_closed_form():
    """With two configurations the MLE is p_A / p_B = W_A / W_B (points, ties half, plus prior/2 virtual each)."""
    votes = _votes([("A", "B", "left", 30), ("B", "A", "left", 10), ("A", "B", "tie", 4)])
    for prior in (0.0, 0.5, 4.0):
        table = bradley_terry(votes, prior=prior, n_boot=0).set_index("label")
        wins_a, wins_b = 30 + 2 + prior / 2, 10 + 2 + prior / 2
        expected = 400 * math.log10(wins_a / wins_b)
        assert table.loc["A", "rating"] - table.loc["B", "rating"] == pytest.approx(expected, abs=1e-6)
        assert (table.loc["A", "rating"] + table.loc["B", "rating"]) / 2 == pytest.approx(1000)
    anchored = bradley_terry(votes, anchor="B", anchor_rating=1114, n_boot=0).set_index("label")
    assert anchored.loc["B", "rating"] == pytest.approx(1114)
    assert list(bradley_terry(votes, n_boot=0)["label"]) == ["A", "B"]  # best first


def test_bradley_terry_strengths_are_a_stationary_point_of_the_likelihood():
    rng = np.random.default_rng(1)
    wins = rng.integers(1, 30, size=(5, 5)).astype(float)
    np.fill_diagonal(wins, 0)
    p = bradley_terry_strengths(wins, prior=0.0)
    theta = np.log(p)
    n = wins + wins.T
    gradient = wins.sum(1) - (n / (1 + np.exp(theta[None, :] - theta[:, None]))).sum(1)
    assert np.abs(gradient).max() < 1e-6
    assert np.exp(theta.mean()) == pytest.approx(1.0)


TRUE = {"base": 1000.0, "β=2": 1060.0, "β=1": 1150.0, "β=0.5": 1230.0, "β=0.1": 940.0}


def test_bradley_terry_recovers_known_strengths():
    table = bradley_terry(_synthetic(TRUE, 4000, seed=2), anchor="base", n_boot=0).set_index("label")
    for label, rating in TRUE.items():
        assert table.loc[label, "rating"] == pytest.approx(rating, abs=35)  # ~2.5 standard errors
    assert list(table.index[:2]) == ["β=0.5", "β=1"]
    assert table["votes"].sum() == 2 * 4000


def test_bradley_terry_intervals_cover_the_true_ratings():
    covered = []
    for seed in range(8):
        table = bradley_terry(_synthetic(TRUE, 2000, seed), anchor="base", n_boot=200, rng=seed).set_index("label")
        covered += [table.loc[k, "low"] <= v <= table.loc[k, "high"] for k, v in TRUE.items() if k != "base"]
    assert np.mean(covered) >= 0.85  # 95 % intervals, 32 of them


def test_a_prior_keeps_an_undefeated_configuration_finite():
    votes = _votes([("A", "B", "left", 10), ("B", "C", "left", 5)])
    table = bradley_terry(votes, n_boot=50, rng=0)
    assert np.isfinite(table[["rating", "low", "high"]].to_numpy()).all()
    assert list(table["label"]) == ["A", "B", "C"]
    assert bradley_terry([], n_boot=10).empty
    with pytest.raises(ValueError, match="anchor"):
        bradley_terry(votes, anchor="Z")


def test_both_bad_is_a_tie_unless_excluded():
    votes = _votes([("A", "B", "both_bad", 3), ("A", "B", "left", 1)])
    assert list(left_scores(votes)["score"]) == [0.5, 0.5, 0.5, 1.0]
    assert list(left_scores(votes, both_bad="exclude")["score"]) == [1.0]
    with pytest.raises(ValueError):
        left_scores(votes, both_bad="drop")


def test_reward_agreement_counts_decisive_votes_only():
    def vote(choice, left, right):
        return dict(left_label="A", right_label="B", choice=choice, left_rewards=left, right_rewards=right)

    votes = [vote("left", {"pick": 2.0, "taste": 1.0}, {"pick": 1.0, "taste": 3.0}),
             vote("right", {"pick": 2.0, "taste": 1.0}, {"pick": 5.0, "taste": 3.0}),
             vote("right", {"pick": 4.0, "taste": 2.0}, {"pick": 1.0, "taste": 2.0}),
             vote("tie", {"pick": 9.0, "taste": 0.0}, {"pick": 1.0, "taste": 9.0}),
             vote("both_bad", {"pick": 9.0}, {"pick": 1.0}),
             vote("left", {"pick": 1.0}, {"other": 1.0})]
    table = reward_agreement(votes, n_boot=200, rng=0).set_index("reward")
    assert table.loc["pick", "agreement"] == pytest.approx(2 / 3) and table.loc["pick", "n"] == 3
    assert table.loc["taste", "agreement"] == pytest.approx((0 + 1 + 0.5) / 3)
    assert 0 <= table.loc["pick", "low"] <= 2 / 3 <= table.loc["pick", "high"] <= 1
    assert "other" not in table.index
    assert reward_agreement([]).empty


def test_expected_score_is_the_elo_curve():
    assert expected_score(1000, 1000) == 0.5
    assert expected_score(1400, 1000) == pytest.approx(10 / 11)
