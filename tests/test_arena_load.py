"""The arena under load: a vote never waits for a pair being made, pairs are made side by side when the engine
allows it, one process's store writers queue on a lock instead of SQLite's polling busy handler, and the load
test's slow engine shows votes staying fast while generation is slow.

The page is served in this process on 127.0.0.1 over a cheap engine (images drawn from a hash,
``benchmarks.load_test``) whose ``render`` can be held at a gate, and driven through Gradio's queue protocol as the
load test's voters drive it."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from PIL import Image

from benchmarks import load_test
from benchmarks.load_test import PAIRING, Connection, Studio, run_coroutine
from studio.arena_tab import PAIR_CONCURRENCY, PAIR_GROUP
from studio.store import Store


class Gates:
    """What the engine does for a prompt with a marker in it: ``held`` images wait for ``release`` while holding
    the engine's lock (a model at work); ``together`` images wait until two of them run at once."""

    def __init__(self, engine):
        self.release, self.held = threading.Event(), threading.Semaphore(0)
        self.together = threading.Barrier(2, timeout=20)
        self.met: set[str] = set()
        plain = engine.render

        def render(config, prompt, seed, progress=None):
            if "held" in prompt:
                with engine.lock:
                    self.held.release()
                    assert self.release.wait(60), "the test never released the gate"
            elif "together" in prompt and prompt not in self.met:
                self.met.add(prompt)
                self.together.wait()  # BrokenBarrierError after 20 s when pairs are made one at a time
            return plain(config, prompt, seed, progress)

        engine.render = render


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    """(url, gates, demo) of a studio served in this process over a gated cheap engine."""
    folder = tmp_path_factory.mktemp("arena-load")
    engine = load_test.cheap_engine()
    gates = Gates(engine)
    demo, store, url = load_test.serve(f"sqlite:///{folder / 'votes.sqlite'}", folder / "data", engine=engine)
    yield url, gates, demo
    gates.release.set()
    demo.close()
    store.close()


async def _client(url: str):
    import httpx

    client = httpx.AsyncClient(timeout=60)
    page = Studio(url, client)
    await page.connect()
    return client, page


def _pair(page, session, prompt, connection):
    labels = [c.label for c in load_test.arena_configs()]
    return page.call("arena_pair", [None, prompt, PAIRING, labels], session, connection)


def test_pairs_have_their_own_concurrency_group_and_votes_skip_the_queue(studio):
    _, _, demo = studio
    fns = {fn.api_name: fn for fn in demo.fns.values() if fn.api_name}
    groups = {name: (fn.concurrency_id, fn.concurrency_limit) for name, fn in fns.items()}
    assert groups["arena_pair"] == (PAIR_GROUP, PAIR_CONCURRENCY) and PAIR_CONCURRENCY > 1
    assert groups["explore"][0] == "models" and PAIR_GROUP != "models"
    assert fns["arena_pair"].queue is not False
    assert all(fns[f"vote_{c}"].queue is False for c in load_test.CHOICES)


def test_a_vote_does_not_wait_for_pairs_being_made(studio):
    """Every slot of the pair group is taken by a pair whose model work hangs (one more pair waits in Gradio's
    queue); a vote on a pair shown before still answers at once, and the held pairs then finish."""
    url, gates, _ = studio

    async def scenario():
        client, page = await _client(url)
        try:
            voter = Connection(url, 60)
            shown = await _pair(page, "votefirst0001", "a red star, free", voter)
            assert shown["success"], shown
            held = [asyncio.create_task(_pair(page, f"heldpair{i:05d}", f"a red star, held {i}", Connection(url, 60)))
                    for i in range(PAIR_CONCURRENCY + 1)]
            # the first held pair is at work, holding the engine's lock
            assert await asyncio.to_thread(gates.held.acquire, True, 30), "no pair reached the engine"
            await asyncio.sleep(0.3)  # the other pairs take the group's slots and queue
            start = time.perf_counter()
            answer = await asyncio.wait_for(page.call("vote_left", [None], "votefirst0001", voter), 10)
            waited = time.perf_counter() - start
            still_making = not any(task.done() for task in held)
            again = await asyncio.wait_for(page.call("vote_right", [None], "votefirst0001", voter), 10)
            gates.release.set()
            made = await asyncio.wait_for(asyncio.gather(*held), 60)
            await voter.close()
            return answer, again, waited, still_making, made, page.unqueued
        finally:
            gates.release.set()
            await client.aclose()

    answer, again, waited, still_making, made, unqueued = run_coroutine(scenario())
    assert {"vote_left", "vote_right"} <= unqueued and "arena_pair" not in unqueued  # votes: one POST to run/…
    assert answer["success"] and answer["output"]["data"][4].startswith(load_test.ACK), answer
    assert again["success"] and "already voted" in again["output"]["data"][4], again  # a double click: refused
    assert still_making, "the held pairs should still have been in the making while the vote was answered"
    assert waited < 5, f"the vote waited {waited:.1f} s"
    assert all(m["success"] for m in made), [m for m in made if not m["success"]][:1]


def test_two_pairs_are_made_at_once_when_the_engine_allows(studio):
    """An engine that doesn't hold the model lock (the cheap one) makes two pairs side by side: each pair's first
    image waits until the other pair's is being made too (one at a time, both would time out)."""
    url, _, _ = studio

    async def scenario():
        client, page = await _client(url)
        try:
            return await asyncio.wait_for(asyncio.gather(
                *(_pair(page, f"together{i:05d}", f"a blue cross, together {i}", Connection(url, 60))
                  for i in range(2))), 60)
        finally:
            await client.aclose()

    made = run_coroutine(scenario())
    assert all(m["success"] for m in made), made


def test_one_process_writers_queue_without_sqlite_busy_waits(tmp_path):
    """Eight threads write at once to a store whose SQLite busy timeout is ~0 and that never retries: every write
    goes through, because this process's writers take turns on the store's lock and find SQLite's lock free."""
    store = Store(f"sqlite:///{tmp_path / 'votes.sqlite'}", tmp_path / "data", client_salt="s", busy_timeout_s=0.001,
                  retries=0)
    errors, image = [], Image.new("RGB", (8, 8), "red")

    def write(i):
        try:
            for j in range(10):
                session = store.start_session()
                a, b = store.add_generations(f"prompt {i} {j}", [
                    dict(image=image, model="toy-sdxl", method=m, config={}, seed=j, rewards={}) for m in ("a", "b")])
                shown = store.show_pair(session, a, b)
                voted = store.record_vote_and_reveal(session, shown["id"], "left")
                assert voted["choice"] == "left" and voted["votes_left"] == store.vote_cap - 1
        except Exception as e:  # noqa: BLE001 - collected and reported below
            errors.append(e)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store.close()
    assert not errors, errors[:3]


def test_the_slow_engine_load_keeps_votes_fast(tmp_path):
    """``--engine slow``: every image holds the engine's lock, so pairs are made one at a time and wait; the votes
    in between don't."""
    report = load_test.run_load(voters=4, votes_per_voter=2, engine="slow", render_s=0.25, data_dir=tmp_path / "d",
                                timeout_s=120)
    assert load_test.ok(report), {k: report[k] for k in ("errors", "error_examples", "lost", "acknowledged")}
    assert report["pair_latency"]["max_s"] >= 0.5  # at least its own two images
    assert report["vote_latency"]["p50_s"] < 0.25 < report["pair_latency"]["p50_s"], report
    assert report["server"].startswith("a process of its own") and report["repeats"][0]["ok"]
