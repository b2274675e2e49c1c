"""Win rates, Bradley–Terry ratings and reward-vs-human agreement from blind votes, with bootstrap intervals.

Every function takes vote records (``studio.vote_records``: a DataFrame or list of dicts with at least
``left_label, right_label, choice``, and ``left_rewards, right_rewards`` for agreement). A vote scores 1 for the
chosen side, 0 for the other, and ½ each for a tie. **Both bad counts as a tie** (as Chatbot Arena's
"tie (bothbad)"): neither configuration was preferred. ``both_bad="exclude"`` drops those votes instead.

Intervals are percentile bootstraps over votes (resample the votes with replacement, recompute, take the 2.5 % and
97.5 % quantiles), as Chatbot Arena reports them. ``rng`` is a ``numpy.random.Generator`` or a seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

SCALE, BASE, INIT_RATING = 400.0, 10.0, 1000.0  # Elo-like scale: R = INIT + 400·log10(p / p_anchor)
_SCORE = {"left": 1.0, "right": 0.0, "tie": 0.5, "both_bad": 0.5}


def _frame(votes) -> pd.DataFrame:
    return votes if isinstance(votes, pd.DataFrame) else pd.DataFrame(list(votes))


def _rng(rng) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def left_scores(votes, both_bad: str = "tie") -> pd.DataFrame:
    """Columns ``left, right, score`` (score = 1 left won, 0 right won, ½ tie) for the votes that count."""
    if both_bad not in ("tie", "exclude"):
        raise ValueError("both_bad must be 'tie' or 'exclude'")
    frame = _frame(votes)
    if frame.empty:
        return pd.DataFrame({"left": [], "right": [], "score": []})
    unknown = set(frame["choice"]) - set(_SCORE)
    if unknown:
        raise ValueError(f"unknown vote choice(s): {sorted(map(str, unknown))}")
    if both_bad == "exclude":
        frame = frame[frame["choice"] != "both_bad"]
    return pd.DataFrame({"left": frame["left_label"].to_numpy(), "right": frame["right_label"].to_numpy(),
                         "score": frame["choice"].map(_SCORE).to_numpy(dtype=float)})


def _mean_interval(x: np.ndarray, n_boot: int, rng) -> tuple[float, float]:
    """Percentile bootstrap 95 % interval of the mean of ``x`` (NaN with n_boot = 0)."""
    if n_boot <= 0:
        return float("nan"), float("nan")
    means = x[_rng(rng).integers(0, len(x), size=(n_boot, len(x)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


# -- win rate ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WinRate:
    a: str
    b: str
    rate: float   # (wins of a + ½ ties) / votes between a and b
    low: float    # bootstrap 95 % interval
    high: float
    n: int        # votes between a and b


def win_rate(votes, a: str, b: str, *, both_bad: str = "tie", n_boot: int = 1000, rng=None) -> WinRate:
    """How often ``a`` beats ``b`` in the votes between them, whichever side each was shown on:
    ``rate = (W_a + T/2) / n``. NaN (and n = 0) when they never met."""
    s = left_scores(votes, both_bad)
    a_left = (s["left"] == a) & (s["right"] == b)
    a_right = (s["left"] == b) & (s["right"] == a)
    x = np.concatenate([s.loc[a_left, "score"].to_numpy(), 1.0 - s.loc[a_right, "score"].to_numpy()])
    if len(x) == 0:
        return WinRate(a, b, float("nan"), float("nan"), float("nan"), 0)
    return WinRate(a, b, float(x.mean()), *_mean_interval(x, n_boot, rng), len(x))


# -- Bradley–Terry ----------------------------------------------------------------------------------------------

def _win_matrix(left: np.ndarray, right: np.ndarray, score: np.ndarray, k: int) -> np.ndarray:
    """W[i, j] = points of i against j (a win is 1, a tie ½ to each)."""
    w = np.bincount(left * k + right, weights=score, minlength=k * k)
    w += np.bincount(right * k + left, weights=1.0 - score, minlength=k * k)
    return w.reshape(k, k)


def bradley_terry_strengths(wins: np.ndarray, prior: float = 0.5, tol: float = 1e-10,
                            max_iter: int = 100_000) -> np.ndarray:
    """Maximum-likelihood Bradley–Terry strengths ``p`` (geometric mean 1) from a points matrix ``W``:
    ``P(i beats j) = p_i / (p_i + p_j)``, log-likelihood ``Σ_ij W_ij log(p_i / (p_i + p_j))``.

    Minorise–maximise iteration (Hunter 2004): ``p_i ← Σ_j W_ij / Σ_j N_ij / (p_i + p_j)``, ``N = W + Wᵀ``.
    ``prior`` adds that many virtual tied games between every two configurations (½ point each way): it keeps
    the estimate finite for an undefeated or winless configuration and for configurations that never met;
    ``prior=0`` is the plain MLE (which then may not exist).
    """
    k = len(wins)
    w = np.asarray(wins, dtype=float) + (prior / 2.0) * (1.0 - np.eye(k))
    n = w + w.T
    p = np.ones(k)
    for _ in range(max_iter):
        denominator = (n / (p[:, None] + p[None, :])).sum(axis=1)
        new = w.sum(axis=1) / denominator
        new /= np.exp(np.mean(np.log(new)))
        if np.max(np.abs(np.log(new) - np.log(p))) < tol:
            return new
        p = new
    return p


def _ratings_from_strengths(p: np.ndarray, anchor_index: int | None, anchor_rating: float) -> np.ndarray:
    log_p = np.log(p) / np.log(BASE)
    reference = log_p[anchor_index] if anchor_index is not None else log_p.mean()
    return anchor_rating + SCALE * (log_p - reference)


def bradley_terry(votes, *, both_bad: str = "tie", prior: float = 0.5, anchor: str | None = None,
                  anchor_rating: float = INIT_RATING, n_boot: int = 1000, rng=None) -> pd.DataFrame:
    """Bradley–Terry ratings of configurations on Chatbot Arena's Elo-like scale,
    ``R_i = anchor_rating + 400 · log10(p_i / p_anchor)``, so ``P(i beats j) = 1 / (1 + 10^((R_j − R_i) / 400))``.
    ``anchor`` (a label) is pinned at ``anchor_rating``; without one, the mean rating is ``anchor_rating``.

    Returns one row per configuration, best first: ``label, rating, low, high, votes`` (low/high: bootstrap 95 %).
    """
    s = left_scores(votes, both_bad)
    labels = sorted(set(s["left"]) | set(s["right"]))
    columns = ["label", "rating", "low", "high", "votes"]
    if not labels:
        return pd.DataFrame(columns=columns)
    if anchor is not None and anchor not in labels:
        raise ValueError(f"the anchor {anchor!r} has no votes")
    index = {label: i for i, label in enumerate(labels)}
    left, right = s["left"].map(index).to_numpy(), s["right"].map(index).to_numpy()
    score, k = s["score"].to_numpy(), len(labels)
    anchor_index = index.get(anchor) if anchor is not None else None

    def fit(rows) -> np.ndarray:
        p = bradley_terry_strengths(_win_matrix(left[rows], right[rows], score[rows], k), prior)
        return _ratings_from_strengths(p, anchor_index, anchor_rating)

    rating = fit(np.arange(len(s)))
    generator = _rng(rng)
    boots = np.array([fit(generator.integers(0, len(s), len(s))) for _ in range(n_boot)]).reshape(n_boot, k)
    low, high = np.percentile(boots, [2.5, 97.5], axis=0) if n_boot else np.full((2, k), np.nan)
    games = np.bincount(left, minlength=k) + np.bincount(right, minlength=k)
    table = pd.DataFrame({"label": labels, "rating": rating, "low": low, "high": high, "votes": games})
    return table.sort_values("rating", ascending=False, ignore_index=True)


def expected_score(rating_a: float, rating_b: float) -> float:
    """P(a beats b) on the Elo-like scale: ``1 / (1 + 10^((R_b − R_a) / 400))``."""
    return 1.0 / (1.0 + BASE ** ((rating_b - rating_a) / SCALE))


# -- reward models against people -------------------------------------------------------------------------------

def reward_agreement(votes, *, n_boot: int = 1000, rng=None) -> pd.DataFrame:
    """For each reward model scored on both sides: the fraction of decisive votes (left or right; ties and both bad
    carry no preference) where the reward is higher for the chosen image (an exact reward tie counts ½).

    Returns ``reward, agreement, low, high, n`` (low/high: bootstrap 95 %), one row per reward name.
    """
    frame = _frame(votes)
    columns = ["reward", "agreement", "low", "high", "n"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    decisive = frame[frame["choice"].isin(["left", "right"])]
    names = sorted({name for r in decisive["left_rewards"] for name in r} &
                   {name for r in decisive["right_rewards"] for name in r})
    generator, rows = _rng(rng), []
    for name in names:
        agree = []
        for choice, lr, rr in zip(decisive["choice"], decisive["left_rewards"], decisive["right_rewards"]):
            if name in lr and name in rr:
                chosen, other = (lr[name], rr[name]) if choice == "left" else (rr[name], lr[name])
                agree.append(1.0 if chosen > other else 0.5 if chosen == other else 0.0)
        x = np.asarray(agree)
        low, high = _mean_interval(x, n_boot, generator)
        rows.append(dict(reward=name, agreement=float(x.mean()), low=low, high=high, n=len(x)))
    return pd.DataFrame(rows, columns=columns)
