"""Faults: the process that writes votes is killed with SIGKILL in the middle of its writes, several times, at
random points; then the SQLite database passes ``PRAGMA integrity_check``, every vote that was acknowledged is in
it exactly once (with its choice), nothing is in it that was never sent, every stored generation's image file is
whole, and the store opens and takes new votes.

Two writers, both the studio's own code in a subprocess:

* the studio's HTTP server (``benchmarks.load_test.serve``: the real page, arena and store, images drawn from a
  hash), driven by voters through Gradio's queue protocol; a vote is acknowledged when the page answered "Vote
  saved". Importing gradio and the studio takes a 2-core machine ~20 s, so one subprocess imports them once and
  forks a fresh server for each round (a zygote; nothing but the main thread runs in it when it forks);
* the ``Store`` alone in a loop (session, two generations with their images, a comparison, a vote), which writes
  an acknowledgement line only after ``record_vote`` returned: cheap to start, so it is killed more often.
"""

from __future__ import annotations

import asyncio
import os
import queue
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from PIL import Image

from benchmarks.load_test import check_votes, drive, new_log, prompt_for, stored_votes
from studio.store import Store

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
       "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
HTTP_ROUNDS, STORE_ROUNDS = 3, 6

ZYGOTE = r"""
import os, signal, sys
from benchmarks import load_test
import studio.ui, alignment  # everything a server needs, imported once
database_url, data_dir = sys.argv[1:3]
signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # killed servers are reaped at once
print("ready", flush=True)
for _ in sys.stdin:
    port = load_test.free_port()
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        try:
            load_test.serve(database_url, data_dir, port=port, block=True)  # prints "serving <url>"
        finally:
            os._exit(1)
    print(f"child {pid}", flush=True)
"""

WRITER = r"""
import sys
from PIL import Image
from studio.store import Store  # the store alone: no Gradio, no models

database_url, data_dir, prompts, writer = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
store = Store(database_url, data_dir, vote_cap=10**6, client_vote_cap=10**9, client_salt="kill")
session = store.start_session("127.0.0.1")
print("ready", flush=True)
for i in range(10**6):
    prompt, choice = prompts.format(i), ("left", "right", "tie", "both_bad")[i % 4]
    colour = (writer * 40 % 256, i % 256, i // 256 % 256)  # a new image file every time
    a = store.add_generation(prompt, Image.new("RGB", (64, 64), colour), model="toy-sdxl", method="baseline",
                             config={}, seed=i, rewards={"r": 0.5})
    b = store.add_generation(prompt, Image.new("RGB", (64, 64), colour[::-1]), model="toy-sdxl", method="guided",
                             config={"beta": 0.5}, seed=i, rewards={"r": 0.7})
    comparison = store.create_comparison(session, a, b)
    print(f"try\t{prompt}\t{choice}", flush=True)
    store.record_vote(session, comparison, choice)
    print(f"ack\t{prompt}\t{choice}", flush=True)
"""


class Lines:
    """A subprocess's stdout, line by line, read by a thread (so waits can time out)."""

    def __init__(self, process: subprocess.Popen):
        self.queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, args=(process.stdout,), daemon=True).start()

    def _read(self, stream):
        for line in stream:
            self.queue.put(line.rstrip("\n"))
        self.queue.put(None)

    def next(self, timeout: float) -> str:
        line = self.queue.get(timeout=timeout)
        if line is None:
            raise EOFError("the subprocess ended")
        return line

    def until(self, prefix: str, timeout: float) -> str:
        end = time.monotonic() + timeout
        while True:
            line = self.next(max(0.1, end - time.monotonic()))
            if line.startswith(prefix):
                return line


def kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def reap(pid: int) -> None:
    """Wait until a killed server is gone (the zygote's child, not ours: poll)."""
    for _ in range(200):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)


def sqlite_path(database_url: str) -> Path:
    return Path(database_url.removeprefix("sqlite:///"))


def left_open(database_url: str) -> bool:
    """The write-ahead log is still there, not empty: the process died without closing the database (a clean close
    checkpoints and removes it)."""
    wal = sqlite_path(database_url).with_name(sqlite_path(database_url).name + "-wal")
    return wal.exists() and wal.stat().st_size > 0


def integrity(database_url: str) -> tuple[str, list]:
    connection = sqlite3.connect(sqlite_path(database_url))
    try:
        return (connection.execute("PRAGMA integrity_check").fetchone()[0],
                connection.execute("PRAGMA foreign_key_check").fetchall())
    finally:
        connection.close()


def images_whole(database_url: str, data_dir: Path) -> int:
    """Every generation's image file is there and decodes; returns how many were checked."""
    connection = sqlite3.connect(sqlite_path(database_url))
    try:
        hashes = [row[0] for row in connection.execute("SELECT image_sha256 FROM generations")]
    finally:
        connection.close()
    for sha in hashes:
        with Image.open(data_dir / "images" / sha[:2] / f"{sha}.png") as image:
            image.load()
    return len(hashes)


def takes_new_votes(database_url: str, data_dir: Path) -> None:
    store = Store(database_url, data_dir, client_salt="kill")
    try:
        session = store.start_session("127.0.0.1")
        ids = [store.add_generation("a fresh prompt after the kills", Image.new("RGB", (8, 8), colour),
                                    model="toy-sdxl", method=method, config={}, seed=0, rewards={})
               for colour, method in (("red", "baseline"), ("blue", "guided"))]
        comparison = store.create_comparison(session, *ids)
        store.record_vote(session, comparison, "tie")
        assert store.comparison(comparison)["choice"] == "tie"
    finally:
        store.close()


def test_sigkill_of_the_http_server_during_votes(tmp_path):
    database_url, data_dir = f"sqlite:///{tmp_path / 'studio.sqlite'}", tmp_path / "data"
    rng, run = random.Random(8), uuid.uuid4().hex[:8]
    server_log = tmp_path / "server.log"
    with open(server_log, "w") as stderr:
        zygote = subprocess.Popen([sys.executable, "-c", ZYGOTE, database_url, str(data_dir)], cwd=REPO, env=ENV,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True)
    lines, children, log, kills = Lines(zygote), [], new_log(), []
    try:
        lines.until("ready", 180)
        for round_ in range(HTTP_ROUNDS):
            zygote.stdin.write("fork\n")
            zygote.stdin.flush()
            pid = int(lines.until("child ", 30).split()[1])
            children.append(pid)
            url = lines.until("serving ", 60).split()[1]
            before = len(log["acknowledged"])
            voters = threading.Thread(target=asyncio.run, args=(drive(url, run, 8, 10**4, 60, log, round_ * 100),))
            voters.start()
            wanted = before + rng.randint(3, 20)
            end = time.monotonic() + 60
            while len(log["acknowledged"]) < wanted and time.monotonic() < end and voters.is_alive():
                time.sleep(0.005)
            if round_ % 2 == 0:  # while a vote is on its way (sent, not answered): into the vote's own writes
                while not set(log["attempted"]) - set(log["acknowledged"]) and time.monotonic() < end:
                    time.sleep(0.001)
                time.sleep(rng.uniform(0, 0.05))
            else:  # anywhere: pairs (images, generations, comparisons) or votes
                time.sleep(rng.uniform(0, 0.1))
            kill(pid)
            kills.append(len(log["acknowledged"]) - before)
            voters.join(60)
            reap(pid)
            assert not voters.is_alive() and kills[-1] >= 3, (kills, log["errors"][-5:],
                                                              server_log.read_text()[-2000:])
            assert left_open(database_url), "the server died with the database open (its WAL not checkpointed)"
            assert integrity(database_url) == ("ok", []), f"after kill {round_ + 1}"
    finally:
        for pid in children:
            kill(pid)
        zygote.stdin.close()
        zygote.wait(30)
    check = check_votes(log["acknowledged"], stored_votes(database_url, run), log["attempted"])
    in_flight = len(log["attempted"]) - len(log["acknowledged"])
    print(f"HTTP server killed {HTTP_ROUNDS} times; votes acknowledged per round {kills}; {check}; "
          f"in flight at the kills {in_flight}")
    assert check["acknowledged"] >= 3 * HTTP_ROUNDS
    assert check["lost"] == check["duplicated"] == check["wrong_choice"] == check["unattempted_stored"] == 0, check
    assert check["unacknowledged_stored"] <= in_flight, check  # at most the votes the kill caught in flight
    assert check["voters_with_split_sessions"] == check["sessions_shared_by_voters"] == 0, check
    assert images_whole(database_url, data_dir) >= 2 * check["stored"]
    takes_new_votes(database_url, data_dir)


def test_sigkill_of_a_store_writer_at_random_points(tmp_path):
    database_url, data_dir = f"sqlite:///{tmp_path / 'studio.sqlite'}", tmp_path / "data"
    rng, run = random.Random(8), uuid.uuid4().hex[:8]
    attempted, acknowledged, kills = {}, {}, []
    for writer in range(STORE_ROUNDS):
        prompts = prompt_for(run, writer, "{}")  # the writer fills in its round
        process = subprocess.Popen([sys.executable, "-c", WRITER, database_url, str(data_dir), prompts, str(writer)],
                                   cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines = Lines(process)
        try:
            lines.until("ready", 60)
            acks, wanted = 0, rng.randint(2, 30)
            while acks < wanted:
                kind, prompt, choice = lines.next(30).split("\t")
                (acknowledged if kind == "ack" else attempted)[prompt] = (writer, choice)
                acks += kind == "ack"
            time.sleep(rng.uniform(0, 0.03))  # somewhere in the next vote's writes
            process.send_signal(signal.SIGKILL)
            process.wait(10)
            for line in iter(lambda reader=lines: reader.queue.get(timeout=10), None):  # said before it died
                kind, prompt, choice = line.split("\t")
                (acknowledged if kind == "ack" else attempted)[prompt] = (writer, choice)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)
        assert process.returncode == -signal.SIGKILL, process.stderr.read()[-2000:]
        kills.append(sum(1 for w, _ in acknowledged.values() if w == writer))
        assert left_open(database_url), "the writer died with the database open (its WAL not checkpointed)"
        assert integrity(database_url) == ("ok", []), f"after kill {writer + 1}"
    attempted.update(acknowledged)
    check = check_votes(acknowledged, stored_votes(database_url, run), attempted)
    print(f"store writer killed {STORE_ROUNDS} times; votes acknowledged per writer {kills}; {check}")
    assert check["lost"] == check["duplicated"] == check["wrong_choice"] == check["unattempted_stored"] == 0, check
    assert check["unacknowledged_stored"] <= STORE_ROUNDS, check  # one vote in flight per kill at most
    assert check["voters_with_split_sessions"] == check["sessions_shared_by_voters"] == 0, check
    assert images_whole(database_url, data_dir) >= 2 * check["stored"]
    takes_new_votes(database_url, data_dir)
