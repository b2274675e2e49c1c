"""The vote store: schema on a fresh database, images once by hash and without metadata, one vote per pair,
vote caps, a locked, read-only or unreachable database turned into a clear error, bad input refused before
anything is written.

Tests that take ``store`` or ``database_url`` run twice: on a SQLite file and on a fresh PostgreSQL database
(``tests/postgres.py``; skipped without ``STUDIO_TEST_POSTGRES_URL``, failed under ``STUDIO_POSTGRES_TESTS=required``).
SQLite's own settings and failure modes are tested on SQLite only."""

import contextlib
import errno
import hashlib
import hmac
import socket
import sqlite3
import threading

import numpy as np
import pytest
from PIL import Image, PngImagePlugin
from sqlalchemy import create_engine, func, inspect, make_url, select, text
from sqlalchemy.pool import NullPool

from studio.schema import Generation, Prompt, Session, Vote
from studio.store import (Store, StoreBusy, StoreUnavailable, VoteRefused, clean_prompt, config_label,
                          default_data_dir)


def _img(value, size=16):
    return Image.fromarray(np.full((size, size, 3), value, dtype=np.uint8))


def _generation(store, value, prompt="a red star", **overrides):
    kwargs = dict(model="toy-sdxl", method="baseline", config={}, seed=0, rewards={"toy-taste": 5.0},
                  latency_s=0.1)
    kwargs.update(overrides)
    return store.add_generation(prompt, _img(value), **kwargs)


def _store(url, tmp_path, **kwargs) -> Store:
    settings = dict(vote_cap=3, client_vote_cap=5, client_salt="test-salt")
    settings.update(kwargs)
    return Store(url, tmp_path / "data", **settings)


@pytest.fixture
def store(database_url, tmp_path):
    s = _store(database_url, tmp_path)
    yield s
    s.close()


@pytest.fixture
def sqlite_store(tmp_path):
    s = _store(f"sqlite:///{tmp_path / 'votes.sqlite'}", tmp_path)
    yield s
    s.close()


def _count(store, model) -> int:
    with store.engine.connect() as c:
        return c.scalar(select(func.count()).select_from(model))


def _pair(store, session):
    a = _generation(store, 10)
    b = _generation(store, 200, method="guided", config={"beta": 0.5})
    return store.create_comparison(session, a, b)


def test_schema(store):
    assert {"sessions", "prompts", "generations", "comparisons", "votes"} <= set(inspect(store.engine).get_table_names())
    assert (store.data_dir / ".gitignore").read_text() == "*\n"  # a local data folder stays out of git


def test_sqlite_settings(sqlite_store):
    store = sqlite_store
    with store.engine.connect() as c:
        assert c.scalar(text("PRAGMA journal_mode")) == "wal"
        assert c.scalar(text("PRAGMA foreign_keys")) == 1
        assert c.scalar(text("PRAGMA busy_timeout")) == 2000


def test_settings_from_the_environment(database_url, tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("STUDIO_DATABASE_URL", database_url)
    monkeypatch.setenv("STUDIO_VOTE_CAP", "7")
    assert default_data_dir() == tmp_path / "d"
    s = Store()
    assert s.url == database_url and s.vote_cap == 7 and "votes" in inspect(s.engine).get_table_names()
    assert s.engine.dialect.name == database_url.split(":")[0].split("+")[0]
    assert (tmp_path / "d" / "client_salt").stat().st_mode & 0o077 == 0  # the salt is private
    s.close()


def test_images_are_stored_once_by_content_without_metadata(store, tmp_path):
    image = _img(77)
    info = PngImagePlugin.PngInfo()
    info.add_text("config", "toy-sdxl guided beta=0.5")
    image.save(tmp_path / "tagged.png", pnginfo=info)
    tagged = Image.open(tmp_path / "tagged.png")
    assert tagged.info.get("config")
    a = _generation(store, 77)
    b = store.add_generation("a red star", tagged, model="toy-sdxl", method="guided", config={"beta": 0.5}, seed=1,
                             rewards={})
    sha_a, sha_b = store.generation(a)["image_sha256"], store.generation(b)["image_sha256"]
    assert sha_a == sha_b
    files = list(store.images.folder.rglob("*"))
    assert [f.name for f in files if f.is_file()] == [f"{sha_a}.png"]  # one file, no temporary leftovers
    data = store.images.path(sha_a).read_bytes()
    assert hashlib.sha256(data).hexdigest() == sha_a
    assert not any(chunk in data for chunk in (b"tEXt", b"iTXt", b"zTXt", b"eXIf", b"iCCP"))
    back = store.image(sha_a)
    assert back.info == {} and np.array_equal(np.asarray(back), np.asarray(image))
    with pytest.raises(ValueError, match="not an image hash"):
        store.image("../../etc/passwd")


def test_generation_is_stored_with_its_full_config(store):
    gid = store.add_generation("  a red\tstar\x00 ", _img(5), model="toy-sd3", method="flow-guided",
                               config={"beta": 0.25, "n": 16, "steps": np.int64(4)}, seed=3,
                               rewards={"pickscore": np.float32(21.5)}, latency_s=1.5)
    row = store.generation(gid)
    assert row["prompt"] == "a red star" and row["seed"] == 3 and row["latency_s"] == 1.5
    assert row["config"] == {"beta": 0.25, "n": 16, "steps": 4} and row["rewards"] == {"pickscore": 21.5}
    assert row["label"] == "toy-sd3 · flow-guided · β=0.25 N=16"
    assert _generation(store, 6) and _count(store, Prompt) == 1  # one prompt row for the same text


@pytest.mark.parametrize("overrides,match", [
    (dict(prompt=""), "empty"), (dict(prompt="x" * 2001), "2001 characters"), (dict(prompt=None), "text"),
    (dict(rewards={"r": float("nan")}), "finite"), (dict(rewards={"r": "high"}), "number"),
    (dict(rewards=[1.0]), "dict"), (dict(config={"beta": float("inf")}), "finite"),
    (dict(config={"beta": object()}), "JSON"), (dict(seed=-1), "seed"), (dict(seed=2**31), "seed"),
    (dict(seed=1.5), "seed"), (dict(latency_s=float("nan")), "latency"), (dict(model=""), "model"),
    (dict(model="toy\nsdxl"), "model"), (dict(label="x" * 201), "label"),
])
def test_bad_generations_are_refused_and_nothing_is_written(store, overrides, match):
    with pytest.raises(ValueError, match=match):
        _generation(store, 1, **overrides)
    assert _count(store, Generation) == 0 and _count(store, Prompt) == 0


def test_not_an_image_is_refused(store):
    with pytest.raises(ValueError, match="PIL image"):
        store.add_generation("a red star", np.zeros((8, 8, 3)), model="m", method="baseline", config={}, seed=0,
                             rewards={})


def test_prompt_rule_matches_the_samplers():
    from alignment.sampling import check_prompt

    for prompt in ["a red star", "  a\tred\n\nstar ", "a\x00red\x1bstar", "<script>alert(1)</script>",
                   "'; DROP TABLE votes; --", "étoile rouge ☆", "x" * 2000]:
        assert clean_prompt(prompt) == check_prompt(prompt)
    for prompt in ["", " \n\t", "\x00\x01", "x" * 2001]:
        with pytest.raises(ValueError):
            check_prompt(prompt)
        with pytest.raises(ValueError):
            clean_prompt(prompt)


def test_sql_like_prompt_is_stored_as_text(store):
    prompt = "'; DROP TABLE votes; --"
    gid = _generation(store, 3, prompt=prompt)
    assert store.generation(gid)["prompt"] == prompt and _count(store, Vote) == 0


def test_a_vote_counts_once(store):
    session = store.start_session()
    comparison = _pair(store, session)
    store.record_vote(session, comparison, "left")
    with pytest.raises(VoteRefused, match="already voted"):
        store.record_vote(session, comparison, "left")
    with pytest.raises(VoteRefused, match="already voted"):
        store.record_vote(session, comparison, "right")
    assert _count(store, Vote) == 1 and store.comparison(comparison)["choice"] == "left"
    assert store.votes_left(session) == 2


def test_an_admin_deletes_one_sessions_votes_and_its_cap_still_counts_them(store):
    spammer, other = store.start_session(), store.start_session()
    for session, choice in ((spammer, "left"), (spammer, "right"), (other, "tie")):
        store.record_vote(session, _pair(store, session), choice)
    assert store.delete_votes(spammer) == 2
    assert _count(store, Vote) == 1 and store.votes_left(spammer) == 1  # the cap (3) still counts both
    assert store.delete_votes(spammer) == 0
    for bad in ("no-such-session", "x\x00y", 12):
        with pytest.raises(ValueError, match="unknown session"):
            store.delete_votes(bad)


def test_a_double_click_from_two_threads_stores_one_vote(store):
    session = store.start_session()
    comparison = _pair(store, session)
    outcomes, barrier = [], threading.Barrier(4)

    def click():
        barrier.wait()
        try:
            store.record_vote(session, comparison, "tie")
            outcomes.append("stored")
        except VoteRefused:
            outcomes.append("refused")

    threads = [threading.Thread(target=click) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["refused"] * 3 + ["stored"]
    assert _count(store, Vote) == 1 and store.votes_left(session) == 2


def test_vote_caps_per_session_and_per_client(store):
    session = store.start_session("198.51.100.4")
    for _ in range(3):
        store.record_vote(session, _pair(store, session), "right")
    with pytest.raises(VoteRefused, match="limit of 3 votes"):
        store.record_vote(session, _pair(store, session), "right")
    assert store.votes_left(session) == 0
    second = store.start_session("198.51.100.4")  # same client, new session: the client cap (5) still counts
    for _ in range(2):
        store.record_vote(second, _pair(store, second), "left")
    with pytest.raises(VoteRefused, match="connection has reached its limit of 5"):
        store.record_vote(second, _pair(store, second), "left")
    assert _count(store, Vote) == 5
    other = store.start_session("203.0.113.9")
    store.record_vote(other, _pair(store, other), "left")


def test_the_vote_count_without_update_returning_counts_and_caps_the_same(store, monkeypatch):
    # a database without UPDATE … RETURNING (SQLite before 3.35) reads the new count with a second query
    monkeypatch.setattr(store.engine.dialect, "update_returning", False)
    session = store.start_session()
    assert [store.record_vote(session, _pair(store, session), "left") for _ in range(3)] == [2, 1, 0]
    with pytest.raises(VoteRefused, match="limit of 3 votes"):
        store.record_vote(session, _pair(store, session), "left")
    assert _count(store, Vote) == 3


def test_vote_records_read_back_the_same_on_every_database(store):
    session = store.start_session("198.51.100.4")
    comparison = _pair(store, session)
    store.record_vote(session, comparison, "both_bad")
    votes, generations = store.vote_records(), store.generation_records()
    assert len(votes) == 1 and len(generations) == 2
    vote = votes.iloc[0]
    assert vote["choice"] == "both_bad" and vote["comparison_id"] == comparison and vote["prompt"] == "a red star"
    assert vote["right_config"] == {"beta": 0.5} and vote["left_rewards"] == {"toy-taste": 5.0}
    assert str(votes["voted_at"].dt.tz) == "UTC" and str(generations["created_at"].dt.tz) == "UTC"
    assert list(generations["latency_s"]) == [0.1, 0.1] and list(generations["seed"]) == [0, 0]


def test_client_address_is_kept_only_as_a_salted_hash(store, tmp_path):
    store.start_session("198.51.100.4")
    with store.engine.connect() as c:
        stored = c.scalar(text("SELECT client_hash FROM sessions"))
    assert stored == hmac.new(b"test-salt", b"198.51.100.4", hashlib.sha256).hexdigest()
    assert stored != hashlib.sha256(b"198.51.100.4").hexdigest()
    store.close()
    if store.engine.dialect.name != "sqlite":  # the server's files are not ours to read
        return
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("votes.sqlite*"))
    assert b"198.51.100.4" not in raw


def test_votes_are_refused_for_other_sessions_unknown_pairs_and_bad_choices(store):
    mine, theirs = store.start_session(), store.start_session()
    comparison = _pair(store, mine)
    with pytest.raises(VoteRefused, match="another session"):
        store.record_vote(theirs, comparison, "left")
    with pytest.raises(ValueError, match="unknown comparison"):
        store.record_vote(mine, "0" * 32, "left")
    for choice in ["LEFT", "both bad", "", None, "left; DROP TABLE votes"]:
        with pytest.raises(ValueError, match="choice must be one of"):
            store.record_vote(mine, comparison, choice)
    assert _count(store, Vote) == 0 and store.votes_left(mine) == 3


@pytest.mark.parametrize("bad_id", ["", "a\x00b", "z" * 65, "ab; DROP TABLE votes", 7, 2**40, None, True, 1.5])
def test_ids_that_name_no_row_are_unknown_on_every_database(store, bad_id):
    session = store.start_session()
    comparison, generation = _pair(store, session), _generation(store, 3)
    with pytest.raises(ValueError, match="unknown session"):
        store.votes_left(bad_id)
    with pytest.raises(ValueError, match="unknown session"):
        store.create_comparison(bad_id, generation, generation - 1)
    with pytest.raises(ValueError, match="unknown comparison"):
        store.record_vote(session, bad_id, "left")
    with pytest.raises(ValueError, match="unknown comparison"):
        store.comparison(bad_id)
    if bad_id not in (7, True):  # those two may name real generations (True == 1)
        with pytest.raises(ValueError, match="unknown generation"):
            store.generation(bad_id)
        with pytest.raises(ValueError, match="unknown generation"):
            store.create_comparison(session, generation, bad_id)
    assert store.comparison(comparison)["choice"] is None and _count(store, Vote) == 0


def test_comparisons_need_two_generations_of_one_prompt(store):
    session = store.start_session()
    a, b = _generation(store, 1), _generation(store, 2, prompt="a blue ring")
    with pytest.raises(ValueError, match="same prompt"):
        store.create_comparison(session, a, b)
    with pytest.raises(ValueError, match="two different"):
        store.create_comparison(session, a, a)
    with pytest.raises(ValueError, match="unknown generation"):
        store.create_comparison(session, a, 999)
    with pytest.raises(ValueError, match="unknown session"):
        store.create_comparison("nope", a, _generation(store, 3))


@contextlib.contextmanager
def _write_lock(url):
    """Another process holds the database's write lock (SQLite: BEGIN IMMEDIATE; PostgreSQL: the vote tables
    locked against writers, readers still let through)."""
    if url.startswith("sqlite"):
        holder = sqlite3.connect(make_url(url).database, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()
    else:
        engine = create_engine(url, poolclass=NullPool)
        try:
            with engine.connect() as holder:
                holder.execute(text("LOCK TABLE sessions, votes IN EXCLUSIVE MODE"))
                yield
                holder.rollback()
        finally:
            engine.dispose()


def test_a_locked_database_is_retried_with_backoff_then_reported(database_url, tmp_path):
    waits = []
    store = Store(database_url, tmp_path / "data", vote_cap=3, busy_timeout_s=0.05, retries=3, backoff_s=0.01,
                  sleep=waits.append)
    session = store.start_session()
    comparison = _pair(store, session)
    with _write_lock(database_url):
        with pytest.raises(StoreBusy, match="busy.*nothing was saved"):
            store.record_vote(session, comparison, "left")
    assert len(waits) == 3
    assert all(0.005 * 2**k <= w <= 0.015 * 2**k for k, w in enumerate(waits))  # exponential, with jitter
    assert _count(store, Vote) == 0 and store.votes_left(session) == 3
    store.record_vote(session, comparison, "left")  # the lock gone, the same vote goes through
    assert _count(store, Vote) == 1
    store.close()


def test_a_read_only_database_is_reported_clearly(database_url, tmp_path):
    Store(database_url, tmp_path / "data").close()
    if database_url.startswith("sqlite"):
        url = f"sqlite:///file:{make_url(database_url).database}?mode=ro&uri=true"
    else:  # a read-only database, as a hot standby is
        url = database_url
        engine = create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        with engine.connect() as c:
            c.execute(text(f'ALTER DATABASE "{make_url(url).database}" SET default_transaction_read_only = on'))
        engine.dispose()
    store = Store(url, tmp_path / "data")
    with pytest.raises(StoreUnavailable, match="can't be written"):
        store.start_session()
    store.close()


def test_an_unreachable_server_is_reported_clearly(tmp_path):
    pytest.importorskip("psycopg")
    with socket.socket() as s:  # a loopback port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StoreUnavailable, match="can't be written.*unreachable"):
        Store(f"postgresql+psycopg://studio@127.0.0.1:{port}/studio", tmp_path / "data")


def test_concurrent_votes_of_one_client_keep_its_cap(database_url, tmp_path):
    store = _store(database_url, tmp_path, client_vote_cap=5, retries=12)
    sessions = [store.start_session("198.51.100.4") for _ in range(9)]
    pairs = [_pair(store, session) for session in sessions]
    outcomes, barrier = [], threading.Barrier(len(sessions))

    def vote(session, comparison):
        barrier.wait()
        try:
            store.record_vote(session, comparison, "left")
            outcomes.append("stored")
        except VoteRefused as e:
            outcomes.append("refused" if "limit of 5" in str(e) else str(e))

    threads = [threading.Thread(target=vote, args=pair) for pair in zip(sessions, pairs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["refused"] * 4 + ["stored"] * 5
    assert _count(store, Vote) == 5
    with store.engine.connect() as c:
        assert c.scalar(select(func.sum(Session.vote_count))) == 5
    store.close()


def test_config_label():
    assert config_label("toy-sdxl", "baseline", {}) == "toy-sdxl · baseline"
    assert config_label("toy-sdxl", "guided", {"alpha": 1, "beta": 0.5, "eta": 2.0, "steps": 1}) == \
        "toy-sdxl · guided · β=0.5 η=2 α=1"


def test_a_full_disk_or_unwritable_folder_is_reported_clearly(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(StoreUnavailable, match="data folder .* can't be written"):
        Store(f"sqlite:///{tmp_path / 'x.sqlite'}", tmp_path / "file" / "data")
    store = Store(f"sqlite:///{tmp_path / 'full.sqlite'}", tmp_path / "data")

    def full(image):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store.images, "put", full)
    with pytest.raises(StoreUnavailable, match="No space left on device.*Generation still works"):
        _generation(store, 1)
    assert _count(store, Generation) == 0
    store.close()
