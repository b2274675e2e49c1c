"""Load: 50 voters at once, each in its own Gradio session, ask for pairs and vote through the page's real HTTP API
(``benchmarks.load_test``: the studio served by a process of its own on 127.0.0.1, images from a hash instead of
a sampler); then the database is read back. Every acknowledged vote is stored exactly once, nothing else is stored,
every voter gets through.

The database comes from ``load_database_url``: a SQLite file, and a fresh PostgreSQL database where
``tests/postgres.py`` provides one (skipped otherwise)."""

from __future__ import annotations

import pytest

from benchmarks.load_test import check_votes, ok, run_load

VOTERS, VOTES_EACH = 50, 2


@pytest.fixture(params=["sqlite", "postgresql"])
def load_database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'load.sqlite'}"
    try:
        return request.getfixturevalue("postgres_url")
    except pytest.FixtureLookupError:
        pytest.skip("no PostgreSQL fixture (tests/postgres.py) in this checkout")


def test_fifty_concurrent_voters_lose_and_duplicate_nothing(load_database_url, tmp_path):
    report = run_load(load_database_url, voters=VOTERS, votes_per_voter=VOTES_EACH, data_dir=tmp_path / "data",
                      timeout_s=120)
    summary = {k: report[k] for k in ("acknowledged", "stored", "lost", "duplicated", "unacknowledged_stored",
                                      "errors", "error_examples", "elapsed_s", "votes_per_s")}
    print(summary)
    assert report["voters_finished"] == VOTERS and report["errors"] == 0, summary
    assert report["acknowledged"] == report["stored"] == VOTERS * VOTES_EACH, summary
    assert report["lost"] == report["duplicated"] == report["wrong_choice"] == 0, summary
    assert report["unacknowledged_stored"] == 0, summary
    assert report["store_sessions"] == VOTERS and report["voters_with_split_sessions"] == 0
    assert report["sessions_shared_by_voters"] == 0
    assert ok(report) and report["votes_per_s"] > 0


def test_the_check_finds_lost_duplicated_and_stray_votes():
    acknowledged = {"p1": (0, "left"), "p2": (0, "tie"), "p3": (1, "right"), "p4": (1, "left")}
    stored = [("c1", "s0", "left", "p1"),                                # fine
              ("c2", "s0", "left", "p2"),                                # another choice than acknowledged
              ("c3", "s1", "right", "p3"), ("c3b", "s1", "right", "p3"),  # stored twice
              ("c5", "s0", "both_bad", "p5"),                            # sent, never acknowledged
              ("c6", "s9", "tie", "p6")]                                 # never even sent
    check = check_votes(acknowledged, stored, attempted={**acknowledged, "p5": (0, "both_bad")})
    assert check["lost"] == 1 and check["examples"]["lost"] == ["p4"]
    assert check["duplicated"] == 1 and check["wrong_choice"] == 1
    assert check["unacknowledged_stored"] == 2 and check["unattempted_stored"] == 1
    assert check["voters_with_split_sessions"] == 0 and check["sessions_shared_by_voters"] == 0
    shared = check_votes({"a": (0, "left"), "b": (1, "left")}, [("c1", "s", "left", "a"), ("c2", "s", "left", "b")])
    assert shared["sessions_shared_by_voters"] == 1
    split = check_votes({"a": (0, "left"), "b": (0, "left")}, [("c1", "s", "left", "a"), ("c2", "t", "left", "b")])
    assert split["voters_with_split_sessions"] == 1


def test_a_store_write_holds_the_sqlite_write_lock_from_its_start(tmp_path):
    """Found by the 50-voter load (one vote in 200 refused as "busy"): a transaction that began deferred read the
    comparison, another writer committed, and the vote's UPDATE then failed at once (SQLITE_BUSY_SNAPSHOT), every
    retry alike. A store write now begins IMMEDIATE: a writer that comes in the middle waits for it instead."""
    import sqlite3

    from PIL import Image
    from sqlalchemy import event

    from studio.store import Store

    path = tmp_path / "votes.sqlite"
    store = Store(f"sqlite:///{path}", tmp_path / "data", client_salt="test", backoff_s=0.001)
    session = store.start_session()
    ids = [store.add_generation("a red star", Image.new("RGB", (8, 8), colour), model="toy-sdxl", method=method,
                                config={}, seed=0, rewards={}) for colour, method in (("red", "baseline"),
                                                                                      ("blue", "guided"))]
    comparison = store.create_comparison(session, *ids)
    other = sqlite3.connect(path, timeout=0, isolation_level=None)  # another process's writer, not waiting
    meddled = []

    def meddle(_conn, _cursor, statement, *_):  # between the vote's reads and its writes
        if statement.lstrip().upper().startswith("UPDATE"):
            try:
                other.execute("INSERT INTO sessions (id, created_at, vote_count) VALUES (?, '2026-01-01', 0)",
                              (f"other-{len(meddled)}",))
                meddled.append("committed")
            except sqlite3.OperationalError as e:
                meddled.append(str(e))

    event.listen(store.engine, "before_cursor_execute", meddle)
    try:
        store.record_vote(session, comparison, "left")
    finally:
        event.remove(store.engine, "before_cursor_execute", meddle)
        other.close()
    assert meddled == ["database is locked"]  # the vote held the lock; it went through at the first try
    assert store.comparison(comparison)["choice"] == "left"
    store.close()
