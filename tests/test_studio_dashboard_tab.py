"""The Dashboard tab's logic: figures and counts from the store, exports that read back, exports behind the admin
token on a public deployment, and a missing store shown as a note."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from PIL import Image

from studio.arena import Arena
from studio.dashboard_tab import TITLES, Dashboard
from studio.store import Store, StoreError
from alignment.pickapic import iter_pairs


@pytest.fixture()
def store(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'votes.sqlite'}", tmp_path / "data", client_salt="test")
    arena = Arena(store, random.Random(0))
    prompt = "a <b>red</b> star"
    for i, choice in enumerate(("left", "right", "tie", "both_bad")):
        session = store.start_session()
        image = Image.fromarray(np.full((8, 8, 3), 10 + i, np.uint8))
        guided = Image.fromarray(np.full((8, 8, 3), 200 - i, np.uint8))
        a = store.add_generation(prompt, image, model="toy-sdxl", method="baseline", config={}, seed=i,
                                 rewards={"toy-pickscore": 1.0})
        b = store.add_generation(prompt, guided, model="toy-sdxl", method="guided", config={"beta": 0.5}, seed=i,
                                 rewards={"toy-pickscore": 2.0})
        arena.vote(session, arena.pair(session, a, b).comparison_id, choice)
    yield store
    store.close()


def test_refresh_gives_every_figure_and_the_counts(store, tmp_path):
    *figures, summary = Dashboard(store, results_dir=tmp_path / "no-results").refresh()
    assert len(figures) == len(TITLES) and all(isinstance(f, go.Figure) for f in figures)
    assert "**4 votes** from 4 sessions" in summary and "8 arena generations" in summary


def test_exports_read_back(store, tmp_path, monkeypatch):
    monkeypatch.delenv("STUDIO_ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    dashboard = Dashboard(store, results_dir=tmp_path / "no-results", export_dir=tmp_path / "exports")
    page = open(dashboard.export("html")).read()
    assert page.startswith("<!DOCTYPE html>") and "&lt;b&gt;red&lt;/b&gt;" in page and "<b>red</b>" not in page
    votes = pd.read_csv(dashboard.export("csv"))
    assert sorted(votes["choice"]) == ["both_bad", "left", "right", "tie"]
    pairs = list(iter_pairs(dashboard.export("parquet")))
    assert len(pairs) == 3  # both-bad prefers neither image: left out of Pick-a-Pic
    with pytest.raises(ValueError, match="unknown export"):
        dashboard.export("xlsx")


def test_exports_need_the_admin_token_when_set_and_are_off_on_spaces_without_one(store, tmp_path, monkeypatch):
    dashboard = Dashboard(store, results_dir=tmp_path / "no-results", export_dir=tmp_path / "exports")
    monkeypatch.setenv("STUDIO_ADMIN_TOKEN", "s3cret")
    for wrong in (None, "", "s3cre", "s3cret "):
        with pytest.raises(ValueError, match="admin token"):
            dashboard.export("csv", wrong)
    assert dashboard.export("csv", "s3cret").endswith(".csv")
    monkeypatch.delenv("STUDIO_ADMIN_TOKEN")
    monkeypatch.setenv("SPACE_ID", "someone/studio")
    with pytest.raises(ValueError, match="off on this public deployment"):
        dashboard.export("csv")


def test_without_a_store_the_results_still_show(tmp_path, monkeypatch):
    monkeypatch.delenv("STUDIO_ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    (tmp_path / "pareto_toy-sd3_validation.json").write_text(
        '{"config": {"model": "toy-sd3", "split": "validation"}, "table": ['
        '{"method": "IS N=8 β=0.5", "kind": "is", "beta": 0.5, "taste": 8.0, "reward": 1.0},'
        '{"method": "IS N=8 β=1", "kind": "is", "beta": 1.0, "taste": 8.1, "reward": 0.5}]}')
    dashboard = Dashboard(None, results_dir=tmp_path, store_error="The disk is full.")
    *figures, summary = dashboard.refresh()
    assert "0 votes" in summary and "2 evaluation rows" in summary and "The disk is full." in summary
    assert len(figures[-2].data) == 3  # the β curve from the results file, in each of three panels
    with pytest.raises(StoreError, match="nothing to export"):
        dashboard.export("csv")


def test_deleting_a_sessions_votes_is_an_admin_action(store, tmp_path, monkeypatch):
    dashboard = Dashboard(store, results_dir=tmp_path / "no-results")
    sessions = sorted(store.vote_records()["session_id"])
    monkeypatch.setenv("STUDIO_ADMIN_TOKEN", "s3cret")
    with pytest.raises(ValueError, match="deletions need the admin token"):
        dashboard.delete_votes(sessions[0], "wrong")
    assert len(store.vote_records()) == 4  # nothing deleted without the token
    assert dashboard.delete_votes(sessions[0], "s3cret") == f"Deleted 1 vote of session {sessions[0]}."
    assert sorted(store.vote_records()["session_id"]) == sessions[1:]
    assert dashboard.delete_votes(sessions[0], "s3cret").startswith("Deleted 0 votes")  # twice: nothing left
    with pytest.raises(ValueError, match="unknown session"):
        dashboard.delete_votes("no-such-session", "s3cret")
    with pytest.raises(ValueError, match="session id"):
        dashboard.delete_votes("  ", "s3cret")
    monkeypatch.delenv("STUDIO_ADMIN_TOKEN")
    monkeypatch.setenv("SPACE_ID", "someone/studio")
    with pytest.raises(ValueError, match="deletions are off on this public deployment"):
        dashboard.delete_votes(sessions[1])
