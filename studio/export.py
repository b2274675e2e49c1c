"""The studio's exports: the dashboard as one offline HTML file, the votes as CSV, and the votes as a Pick-a-Pic v1
parquet (``alignment.pickapic`` writes it and its ``iter_pairs`` reads it back), so people's votes can train
the next reward model or guidance network.

In the parquet, ``image_0`` is the image shown on the left and ``image_1`` the one on the right; a left vote is
labels (1, 0), right (0, 1), a tie (0.5, 0.5); **both-bad votes are left out** (they prefer neither image, and
Pick-a-Pic has no such label). ``model_*`` hold the configuration labels and ``user_id`` numbers the anonymous
sessions in order of first vote.
"""

from __future__ import annotations

from pathlib import Path

from .dashboard import RESULTS_DIR, load_results, votes_csv, write_dashboard
from .store import Store

LABELS = {"left": (1.0, 0.0), "right": (0.0, 1.0), "tie": (0.5, 0.5)}


def export_dashboard(store: Store, path: str | Path, results_dir: str | Path = RESULTS_DIR, **kwargs) -> Path:
    """The dashboard of every vote, generation and evaluation row, as one self-contained HTML file."""
    results, _ = load_results(results_dir)
    return write_dashboard(path, store.vote_records(), store.generation_records(), results, **kwargs)


def export_votes_csv(store: Store, path: str | Path) -> Path:
    return votes_csv(store.vote_records(), path)


def pickapic_rows(store: Store) -> list[dict]:
    """The votes as rows for ``alignment.pickapic.write_pickapic`` (images loaded from the store)."""
    votes = store.vote_records()
    users: dict[str, int] = {}
    rows = []
    for _, v in votes[votes["choice"].isin(list(LABELS))].iterrows():
        label_0, label_1 = LABELS[v["choice"]]
        rows.append(dict(caption=v["prompt"], image_0=store.image(v["left_image"]),
                         image_1=store.image(v["right_image"]), label_0=label_0, label_1=label_1,
                         model_0=v["left_label"], model_1=v["right_label"],
                         user_id=users.setdefault(v["session_id"], len(users))))
    return rows


def export_votes_parquet(store: Store, path: str | Path) -> Path:
    """The votes as a Pick-a-Pic v1 parquet file."""
    from alignment.pickapic import write_pickapic

    return write_pickapic(pickapic_rows(store), path)
