"""Load test of the studio's vote path: many simulated voters at once, each in its own Gradio session, through the
page's real HTTP API (Gradio's queue protocol, as the browser speaks it); then the database is read back.

    python -m benchmarks.load_test --voters 50 --votes-per-voter 4 --repeat 3   # → benchmarks/results/load_test.json
    python -m benchmarks.load_test --engine slow --voters 10 --votes-per-voter 3 --out /tmp/slow.json
    python -m benchmarks.load_test --database-url postgresql+psycopg://…/studio --out /tmp/load.json
    python -m benchmarks.load_test serve --port 7861 --database-url sqlite:////tmp/load.sqlite --data-dir /tmp/d
    python -m benchmarks.load_test --url http://127.0.0.1:7861/ --database-url sqlite:////tmp/load.sqlite

Each voter asks for a pair (api ``arena_pair``), votes on it (``vote_left`` / ``vote_right`` / ``vote_tie`` /
``vote_both_bad`` in turn), and repeats. A vote counts as *acknowledged* when the server's answer says
"Vote saved" (the page says so only after the store's transaction committed). Every prompt carries the run's id,
the voter and the round, so each acknowledged vote can be found in the database by its prompt: afterwards the
votes table is read with plain SQL and every acknowledged vote must be there exactly once, with its choice; a
stored vote nobody was told about, or one stored twice, is counted too. One voter's votes must share one store
session, and no two voters may share one.

Without ``--url`` the studio is served on 127.0.0.1 (a free port) by a process of its own, as in production, over a
``Store`` at ``--database-url`` (default: a fresh SQLite file in a temporary folder); ``--in-process`` serves it in
this process instead, where the voters' event loop takes turns with the server on one interpreter's lock. The
voters speak HTTP through a lean client of their own (``Connection``): on 2 cores they share the CPU with the
server they measure. The engine is ``cheap`` by default: the real page, arena, store and HTTP
path, but each image is a 64×64 picture drawn from a hash of (configuration, prompt, seed) in microseconds
instead of a diffusion sample, because on a 2-core CPU the toy models' ~0.3 s an image (and the one model lock
every pair waits on) would measure the sampler, not the vote path. ``--engine slow`` is the cheap engine made slow
as a real one: each image holds the engine's lock for ``--render-seconds`` (default 1, so 2 s a pair, one pair at
a time), which shows that votes don't wait for generation. ``--engine toy`` uses the shipped toy models.

``--repeat N`` runs the load N times against one server (each with its own voters and prompts) and reports the
run with the median throughput, with every run's figures under ``repeats``.

The studio is imported inside the functions that serve it, so the voters' helpers (``drive``, ``check_votes``) load
without Gradio and the models. Loopback only; the count of voters and votes and the time (``--timeout``) are
bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import hashlib
import json
import os
import platform
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
CHOICES = ("left", "right", "tie", "both_bad")
PAIRING = "baseline vs aligned"
BASE_PROMPT = "a red star on a blue background"
ACK = "Vote saved"
MAX_VOTERS, MAX_VOTES_PER_VOTER, MAX_REPEAT = 500, 1000, 10
ENGINES = ("cheap", "slow", "toy")
ENGINE_NOTES = {
    "cheap": "images drawn from a hash of (configuration, prompt, seed), no sampler; the page, arena, store "
             "(PNG files, SQL transactions) and Gradio's HTTP queue are the studio's own",
    "slow": "the cheap engine, but every image holds the engine's lock for {render_s:g} s, as a model does: one "
            "pair at a time, {pair_s:g} s each",
    "toy": "the shipped toy models on the CPU: every pair samples and scores two images",
}
# Gradio sums up its queue's analytics (a pandas table of up to 10 000 past events) after every event by default:
# under 50 voters that was a tenth of the server's time. Served here with the summary made every 100 events, as the
# studio itself should be served (the variable set before ``demo.queue()``).
GRADIO_ENV = {"GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_ANALYTICS_CACHE_FREQUENCY": "100"}


# -- the studio under test ---------------------------------------------------------------------------------------

def arena_configs():
    """The two configurations the load's pairs are made of (one baseline and one aligned of one model)."""
    from studio.configs import Config

    return [Config.of("toy-sdxl", "baseline"), Config.of("toy-sdxl", "guided", alpha=1.0, beta=0.5, eta=1.0)]


def cheap_engine(render_s: float = 0.0):
    """A ``studio.engine.Engine`` whose images cost nothing: ``render`` draws a 64×64 picture from a hash of
    (configuration, prompt, seed) with a made-up reward, over resources that load nothing; everything else of the
    page is the studio's own. With ``render_s`` every image first holds the engine's lock that long, as a model's
    sampling does (the ``slow`` engine)."""
    import numpy as np
    from PIL import Image

    from studio.engine import Engine, Panel
    from studio.resources import Resources
    from studio.settings import StudioSettings

    class NoResources(Resources):
        def available(self, config):
            return None

        def pipeline(self, model):
            return None, None

    class CheapEngine(Engine):
        def render(self, config, prompt, seed, progress=None):
            start = time.perf_counter()
            if render_s:
                with self.lock:  # one image at a time, as the real engine's model work
                    time.sleep(render_s)
            digest = hashlib.sha256(f"{config.label}|{prompt}|{seed}".encode()).digest()
            rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
            pixels = np.empty((64, 64, 3), np.uint8)
            pixels[:] = rng.integers(0, 256, 3, dtype=np.uint8)  # a background colour
            y, x = rng.integers(8, 40, 2)
            pixels[y:y + 16, x:x + 16] = rng.integers(0, 256, 3, dtype=np.uint8)  # and a square
            return Panel(Image.fromarray(pixels), config.method, config, {"cheap": float(digest[8]) / 255},
                         time.perf_counter() - start)

    return CheapEngine(resources=NoResources(StudioSettings(device="cpu", models=("toy-sdxl",))))


def make_engine(kind: str, render_s: float = 1.0):
    if kind == "cheap":
        return cheap_engine()
    if kind == "slow":
        return cheap_engine(render_s)
    if kind == "toy":
        from studio.engine import Engine
        from studio.settings import StudioSettings, set_threads

        set_threads("cpu")
        engine = Engine(StudioSettings(device="cpu"))
        engine.resources.warm_up(["toy-sdxl"])
        return engine
    raise ValueError(f"--engine must be one of {', '.join(ENGINES)}, not {kind!r}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def open_store(database_url: str, data_dir: str | Path, votes_per_voter: int = 200):
    """The studio's Store for a load run: the per-client cap (every loopback voter is one client) lifted, the
    per-session cap at least the votes a voter casts."""
    from studio.store import Store

    return Store(database_url, data_dir, vote_cap=max(200, votes_per_voter), client_vote_cap=10**9,
                 client_salt="load-test")


def serve(database_url: str, data_dir: str | Path, *, engine="cheap", port: int | None = None,
          votes_per_voter: int = 200, block: bool = False, render_s: float = 1.0):
    """Build the studio page over ``engine`` (a kind of :data:`ENGINES`, or an Engine) and a Store at
    ``database_url`` and serve it on 127.0.0.1; returns (demo, store, url), or serves until killed when ``block``.
    The page, arena and store code are the studio's."""
    for name, value in GRADIO_ENV.items():  # loopback only: no usage reports
        os.environ.setdefault(name, value)
    from studio.ui import LAUNCH_KWARGS, QUEUE_KWARGS, build_demo

    store = open_store(database_url, data_dir, votes_per_voter)
    engine = make_engine(engine, render_s) if isinstance(engine, str) else engine
    demo = build_demo(engine=engine, store=store, arena_configs=arena_configs(), warm_up=False)
    demo.queue(**QUEUE_KWARGS).launch(  # as app.py serves it
        server_name="127.0.0.1", server_port=port or free_port(), prevent_thread_lock=True, quiet=True,
        **LAUNCH_KWARGS)
    if block:
        # Ctrl-C (SIGINT) closes the server, also where it was started as a background job (which ignores SIGINT)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print(f"serving {demo.local_url}", flush=True)
        demo.block_thread()
    return demo, store, demo.local_url


class Server:
    """``python -m benchmarks.load_test serve`` in a process of its own; ``url`` once it serves, ``stop()`` ends it.
    Its output is read all along (a full pipe would stop it) and the last lines are kept for errors."""

    def __init__(self, database_url: str, data_dir: str | Path, *, engine: str = "cheap", votes_per_voter: int = 200,
                 render_s: float = 1.0, timeout_s: float = 180.0):
        command = [sys.executable, "-m", "benchmarks.load_test", "serve", "--port", str(free_port()), "--data-dir",
                   str(data_dir), "--engine", engine, "--votes-per-voter", str(votes_per_voter), "--render-seconds",
                   str(render_s)]
        env = {**os.environ, **GRADIO_ENV, "STUDIO_DATABASE_URL": database_url,  # not on the command line
               "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
               "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(command, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        served = threading.Event()
        self.url: str | None = None

        def read():
            for line in self.process.stdout:
                self.lines = (self.lines + [line.rstrip()])[-40:]
                if self.url is None and line.startswith("serving "):
                    self.url = line.split(None, 1)[1].strip()
                    served.set()
            served.set()

        threading.Thread(target=read, name="load-test-server-output", daemon=True).start()
        if not served.wait(timeout_s) or self.url is None:
            self.stop()
            raise RuntimeError("the studio did not start: " + " | ".join(self.lines[-10:]))

    def stop(self) -> None:
        """Ctrl-C (Gradio closes its server), then a kill if it hasn't ended within 15 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# -- the voters ----------------------------------------------------------------------------------------------------

class Connection:
    """One voter's keep-alive HTTP/1.1 connection, one request at a time: what the load needs of HTTP and no more
    (no TLS, no compression, no redirects). httpx spent ~12 ms of CPU on a voter's round of four requests, a third
    of what the server spends on it, and on 2 cores the voters share the CPU with the server they measure; this
    spends ~2 ms. Any failure of the connection is a ``ConnectionError``; the connection is made
    anew for the next request."""

    IDLE_S = 2.0  # a connection left idle longer is made anew (the server closes idle ones after 5 s)

    def __init__(self, url: str, timeout_s: float):
        parts = httpx.URL(url)
        self.host, self.port = parts.host, parts.port or 80
        self.timeout_s = timeout_s
        self.reader = self.writer = None
        self.last_used = 0.0

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None

    async def _send(self, method: str, target: str, body: bytes = b"") -> tuple[int, dict[str, str]]:
        if self.writer is not None and (time.monotonic() - self.last_used > self.IDLE_S or self.reader.at_eof()):
            await self.close()
        if self.writer is None:
            self.reader, self.writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port),
                                                              self.timeout_s)
        head = (f"{method} {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nAccept: */*\r\n"
                + (f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n" if method == "POST" else "")
                + "\r\n")
        self.writer.write(head.encode() + body)
        await self.writer.drain()
        lines = (await self._read(self.reader.readuntil(b"\r\n\r\n"))).decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        return status, headers

    async def _read(self, awaitable):
        return await asyncio.wait_for(awaitable, self.timeout_s)

    async def _body(self, headers: dict[str, str]):
        """The body's pieces as they come (chunked, or of a length, or up to the end of the connection)."""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await self._read(self.reader.readuntil(b"\r\n"))).split(b";")[0], 16)
                data = await self._read(self.reader.readexactly(size + 2))
                if size == 0:
                    break
                yield data[:-2]
        elif "content-length" in headers:
            yield await self._read(self.reader.readexactly(int(headers["content-length"])))
        else:
            yield await self._read(self.reader.read())
            headers["connection"] = "close"
        if headers.get("connection", "").lower() == "close":
            await self.close()
        self.last_used = time.monotonic()

    async def post_json(self, target: str, payload) -> tuple[int, object]:
        try:
            status, headers = await self._send("POST", target, json.dumps(payload).encode())
            body = b"".join([piece async for piece in self._body(headers)])
        except (OSError, EOFError, ValueError, IndexError, asyncio.TimeoutError) as e:
            await self.close()
            raise ConnectionError(f"POST {target}: {type(e).__name__}: {e}") from e
        return status, json.loads(body) if body else None

    async def get_lines(self, target: str):
        """The response's lines (a server-sent event stream), read to its end."""
        try:
            status, headers = await self._send("GET", target)
            if status != 200:
                raise ConnectionError(f"GET {target}: HTTP {status}")
            rest = b""
            async for piece in self._body(headers):
                *lines, rest = (rest + piece).split(b"\n")
                for line in lines:
                    yield line.rstrip(b"\r").decode()
            if rest:
                yield rest.decode()
        except (OSError, EOFError, ValueError, IndexError, asyncio.TimeoutError) as e:
            await self.close()
            raise ConnectionError(f"GET {target}: {type(e).__name__}: {e}") from e


class Studio:
    """The page's HTTP API as a browser speaks it: ``/config`` for the event ids, then for each queued event
    ``queue/join`` and the session's event stream until the event completes; for the others one POST."""

    def __init__(self, url: str, client):
        self.url = url.rstrip("/") + "/"
        self.api = self.url + "gradio_api/"
        self.path = httpx.URL(self.api).path  # for a voter's own Connection
        self.client = client
        self.fn_index: dict[str, int] = {}
        self.unqueued: set[str] = set()  # events the page sends straight to ``run/<api name>`` (``queue=False``)

    async def connect(self) -> None:
        response = await self.client.get(self.url + "config")
        response.raise_for_status()
        dependencies = [d for d in response.json()["dependencies"] if d.get("api_name")]
        self.fn_index = {d["api_name"]: d["id"] for d in dependencies}
        self.unqueued = {d["api_name"] for d in dependencies if d.get("queue") is False}
        missing = {"arena_pair", *(f"vote_{c}" for c in CHOICES)} - set(self.fn_index)
        if missing:
            raise RuntimeError(f"the page at {self.url} has no API named {', '.join(sorted(missing))}")

    async def call(self, api_name: str, data: list, session: str, connection: Connection | None = None) -> dict:
        """The event's ``process_completed`` message (``success``, and ``output``: ``data`` or ``error``), through
        the voter's ``connection`` when given, else the httpx client. An event outside the queue (the votes) is one
        POST to ``run/<api name>``, as the page sends it."""
        join = {"data": data, "fn_index": self.fn_index[api_name], "session_hash": session, "event_data": None,
                "trigger_id": None}
        if api_name in self.unqueued:
            if connection is not None:
                status, body = await connection.post_json(f"{self.path}run/{api_name}", join)
            else:
                response = await self.client.post(f"{self.api}run/{api_name}", json=join)
                status, body = response.status_code, response.json()
            return {"success": status == 200, "output": body}
        if connection is not None:
            status, joined = await connection.post_json(self.path + "queue/join", join)
            if status != 200 or not isinstance(joined, dict):
                raise ConnectionError(f"{api_name}: queue/join answered HTTP {status}: {str(joined)[:200]}")
            lines = connection.get_lines(f"{self.path}queue/data?session_hash={session}")
            return await self._answer(lines, joined.get("event_id"), api_name)
        response = await self.client.post(self.api + "queue/join", json=join)
        response.raise_for_status()
        async with self.client.stream("GET", self.api + "queue/data", params={"session_hash": session}) as stream:
            return await self._answer(stream.aiter_lines(), response.json().get("event_id"), api_name)

    @staticmethod
    async def _answer(lines, event_id, api_name: str) -> dict:
        """The event's ``process_completed`` message from the queue's event stream, read to its end
        ("close_stream"), so that the connection is kept."""
        answer = None
        async for line in lines:
            if line.startswith("data:"):
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed" and message.get("event_id", event_id) == event_id:
                    answer = message
        if answer is None:
            raise ConnectionError(f"the event stream of {api_name} ended before its answer")
        return answer


def prompt_for(run: str, voter: int, round_: int) -> str:
    return f"{BASE_PROMPT}, load {run} voter {voter} round {round_}"


async def voter(studio: Studio, run: str, index: int, votes: int, labels: list[str], log: dict,
                deadline: float, connection: Connection | None = None) -> None:
    """One person: a Gradio session of its own, ``votes`` rounds of (pair, vote), over its own ``connection`` (else
    the studio's httpx client). Every attempt (a vote sent), acknowledgement and error is written to ``log``. A
    voter whose connection fails (the server is gone) stops."""
    try:
        await _vote_rounds(studio, run, index, votes, labels, log, deadline, connection)
    finally:
        if connection is not None:
            await connection.close()


async def _vote_rounds(studio, run, index, votes, labels, log, deadline, connection) -> None:
    session = f"{run}{index:04d}"
    for round_ in range(votes):
        if time.monotonic() > deadline:
            log["errors"].append(f"voter {index}: out of time before round {round_}")
            return
        prompt = prompt_for(run, index, round_)
        choice = CHOICES[(index + round_) % len(CHOICES)]
        try:
            start = time.perf_counter()
            answer = await studio.call("arena_pair", [None, prompt, PAIRING, labels], session, connection)
            log["pair_s"].append(time.perf_counter() - start)
            if not answer.get("success"):
                log["errors"].append(f"voter {index} pair {round_}: {str(answer.get('output'))[:200]}")
                continue
            log["attempted"][prompt] = (index, choice)
            start = time.perf_counter()
            answer = await studio.call(f"vote_{choice}", [None], session, connection)
            log["vote_s"].append(time.perf_counter() - start)
        except (httpx.TransportError, ConnectionError) as e:
            log["errors"].append(f"voter {index} round {round_}: the server is gone ({type(e).__name__})")
            return
        except Exception as e:  # noqa: BLE001 - a failed request is counted, and the voter goes on
            log["errors"].append(f"voter {index} round {round_}: {type(e).__name__}: {str(e)[:200]}")
            continue
        data = (answer.get("output") or {}).get("data") or []
        # the page's status line: whichever text output says the vote was saved (its place differs between versions)
        if answer.get("success") and any(isinstance(value, str) and value.startswith(ACK) for value in data):
            log["acknowledged"][prompt] = (index, choice)
        else:
            log["errors"].append(f"voter {index} vote {round_}: {str(answer.get('output'))[:200]}")
    log["finished"].add(index)


def new_log() -> dict:
    """What the voters write down: prompt → (voter, choice) of every vote sent and every one acknowledged; errors;
    pair and vote latencies; the voters that finished all their rounds."""
    return {"attempted": {}, "acknowledged": {}, "errors": [], "pair_s": [], "vote_s": [], "finished": set()}


async def drive(url: str, run: str, voters: int, votes_per_voter: int, timeout_s: float, log: dict | None = None,
                first_voter: int = 0) -> tuple[dict, float]:
    """All voters at once (numbered from ``first_voter``) against the studio at ``url``; (log, seconds)."""
    labels = [c.label for c in arena_configs()]
    log = new_log() if log is None else log
    limits = httpx.Limits(max_connections=4 * voters + 10, max_keepalive_connections=4 * voters + 10)
    async with httpx.AsyncClient(timeout=timeout_s, limits=limits) as client:
        studio = Studio(url, client)
        await studio.connect()
        start = time.perf_counter()
        deadline = time.monotonic() + timeout_s
        await asyncio.gather(*(voter(studio, run, first_voter + i, votes_per_voter, labels, log, deadline,
                                     Connection(url, timeout_s)) for i in range(voters)))
        return log, time.perf_counter() - start


# -- the database read back ----------------------------------------------------------------------------------------

VOTES_OF_A_RUN = """
SELECT v.comparison_id, v.session_id, v.choice, p.text
FROM votes v
JOIN comparisons c ON c.id = v.comparison_id
JOIN generations g ON g.id = c.left_generation_id
JOIN prompts p ON p.id = g.prompt_id
WHERE p.text LIKE :pattern
"""


def stored_votes(database_url: str, run: str) -> list[tuple[str, str, str, str]]:
    """(comparison id, session id, choice, prompt) of every stored vote of this run, by plain SQL on a fresh
    connection (not the server's)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(text(VOTES_OF_A_RUN), {"pattern": f"%, load {run} voter %"}).all()
        return [tuple(row) for row in rows]
    finally:
        engine.dispose()


def check_votes(acknowledged: dict[str, tuple[int, str]], stored: list[tuple[str, str, str, str]],
                attempted: dict[str, tuple[int, str]] | None = None) -> dict:
    """Acknowledged votes (prompt → (voter, choice)) against the stored ones: how many are lost (acknowledged, not
    stored), duplicated (stored more than once), stored with another choice, stored without an acknowledgement
    (``unacknowledged``: of those, ``unattempted`` were never even sent), and voters whose votes don't share one
    store session, or share another voter's."""
    by_prompt: dict[str, list[tuple[str, str, str]]] = {}
    for comparison, session, choice, prompt in stored:
        by_prompt.setdefault(prompt, []).append((comparison, session, choice))
    lost = [p for p in acknowledged if p not in by_prompt]
    duplicated = sum(len(rows) - 1 for rows in by_prompt.values() if len(rows) > 1)
    duplicated += len(stored) - len({row[0] for row in stored})  # one comparison voted twice
    wrong = [p for p, (_, choice) in acknowledged.items() if p in by_prompt
             and any(c != choice for _, _, c in by_prompt[p])]
    unacknowledged = [p for p in by_prompt if p not in acknowledged]
    unattempted = [p for p in unacknowledged if attempted is not None and p not in attempted]
    sessions: dict[int, set[str]] = {}
    for prompt, (index, _) in acknowledged.items():
        sessions.setdefault(index, set()).update(s for _, s, _ in by_prompt.get(prompt, []))
    split = [i for i, s in sessions.items() if len(s) > 1]
    owners: dict[str, set[int]] = {}
    for index, ids in sessions.items():
        for session in ids:
            owners.setdefault(session, set()).add(index)
    shared = [s for s, who in owners.items() if len(who) > 1]
    return {"acknowledged": len(acknowledged), "stored": len(stored), "lost": len(lost), "duplicated": duplicated,
            "wrong_choice": len(wrong), "unacknowledged_stored": len(unacknowledged),
            "unattempted_stored": len(unattempted), "voters_with_split_sessions": len(split),
            "sessions_shared_by_voters": len(shared), "store_sessions": len(owners),
            "examples": {"lost": lost[:3], "wrong_choice": wrong[:3], "unacknowledged": unacknowledged[:3]}}


# -- the whole run -------------------------------------------------------------------------------------------------

def percentiles(samples: list[float]) -> dict:
    if not samples:
        return {"n": 0}
    ordered = sorted(samples)
    return {"n": len(ordered), "p50_s": round(statistics.median(ordered), 4),
            "p95_s": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 4),
            "max_s": round(ordered[-1], 4)}


def database_kind(database_url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(database_url).get_backend_name()


def run_coroutine(coro):
    """``asyncio.run(coro)`` in a thread of its own, so it works where this thread already runs an event loop (a
    Jupyter kernel, or playwright's sync API earlier in a test session)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def run_load(database_url: str | None = None, *, voters: int = 50, votes_per_voter: int = 4, url: str | None = None,
             engine: str = "cheap", data_dir: str | Path | None = None, timeout_s: float = 300.0,
             in_process: bool = False, render_s: float = 1.0, repeat: int = 1) -> dict:
    """Run ``voters`` simulated voters at once, ``votes_per_voter`` (pair, vote) rounds each, against the studio at
    ``url`` (whose database is ``database_url``), or against one served here over ``database_url`` (default: a
    fresh SQLite file) by a process of its own (``in_process``: by this one); then read the votes back. ``repeat``
    runs it that many times against the same server. Returns the report of the run with the median throughput (see
    :func:`check_votes`; plus throughput, latencies, errors, elapsed and the machine's load), with every run's
    figures under ``repeats``."""
    if not 1 <= voters <= MAX_VOTERS or not 1 <= votes_per_voter <= MAX_VOTES_PER_VOTER:
        raise ValueError(f"voters must be 1..{MAX_VOTERS} and votes per voter 1..{MAX_VOTES_PER_VOTER}")
    if not 1 <= repeat <= MAX_REPEAT:
        raise ValueError(f"repeat must be 1..{MAX_REPEAT}")
    if engine not in ENGINES:
        raise ValueError(f"the engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if url is not None and database_url is None:
        raise ValueError("with --url, give the server's --database-url too: the votes are checked there")
    temp = None
    if data_dir is None:
        temp = tempfile.TemporaryDirectory(prefix="studio-load-")
        data_dir = Path(temp.name) / "data"
    database_url = database_url or f"sqlite:///{Path(data_dir).parent / 'load.sqlite'}"
    demo = store = server = None
    runs = []
    try:
        if url is not None:
            url_served, served = url, url
        elif in_process:
            demo, store, url_served = serve(database_url, data_dir, engine=engine, votes_per_voter=votes_per_voter,
                                            render_s=render_s)
            served = "in the voters' process, on 127.0.0.1"
        else:
            server = Server(database_url, data_dir, engine=engine, votes_per_voter=votes_per_voter * repeat,
                            render_s=render_s)
            url_served, served = server.url, "a process of its own on 127.0.0.1 (python -m benchmarks.load_test serve)"
        for _ in range(repeat):
            run = uuid.uuid4().hex[:8]
            load_before = os.getloadavg()
            log, elapsed = run_coroutine(drive(url_served, run, voters, votes_per_voter, timeout_s))
            runs.append((run, log, elapsed, load_before, os.getloadavg()))
        if store is not None:
            store.close()
        if server is not None:
            server.stop()
        reports = [_report(run, log, elapsed, check_votes(log["acknowledged"], stored_votes(database_url, run),
                                                          log["attempted"]),
                           voters=voters, votes_per_voter=votes_per_voter, engine=engine, render_s=render_s,
                           database_url=database_url, served=served, load=(before, after))
                   for run, log, elapsed, before, after in runs]
    finally:
        if demo is not None:
            demo.close()
        if server is not None:
            server.stop()
        if temp is not None:
            temp.cleanup()
    median = sorted(reports, key=lambda r: r["votes_per_s"] or 0)[(len(reports) - 1) // 2]
    return {**median, "repeats": [_summary(r) for r in reports]}


def _summary(report: dict) -> dict:
    """One run's figures, for the list of repeats."""
    return {"run": report["run"], "ok": ok(report), "acknowledged": report["acknowledged"], "lost": report["lost"],
            "duplicated": report["duplicated"], "errors": report["errors"], "votes_per_s": report["votes_per_s"],
            "pair_p50_s": report["pair_latency"].get("p50_s"), "pair_p95_s": report["pair_latency"].get("p95_s"),
            "vote_p50_s": report["vote_latency"].get("p50_s"), "vote_p95_s": report["vote_latency"].get("p95_s"),
            "load_average_after": report["machine"]["load_average_after"]}


def _report(run: str, log: dict, elapsed: float, check: dict, *, voters: int, votes_per_voter: int, engine: str,
            render_s: float, database_url: str, served: str, load: tuple) -> dict:
    acknowledged = check["acknowledged"]
    cores = os.cpu_count()
    return {
        "voters": voters, "votes_per_voter": votes_per_voter, "requested_votes": voters * votes_per_voter,
        "attempted_votes": len(log["attempted"]), **{k: v for k, v in check.items() if k != "examples"},
        "voters_finished": len(log["finished"]), "errors": len(log["errors"]), "error_examples": log["errors"][:5],
        "elapsed_s": round(elapsed, 3), "votes_per_s": round(acknowledged / elapsed, 2) if elapsed else None,
        "pair_latency": percentiles(log["pair_s"]), "vote_latency": percentiles(log["vote_s"]),
        "examples": check["examples"], "engine": engine,
        "engine_note": ENGINE_NOTES[engine].format(render_s=render_s, pair_s=2 * render_s),
        **({"render_s": render_s} if engine == "slow" else {}),
        "database": database_kind(database_url), "server": served,
        "machine": {"description": f"{cores}-core CPU ({platform.processor() or platform.machine()}), shared with "
                                   "other work (see the load averages)",
                    "cpu": platform.processor() or platform.machine(), "cores": cores,
                    "load_average_before": [round(x, 2) for x in load[0]],
                    "load_average_after": [round(x, 2) for x in load[1]]},
        "run": run, "measured_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def ok(report: dict) -> bool:
    """No acknowledged vote lost, none stored twice or with another choice, nothing stored that wasn't
    acknowledged, one store session per voter, every voter through, every requested vote acknowledged."""
    return (report["lost"] == report["duplicated"] == report["wrong_choice"] == report["unacknowledged_stored"] == 0
            and report["voters_with_split_sessions"] == report["sessions_shared_by_voters"] == 0
            and report["voters_finished"] == report["voters"]
            and report["acknowledged"] == report["requested_votes"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load_test", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", choices=("run", "serve"), default="run",
                        help="run the load (default), or serve the studio alone for a load from elsewhere")
    parser.add_argument("--voters", type=int, default=50)
    parser.add_argument("--votes-per-voter", type=int, default=4)
    parser.add_argument("--url", default=None, help="a studio already served (default: serve one here)")
    parser.add_argument("--database-url", default=None,
                        help="the studio's SQLAlchemy URL (default: a fresh SQLite file in a temporary folder)")
    parser.add_argument("--data-dir", type=Path, default=None, help="the store's image folder (default: temporary)")
    parser.add_argument("--engine", choices=ENGINES, default="cheap",
                        help="cheap: images drawn from a hash (the vote path alone); slow: the same, each image "
                             "holding the engine's lock --render-seconds; toy: the shipped toy models")
    parser.add_argument("--render-seconds", type=float, default=1.0, help="slow: seconds each image takes")
    parser.add_argument("--repeat", type=int, default=1, help="runs against one server; the median one is reported")
    parser.add_argument("--in-process", action="store_true",
                        help="serve the studio in this process (default: a process of its own)")
    parser.add_argument("--port", type=int, default=None, help="serve: the port (default: a free one)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds the whole load may take")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to write the JSON report (default: benchmarks/results/load_test.json for a "
                             "50-voter run, none otherwise)")
    args = parser.parse_args(argv)

    if args.command == "serve":
        database_url = args.database_url or os.environ.get("STUDIO_DATABASE_URL")
        if database_url is None or args.data_dir is None:
            parser.error("serve needs --database-url (or STUDIO_DATABASE_URL) and --data-dir")
        serve(database_url, args.data_dir, engine=args.engine, port=args.port, votes_per_voter=args.votes_per_voter,
              block=True, render_s=args.render_seconds)
        return 0
    report = run_load(args.database_url, voters=args.voters, votes_per_voter=args.votes_per_voter, url=args.url,
                      engine=args.engine, data_dir=args.data_dir, timeout_s=args.timeout, in_process=args.in_process,
                      render_s=args.render_seconds, repeat=args.repeat)
    report = {"command": "python -m benchmarks.load_test " + shlex.join(sys.argv[1:] if argv is None else argv),
              **report}
    print(json.dumps(report, indent=1, ensure_ascii=False))
    print(f"{report['acknowledged']} of {report['requested_votes']} votes acknowledged by {report['voters']} voters "
          f"in {report['elapsed_s']} s ({report['votes_per_s']} votes/s); lost {report['lost']}, duplicated "
          f"{report['duplicated']}, stored without acknowledgement {report['unacknowledged_stored']}, errors "
          f"{report['errors']}; load average {report['machine']['load_average_after']}")
    out = args.out or (RESULTS / "load_test.json" if args.voters == 50 and args.engine == "cheap" else None)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {out}")
    return 0 if ok(report) and all(r["ok"] for r in report["repeats"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
