"""Faults seen from the page: the vote database turns read-only or its disk fills up, or the image folder can't be
written, while the studio is up. Through the real page over HTTP (Gradio's queue protocol): the arena's pair and
vote come back as one clear sentence (nothing saved, generation still works), Explore keeps making images, and a
vote refused by a fault goes through once the fault is gone. The store-level errors are in ``test_store.py``; a
store that can't be opened at all is in ``test_studio_arena_tab.py``."""

from __future__ import annotations

import sqlite3
import uuid

import httpx
import pytest
from sqlalchemy import event
from test_studio_helpers import PROMPT, served_page, studio_engine  # noqa: F401  (fixture)

from benchmarks.load_test import Studio, run_coroutine
from studio.configs import Config
from studio.store import Store

CONFIGS = [Config.of("toy-sdxl", "baseline"), Config.of("toy-sdxl", "guided", alpha=1.0, beta=0.5, eta=1.0)]
PAIR = [None, PROMPT, "baseline vs aligned", [c.label for c in CONFIGS]]
EXPLORE = ["toy-sdxl", PROMPT, 3, 0.5, 1.0, 1.0, 8, "tuned"]
NOT_SAVED = "can't be written right now (read-only, full or unreachable); nothing was saved. Generation still works."


@pytest.fixture(scope="module")
def page(studio_engine, tmp_path_factory):
    with served_page(studio_engine, tmp_path_factory.mktemp("faults"), CONFIGS) as served:
        yield served


def call(demo, api_name: str, data: list, session: str) -> dict:
    async def once():
        async with httpx.AsyncClient(timeout=120) as client:
            studio = Studio(demo.local_url, client)
            await studio.connect()
            return await studio.call(api_name, data, session)
    return run_coroutine(once())


def read_only(store: Store):
    """Every new connection of the store refuses writes as a read-only database does; returns the undo."""
    def query_only(dbapi_connection, _record):
        dbapi_connection.execute("PRAGMA query_only=ON")

    store.engine.dispose()
    event.listen(store.engine, "connect", query_only)

    def undo():
        event.remove(store.engine, "connect", query_only)
        store.engine.dispose()
    return undo


def disk_full(store: Store):
    """Every write fails with SQLite's own disk-full error; returns the undo."""
    def full(_conn, _cursor, statement, *_):
        if statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
            raise sqlite3.OperationalError("database or disk is full")

    event.listen(store.engine, "before_cursor_execute", full)
    return lambda: event.remove(store.engine, "before_cursor_execute", full)


def images(output: dict) -> list:
    return [v for v in output["output"]["data"] if isinstance(v, dict) and v.get("url")]


@pytest.mark.parametrize("fault", [read_only, disk_full], ids=["read-only", "disk-full"])
def test_a_database_fault_is_a_sentence_in_the_arena_and_explore_keeps_working(page, fault):
    demo, store = page
    session = uuid.uuid4().hex[:11]
    assert call(demo, "arena_pair", PAIR, session)["success"]  # a pair shown while the database was fine
    votes_before = len(store.vote_records())
    undo = fault(store)
    try:
        voted = call(demo, "vote_left", [None], session)
        assert not voted["success"] and voted["output"]["error"] == "The vote database " + NOT_SAVED
        paired = call(demo, "arena_pair", PAIR, uuid.uuid4().hex[:11])
        assert not paired["success"] and paired["output"]["error"] == "The vote database " + NOT_SAVED
        explored = call(demo, "explore", EXPLORE, uuid.uuid4().hex[:11])
        assert explored["success"] and len(images(explored)) >= 2, explored
    finally:
        undo()
    assert len(store.vote_records()) == votes_before
    voted = call(demo, "vote_left", [None], session)  # the fault gone, the same vote goes through, once
    assert voted["success"] and voted["output"]["data"][4].startswith("Vote saved")
    assert len(store.vote_records()) == votes_before + 1


def test_an_image_folder_that_cant_be_written_is_a_sentence_and_explore_keeps_working(page, tmp_path):
    demo, store = page
    (tmp_path / "a-file").write_text("where the image folder should be")
    folder, store.images.folder = store.images.folder, tmp_path / "a-file" / "images"
    try:
        paired = call(demo, "arena_pair", PAIR, uuid.uuid4().hex[:11])
        assert not paired["success"]
        assert paired["output"]["error"] == ("The image couldn't be saved because the image folder can't be "
                                             "written (the system says “Not a directory”). Nothing was stored. "
                                             "Generation still works.")
        explored = call(demo, "explore", EXPLORE, uuid.uuid4().hex[:11])
        assert explored["success"] and len(images(explored)) >= 2
    finally:
        store.images.folder = folder
    assert call(demo, "arena_pair", PAIR, uuid.uuid4().hex[:11])["success"]
