"""Bad input, end to end: every bad input the studio and its tools can be given, sent where a person or a script
would send it, with the answer each got, whether anything crashed, and whether anything was stored.

    python -m benchmarks.bad_inputs           # → benchmarks/results/bad_inputs.md and bad_inputs.json
    python -m benchmarks.bad_inputs --fast    # the command lines run in this process (what the test runs)

The studio is served in this process on 127.0.0.1 (a free port) over the toy presets, the shipped toy reward and
guidance network, and a fresh SQLite store in a temporary folder. Its events are called over real HTTP as the
browser speaks Gradio's queue protocol (``/config`` for the event ids, ``queue/join``, then the session's event
stream until the event completes), so what Gradio itself refuses before a handler runs is what the table shows.
Entry points:

* the page: ``explore`` (prompt, seed, β, η, α, N, model), ``arena_pair`` (prompt, pairing, configurations),
  ``vote_*`` (no pair, a forged pair, twice), an event that does not exist, ``dashboard`` and the exports;
* the command lines: ``python -m alignment generate`` (unknown model and reward, bad numbers, a corrupt
  checkpoint folder) and ``python -m studio dashboard`` (a stored ``<script>`` prompt, a bad database URL);
* the Python API: ``alignment.load_pipeline`` (unknown names, corrupt checkpoint folders),
  ``alignment.rewards.load_reward``, ``alignment.pickapic.iter_pairs`` (corrupt Pick-a-Pic rows and files),
  ``studio.store.Store`` and ``studio.arena_tab.ArenaSession`` (votes on unknown pairs, twice, bad choices).

For each input: the answer (the sentence the person got, or the exception a caller got), whether it crashed (a
stack trace, Gradio's bare "Error" without a sentence, the page's "Something went wrong" for an exception nobody
expected, a process killed by an exception), and the rows of sessions, prompts, generations, comparisons and
votes before and after, against what that input may store (an explore call stores nothing; an accepted arena
prompt one session, one prompt, two generations and one comparison, its text cleaned; a refused vote nothing).
Every HTTP answer, the page's config, the dashboard's payload and both exported dashboards are searched for the
raw ``<script>`` and ``<img onerror>`` tags of stored prompts: prompt text must come back as text, never HTML.

The studio is imported inside the functions that serve it, so the table's helpers load without Gradio and the
models. Loopback only.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import io
import json
import math
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
TABLES = ("sessions", "prompts", "generations", "comparisons", "votes")
PROMPT = "a red star on a blue background"
SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"
RAW_HTML = (SCRIPT, IMG)
SQL = "'); DROP TABLE votes; --"
FORMULA = '=HYPERLINK("http://example.com","click") a red star'
LONG = (PROMPT + " ") * 313  # 10,000 characters
CRLF = "a red star\r\non a\rblue\n\rbackground"
NAN, INF = float("nan"), float("inf")
EXPLORE = ["toy-sdxl", PROMPT, 0, 0.5, 1.0, 1.0, 8, "tuned"]  # model, prompt, seed, β, η, α, N, estimator
EXPLORE_FLOW = ["toy-sd3", PROMPT, 0, 0.5, 1.0, 1.0, 4, "tuned"]
PAIRING = "baseline vs aligned"

# prompts: (value, accepted by the studio?)
PROMPTS = [
    ("", False),
    ("   \t\n  ", False),
    (LONG, False),
    ("\x00\x1b\r\n\x7f", False),
    ("a red star\x00 on a blue background", True),
    ("\x1b[31ma red star\x1b[0m on a blue background", True),
    (CRLF, True),
    (SQL, True),
    (SCRIPT, True),
    (IMG, True),
    (FORMULA, True),
]
EXPLORE_ONLY_PROMPTS = [(None, False), (12345, True), (["a red star"], True)]
ARENA_ONLY_PROMPTS = [(None, False)]
# bad numbers for every knob: (what, value); NaN as the browser sends it is null (JSON has no NaN)
BAD_NUMBERS = [("negative", -1), ("NaN", NAN), ("NaN as a browser sends it (null)", None), ("inf", INF),
               ("-inf", -INF), ("text", "abc"), ("a number as text", "0.5"), ("true", True), ("a list", [1])]
KNOBS = {  # name: (index in the explore inputs, [(what, value)] besides BAD_NUMBERS, the flow model?)
    "seed": (2, [("2**31 (over the maximum)", 2**31), ("10**30", 10**30), ("3.5 (not whole)", 3.5)], False),
    "β": (3, [("10 (over the slider's 5)", 10.0), ("0", 0.0), ("1e308", 1e308)], False),
    "η": (4, [("5 (over the slider's 2)", 5.0)], False),
    "α": (5, [("50 (over the slider's 5)", 50.0)], False),
    "N": (6, [("0", 0), ("65 (over the slider's 64)", 65), ("10**9", 10**9), ("2.5 (not whole)", 2.5)], True),
}
# left out of the quicker run (--fast, the test's): each makes images that other rows already cover
SLOW_REPEATS = {("explore", "12345"), ("explore", "['a red star']"), ("arena_pair", repr(CRLF)),
                ("seed", "3.5 (not whole)"), ("N", "true"), ("η", "a number as text"), ("α", "a number as text")}
EXCEPTION_NAME = re.compile(r"^[A-Z]\w*(Error|Exception|Exit|Interrupt)\b")
UNEXPECTED = "Something went wrong ("


@dataclass
class Row:
    """One bad input: what was sent where, what came back, whether it crashed, what it stored."""

    input: str
    entry: str
    answer: str
    crashed: bool
    stored: str
    problems: list[str] = field(default_factory=list)
    outside: str = ""  # a crash in Gradio's own protocol handling, not the studio's code: where, and why left alone


def show(value, limit: int = 48) -> str:
    """The input as a short, safe literal: Python's repr (control characters escaped), long text cut."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit - 12]!r}… ({len(value):,} characters)"
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else "inf" if value > 0 else "-inf"
    text = repr(value)
    return text if len(text) <= limit + 10 else text[:limit] + "…"


def one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def clarity_problems(answer: str) -> list[str]:
    """What keeps an answer from being one clear sentence: nothing said, a traceback, an exception's bare name."""
    message = EXCEPTION_NAME.sub("", answer, count=1).lstrip(": ")
    problems = []
    if not answer.strip() or answer.strip() in ("Error", "None", "null"):
        problems.append("no message")
    if "Traceback" in answer or 'File "' in answer:
        problems.append("a traceback")
    if EXCEPTION_NAME.match(answer) and len(message.split()) < 3:
        problems.append("an exception's name, no sentence")
    if answer.startswith(UNEXPECTED):
        problems.append("an unexpected exception (see the server log)")
    if len(answer) > 700:
        problems.append("too long to read")
    return problems


def html_problems(text: str, where: str) -> list[str]:
    return [f"raw {tag!r} in {where}" for tag in RAW_HTML if tag in text]


# -- the database ----------------------------------------------------------------------------------------------

class Rows:
    """Row counts of the store's tables, read with plain SQL on a fresh connection (not the server's)."""

    def __init__(self, path: Path):
        self.path = path

    def query(self, sql: str, *args):
        connection = sqlite3.connect(self.path, timeout=10)
        try:
            return connection.execute(sql, args).fetchall()
        finally:
            connection.close()

    def counts(self) -> dict[str, int]:
        return {t: self.query(f"SELECT COUNT(*) FROM {t}")[0][0] for t in TABLES}

    def prompts_since(self, last_id: int) -> list[str]:
        return [r[0] for r in self.query("SELECT text FROM prompts WHERE id > ? ORDER BY id", last_id)]

    def last_prompt_id(self) -> int:
        return self.query("SELECT COALESCE(MAX(id), 0) FROM prompts")[0][0]


def describe_delta(delta: dict[str, int]) -> str:
    parts = [f"+{n} {t[:-1] if n == 1 else t}" for t, n in delta.items() if n]
    return ", ".join(parts) if parts else "nothing"


# -- the page over HTTP ----------------------------------------------------------------------------------------

@dataclass
class Answer:
    completed: dict | None  # Gradio's process_completed message
    raw: str  # every byte of the event stream (and the join's answer)
    logs: list[str]  # gr.Warning / gr.Info texts
    http_error: str | None = None
    transport_error: str | None = None


class Page:
    """The page's HTTP API as a browser speaks it."""

    def __init__(self, url: str):
        self.url = url.rstrip("/") + "/"
        self.api = self.url + "gradio_api/"
        self.client = httpx.Client(timeout=180)
        self.config_text = self.client.get(self.url + "config").text
        self.fn_index = {d["api_name"]: d["id"] for d in json.loads(self.config_text)["dependencies"]
                         if d.get("api_name")}

    def close(self):
        self.client.close()

    def call(self, api_name: str | None, data: list, session: str, fn_index: int | None = None) -> Answer:
        try:
            return self._call(api_name, data, session, fn_index)
        except httpx.TransportError as e:  # the server dropped the connection: a fresh one for the next call
            self.client.close()
            self.client = httpx.Client(timeout=180)
            return Answer(None, "", [], None, f"the connection failed ({type(e).__name__}: {e})")

    def _call(self, api_name: str | None, data: list, session: str, fn_index: int | None) -> Answer:
        index = self.fn_index[api_name] if fn_index is None else fn_index
        body = json.dumps({"data": data, "fn_index": index, "session_hash": session, "event_data": None,
                           "trigger_id": None})  # NaN and Infinity as Python writes them, as a script could
        joined = self.client.post(self.api + "queue/join", content=body,
                                  headers={"content-type": "application/json"})
        if joined.status_code != 200:  # the server may drop this connection after an error: a fresh one
            self.client.close()
            self.client = httpx.Client(timeout=180)
            return Answer(None, joined.text, [], f"HTTP {joined.status_code}: {one_line(joined.text, 200)}")
        raw, logs, completed = joined.text + "\n", [], None
        with self.client.stream("GET", self.api + "queue/data", params={"session_hash": session}) as stream:
            for line in stream.iter_lines():
                raw += line + "\n"
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                if message.get("msg") == "log":
                    logs.append(str(message.get("log")))
                if message.get("msg") == "process_completed":
                    completed = message
                    break
        return Answer(completed, raw, logs)

    def fetch(self, url: str) -> str:
        return self.client.get(url).text


def http_answer(api_name: str, answer: Answer) -> tuple[str, bool, list[str]]:
    """(the sentence the person got, crashed?, problems) of one event."""
    if answer.http_error is not None:
        crashed = answer.http_error.startswith("HTTP 5")
        return f"refused by Gradio before any handler: {answer.http_error}", crashed, []
    if answer.transport_error is not None:
        return answer.transport_error, True, ["the connection failed"]
    if answer.completed is None:
        return "the event stream ended without an answer", True, ["no answer"]
    output = answer.completed.get("output") or {}
    if not answer.completed.get("success"):
        error = output.get("error")
        text = "Error (Gradio's bare error: no message)" if not error else one_line(error)
        problems = clarity_problems(str(error or ""))
        crashed = bool(problems)
        return text, crashed, problems
    data = output.get("data") or []
    warnings = "".join(f" Warning: {one_line(w, 160)}" for w in answer.logs)
    if api_name == "explore":
        shown = [n for n, i in (("baseline", 0), ("aligned", 2), ("best-of-N", 4))
                 if i < len(data) and isinstance(data[i], dict) and data[i].get("url")]
        names = " and ".join(shown) if len(shown) < 3 else f"{shown[0]}, {shown[1]} and {shown[2]}"
        return f"Shown: {names} images.{warnings}", False, []
    if api_name == "arena_pair":
        return f"Shown: two unlabelled images; “{data[6]}”{warnings}", False, []
    if api_name.startswith("vote_"):
        return f"“{one_line(data[4], 200)}”{warnings}", False, []
    if api_name == "dashboard":
        return f"Figures and “{one_line(data[-1], 160)}”", False, []
    if api_name.startswith("export_"):
        name = Path((data[0] or {}).get("path") or "?").name if data else "?"
        return f"Exported {name}", False, []
    return "done", False, []


# -- expectations of what is stored --------------------------------------------------------------------------

Expect = Callable[[dict, list], list]


def nothing(delta: dict, _new_prompts: list) -> list[str]:
    return [] if not any(delta.values()) else [f"stored {describe_delta(delta)} (nothing may be stored)"]


def a_pair(prompt: str) -> Expect:
    """An accepted arena prompt: one session, at most one prompt (its cleaned text), two generations, one
    comparison, no vote."""
    from alignment import check_prompt

    cleaned = check_prompt(prompt)

    def check(delta: dict, new_prompts: list) -> list[str]:
        problems = []
        want = {"sessions": 1, "generations": 2, "comparisons": 1, "votes": 0}
        if any(delta[t] != n for t, n in want.items()) or delta["prompts"] > 1:
            problems.append(f"stored {describe_delta(delta)}")
        for text in new_prompts:
            if text != cleaned or not text.isprintable():
                problems.append(f"prompt stored as {text[:60]!r}, not its cleaned text")
        return problems
    return check


def votes(n: int) -> Expect:
    def check(delta: dict, _new_prompts: list) -> list[str]:
        extra = {t: v for t, v in delta.items() if t != "votes" and v}
        if delta["votes"] != n or extra:
            return [f"stored {describe_delta(delta)} (expected +{n} votes only)"]
        return []
    return check


def stored_text(delta: dict, new_prompts: list, problems: list[str]) -> str:
    text = describe_delta(delta)
    if new_prompts:
        text += " (prompt kept as text: " + ", ".join(show(p, 40) for p in new_prompts) + ")"
    return ("WRONG: " if any(p.startswith(("stored", "prompt stored")) for p in problems) else "") + text


# -- the run -----------------------------------------------------------------------------------------------------

class Run:
    """The served studio, its store and the rows written so far."""

    def __init__(self, folder: Path, fast: bool):
        os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from studio.configs import Config
        from studio.engine import Engine
        from studio.settings import StudioSettings, set_threads
        from studio.store import Store
        from studio.ui import LAUNCH_KWARGS, QUEUE_KWARGS, build_demo

        from .load_test import free_port

        set_threads("cpu")
        self.folder, self.fast, self.rows = folder, fast, []
        self.database = folder / "studio.sqlite"
        self.store = Store(f"sqlite:///{self.database}", folder / "data", client_salt="bad-inputs")
        self.engine = Engine(StudioSettings(device="cpu", max_n=64))
        self.configs = [Config.of("toy-sdxl", "baseline"), Config.of("toy-sdxl", "guided", alpha=1.0, beta=0.5,
                                                                      eta=1.0)]
        self.labels = [c.label for c in self.configs]
        self.demo = build_demo(engine=self.engine, store=self.store, arena_configs=self.configs, warm_up=False)
        self.demo.queue(**QUEUE_KWARGS).launch(server_name="127.0.0.1", server_port=free_port(),
                                               prevent_thread_lock=True, quiet=True, **LAUNCH_KWARGS)
        self.page = Page(self.demo.local_url)
        self.db = Rows(self.database)
        self.voted_sessions: list[str] = []  # arena sessions with an open pair, for the dashboard's votes

    def close(self):
        self.page.close()
        self.demo.close()
        self.store.close()

    def add(self, row: Row) -> Row:
        cut = re.compile(re.escape(str(self.folder.parent)) + r"/bad-inputs-\S*…$")  # a path cut by one_line
        for name in ("input", "answer", "stored"):  # the temporary folder's name says nothing: <tmp>
            setattr(row, name, cut.sub("<tmp>…", getattr(row, name).replace(str(self.folder), "<tmp>")))
        if os.environ.get("BAD_INPUTS_VERBOSE"):
            now = time.perf_counter()
            print(f"[{now - getattr(self, '_last', now):.2f}s] {row.entry} · {row.input}: {row.answer[:200]} "
                  f"[{row.crashed}; {row.stored}] {row.problems}", flush=True)
            self._last = now
        self.rows.append(row)
        return row

    # -- HTTP

    def http(self, entry: str, shown: str, api_name: str | None, data: list, *, expect: Expect = nothing,
             session: str | None = None, fn_index: int | None = None) -> tuple[Row, Answer]:
        session = session or uuid.uuid4().hex[:11]
        before, last = self.db.counts(), self.db.last_prompt_id()
        answer = self.page.call(api_name, data, session, fn_index)
        after = self.db.counts()
        delta = {t: after[t] - before[t] for t in TABLES}
        new_prompts = self.db.prompts_since(last)
        text, crashed, problems = http_answer(api_name or "", answer)
        problems += html_problems(answer.raw, "the HTTP answer") + expect(delta, new_prompts)
        row = self.add(Row(shown, entry, text, crashed, stored_text(delta, new_prompts, problems), problems))
        return row, answer

    def prompts(self):
        for value, accepted in PROMPTS + EXPLORE_ONLY_PROMPTS:
            if self.fast and ("explore", show(value)) in SLOW_REPEATS:
                continue
            row, answer = self.http("page `explore` · prompt", show(value), "explore",
                                    ["toy-sdxl", value, *EXPLORE[2:]])
            if accepted != bool((answer.completed or {}).get("success")):
                row.problems.append("an accepted prompt was refused" if accepted else "a bad prompt was accepted")
        for value, accepted in PROMPTS + ARENA_ONLY_PROMPTS:
            if self.fast and ("arena_pair", show(value)) in SLOW_REPEATS:
                continue
            session = uuid.uuid4().hex[:11]
            row, answer = self.http("page `arena_pair` · prompt", show(value), "arena_pair",
                                    [None, value, PAIRING, self.labels], session=session,
                                    expect=a_pair(value) if accepted else nothing)
            if accepted and answer.completed and answer.completed.get("success"):
                self.voted_sessions.append(session)
            elif accepted:
                row.problems.append("an accepted prompt was refused")

    def knobs(self):
        for knob, (index, out_of_range, flow) in KNOBS.items():  # sent as a script could: NaN, inf as literals
            base = EXPLORE_FLOW if flow else EXPLORE
            for what, value in out_of_range + BAD_NUMBERS:
                if self.fast and (knob, what) in SLOW_REPEATS:
                    continue
                data = list(base)
                data[index] = value
                shown = f"{knob} = {what if value in out_of_range_values(out_of_range) else show(value)}"
                if what.startswith("NaN as"):
                    shown = f"{knob} = null (NaN as a browser sends it)"
                self.http(f"page `explore` · {knob}", shown, "explore", data)
        for value in ("nope", None, SCRIPT, 7):
            self.http("page `explore` · model", f"model = {show(value)}", "explore", [value, *EXPLORE[1:]])
        for value in ("nope", None, IMG):
            self.http("page `arena_pair` · pairing", f"pairing = {show(value)}", "arena_pair",
                      [None, PROMPT, value, self.labels])
        for value in (["nope"], [SCRIPT], [], "toy-sdxl · baseline", 5, None):
            shown = f"configurations = {show(value)}" + (" (None: every configuration)" if value is None else "")
            self.http("page `arena_pair` · configurations", shown, "arena_pair",
                      [None, PROMPT, "any two of the list", value], expect=a_pair(PROMPT) if value is None else nothing)

    def votes(self):
        self.http("page `vote_left`", "a vote with no pair shown (fresh session)", "vote_left", [None])
        forged = {"session_id": "0" * 32, "comparison_id": "0" * 32, "voted": False}
        self.http("page `vote_left`", "a vote with a forged pair in the state payload", "vote_left", [forged])
        session = uuid.uuid4().hex[:11]
        row, _ = self.http("page `arena_pair`", "a pair, for the double vote", "arena_pair",
                           [None, PROMPT, PAIRING, self.labels], session=session, expect=a_pair(PROMPT))
        self.rows.remove(row)  # setup, not a bad input
        self.http("page `vote_left`", "the first vote on the pair", "vote_left", [None], session=session,
                  expect=votes(1))
        self.http("page `vote_left`", "the same vote again (double click)", "vote_left", [None], session=session)
        self.http("page `vote_right`", "another vote on the same pair", "vote_right", [None], session=session)
        # malformed protocol messages: no page sends them; Gradio answers before any of the studio's code runs
        outside = "Gradio's own protocol handling, before any studio code; no page sends this (left alone)"
        index = max(self.page.fn_index.values()) + 1000
        row, _ = self.http("Gradio protocol `queue/join`", f"an event id that does not exist (fn_index {index})",
                           None, [None], fn_index=index)
        row.outside = outside
        row, _ = self.http("Gradio protocol `queue/join` · explore", "too few inputs (2 of 8)", "explore",
                           ["toy-sdxl", PROMPT])
        row.outside = outside
        self.http("Gradio protocol `queue/join` · explore", "too many inputs (10 of 8)", "explore", [*EXPLORE, 1, 2])
        before = self.db.counts()
        with httpx.Client(timeout=60) as client:  # its own connection: the server drops it after a 500
            response = client.post(self.page.api + "call/vote_maybe", json={"data": [None]})
        problems = nothing({t: n - before[t] for t, n in self.db.counts().items()}, [])
        self.add(Row("an API name that does not exist (`vote_maybe`)", "Gradio protocol `/gradio_api/call/…`",
                     f"HTTP {response.status_code}: {one_line(response.text, 200)}", response.status_code >= 500,
                     "nothing", problems, outside if response.status_code >= 500 else ""))

    def html_views(self):
        """Vote on every accepted arena prompt's pair, then read every view of the stored prompts: the page's
        config and dashboard payload, the exported HTML and CSV, the command line's HTML."""
        for session in self.voted_sessions:
            answer = self.page.call("vote_left", [None], session)
            if not (answer.completed or {}).get("success"):
                self.add(Row("a vote on a stored odd prompt's pair", "page `vote_left`", "the vote failed", True,
                             "nothing", ["setup vote failed"]))
        problems = html_problems(self.page.client.get(self.page.url + "config").text, "the page's config")
        row, _ = self.http("page `dashboard`", f"stored prompts {show(SCRIPT)}, {show(IMG)}", "dashboard", [])
        row.problems += problems
        row, answer = self.http("page `export_html`", f"stored prompts {show(SCRIPT)}, {show(IMG)}", "export_html",
                                [None])
        self._check_export(row, answer, "the exported dashboard", escaped=True)
        row, answer = self.http("page `export_csv`", f"stored prompt {show(FORMULA, 30)}", "export_csv", [None])
        csv_text = self._check_export(row, answer, "the exported CSV", escaped=False)
        if csv_text is not None and "'=HYPERLINK" not in csv_text:
            row.problems.append("the formula prompt is not defused in the CSV")
        else:
            row.answer += "; the formula cell starts with ' (a spreadsheet shows it as text)"
        # the command line's dashboard over the same database
        out = self.folder / "cli-dashboard.html"
        row = self.cli("studio", ["dashboard", "--db", f"sqlite:///{self.database}", "--out", str(out),
                                  "--n-boot", "50"],
                       f"stored prompts {show(SCRIPT)}, {show(IMG)}", expect_rc=0)
        self._check_html_file(row, out.read_text(encoding="utf-8") if out.exists() else None, "the CLI's dashboard")
        self.cli("studio", ["dashboard", "--db", "nope://x", "--out", str(self.folder / "x.html")],
                 "--db 'nope://x'")
        self.cli("studio", ["dashboard", "--db", f"sqlite:///{self.folder / 'missing' / 'x.sqlite'}",
                            "--out", str(self.folder / "y.html")], "--db a SQLite file in a missing folder")

    def _check_export(self, row: Row, answer: Answer, where: str, escaped: bool) -> str | None:
        data = ((answer.completed or {}).get("output") or {}).get("data") or []
        url = (data[0] or {}).get("url") if data else None
        if not url:
            row.problems.append(f"no file from {where}")
            return None
        text = self.page.fetch(url)
        if escaped:  # HTML; a CSV is not read as HTML, its risk is a formula
            self._check_html_file(row, text, where)
        return text

    @staticmethod
    def _check_html_file(row: Row, text: str | None, where: str):
        if text is None:
            row.problems.append(f"{where} was not written")
            return
        row.problems += html_problems(text, where)
        if "&lt;script&gt;alert(1)&lt;/script&gt;" not in text:
            row.problems.append(f"the stored <script> prompt is not in {where} as escaped text")
        else:
            row.answer += f"; {where} holds the prompt as escaped text (&lt;script&gt;…), no raw tag"

    # -- command lines and the Python API

    def cli(self, package: str, argv: list[str], shown: str, expect_rc: int = 2, out: Path | None = None) -> Row:
        """``python -m package argv``: a subprocess, or (fast) ``package.__main__.main(argv)`` in this process."""
        entry = f"CLI `python -m {package} {argv[0]}`"
        before = self.db.counts()
        if self.fast:
            import importlib

            main = importlib.import_module(f"{package}.__main__").main
            stdout, stderr = io.StringIO(), io.StringIO()
            try:
                with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                    rc = main(argv)
            except SystemExit as e:  # argparse
                rc = e.code if isinstance(e.code, int) else 1
            except Exception as e:  # noqa: BLE001 - recorded as a crash
                import traceback

                rc, stderr = 1, io.StringIO("".join(traceback.format_exception(e)))
            stdout, stderr = stdout.getvalue(), stderr.getvalue()
        else:
            proc = subprocess.run([sys.executable, "-m", package, *argv], cwd=ROOT, capture_output=True, text=True,
                                  timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=False)
            rc, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
        messages = [line for line in stderr.splitlines() if line.startswith(("error:", "usage:")) or
                    "error:" in line] or stderr.strip().splitlines()[-1:] or stdout.strip().splitlines()[-1:]
        answer = one_line(" ".join(m for m in messages if not m.startswith("usage:")) or "(no output)")
        crashed = "Traceback" in stderr or rc not in (0, 2)
        problems = (["a traceback"] if "Traceback" in stderr else []) + ([f"exit status {rc}"] if crashed else [])
        if rc != expect_rc and not crashed:
            problems.append(f"exit status {rc}, expected {expect_rc}")
        if expect_rc == 0:
            answer = one_line(stdout.strip().splitlines()[-1] if stdout.strip() else answer)
        delta = {t: n - before[t] for t, n in self.db.counts().items()}
        problems += nothing(delta, [])
        stored = describe_delta(delta)
        if out is not None:
            stored = "no image written" if not out.exists() else "WRONG: an image was written"
            if out.exists():
                problems.append("an image was written")
        answer = f"exit {rc}: {answer}"
        return self.add(Row(shown, entry, answer, crashed, stored, problems))

    def call(self, entry: str, shown: str, fn: Callable, expected: tuple = (ValueError,), stored: str = "nothing",
             expect: Expect = nothing) -> Row:
        """A Python call that must refuse the input with one of ``expected``."""
        before, last = self.db.counts(), self.db.last_prompt_id()
        crashed, problems = False, []
        try:
            result = fn()
            answer = one_line(result if isinstance(result, str) else f"returned {result!r}")
        except expected as e:
            message = e.message if isinstance(getattr(e, "message", None), str) else str(e)  # gr.Error's
            answer = one_line(f"{type(e).__name__}: {message}" if type(e).__name__ != "Error" else
                              f"the page shows: {message}")
            problems += clarity_problems(str(e))
        except Exception as e:  # noqa: BLE001 - recorded as a crash
            answer = one_line(f"{type(e).__name__}: {e}")
            crashed, problems = True, [f"unexpected {type(e).__name__}"]
        delta = {t: n - before[t] for t, n in self.db.counts().items()}
        new_prompts = self.db.prompts_since(last)
        problems += expect(delta, new_prompts)
        if any(delta.values()):
            stored = stored_text(delta, new_prompts, problems)
        return self.add(Row(shown, entry, answer, crashed, stored, problems))

    def generate_cli(self):
        out = self.folder / "cli.png"
        common = ["--prompt", PROMPT, "--out", str(out), "--device", "cpu"]
        cases = [("--model nope", ["--model", "nope"]),
                 ("--model ''", ["--model", ""]),
                 ("--model /etc (a folder, not a pipeline)", ["--model", "/etc"]),
                 ("--model owner/not-on-the-hub (offline)", ["--model", "owner/not-on-the-hub"]),
                 ("--reward nope", ["--reward", "nope"]),
                 ("--method is --model toy-sd3 --reward '0.5*'", ["--method", "is", "--model", "toy-sd3",
                                                                 "--reward", "0.5*"]),
                 ("--prompt '\\x00\\x1b' (control characters only)", ["--prompt", "\x01\x1b\r\n"]),
                 ("--prompt of 10,000 characters", ["--prompt", LONG]),
                 ("--seed -1", ["--seed", "-1"]),
                 ("--seed abc", ["--seed", "abc"]),
                 ("--method guided --beta nan", ["--method", "guided", "--beta", "nan"]),
                 ("--method guided --eta -1", ["--method", "guided", "--eta", "-1"]),
                 ("--method guided --alpha inf", ["--method", "guided", "--alpha", "inf"]),
                 ("--method is --model toy-sd3 --n 0", ["--method", "is", "--model", "toy-sd3", "--n", "0"]),
                 ("--method is --model toy-sd3 --beta -1", ["--method", "is", "--model", "toy-sd3", "--beta", "-1"]),
                 ("--method is --model toy-sdxl (a flow method on a diffusion model)",
                  ["--method", "is", "--model", "toy-sdxl"]),
                 ("--method guided --model toy-sd3 (a diffusion method on a flow model)",
                  ["--method", "guided", "--model", "toy-sd3"]),
                 ("--method is --model <a copy of toy-sdxl> (a folder: the family read from the pipeline)",
                  ["--method", "is", "--model", str(self.sdxl_copy())]),
                 ("--steps 0", ["--steps", "0"]),
                 ("--method nope", ["--method", "nope"])]
        if self.fast:  # each costs a model load in this process: the test keeps the quick ones
            quick = ("--model nope", "--model ''", "--model /etc (a folder, not a pipeline)", "--reward nope",
                     "--prompt '\\x00\\x1b' (control characters only)", "--seed abc", "--method guided --beta nan",
                     "--method is --model toy-sd3 --n 0", "--method nope",
                     "--method is --model toy-sdxl (a flow method on a diffusion model)")
            cases = [c for c in cases if c[0] in quick]
        for shown, argv in cases:
            argv = ["generate", *common, *argv]
            self.cli("alignment", argv, shown, out=out)
        return out

    def sdxl_copy(self) -> Path:
        folder = self.folder / "toy-sdxl-copy"
        if not folder.exists():
            shutil.copytree(ROOT / "checkpoints" / "toy-sdxl", folder)
        return folder

    def loading(self):
        from alignment import ModelLoadError, load_pipeline

        for value in ("nope", "", None, "toy-sdxl/../../etc", "owner/not-on-the-hub", str(self.folder / "missing"),
                      "/etc/passwd", SCRIPT):
            self.call("`alignment.load_pipeline`", show(value), lambda v=value: load_pipeline(v, device="cpu"),
                      (ModelLoadError,))
        for what, damage in corruptions():
            folder = self.folder / "corrupt" / uuid.uuid4().hex[:8]
            shutil.copytree(ROOT / "checkpoints" / "toy-sdxl", folder)
            damage(folder)
            self.call("`alignment.load_pipeline`", f"toy-sdxl copy: {what}",
                      lambda f=folder: load_pipeline(str(f), device="cpu"), (ModelLoadError,))
        # the same corrupt folder offered by the studio: the page's handler answers with the loader's sentence
        folder = self.folder / "corrupt" / "offered"
        shutil.copytree(ROOT / "checkpoints" / "toy-sdxl", folder)
        corruptions()[0][1](folder)
        self.call("studio page handler (`explore` on a model folder)",
                  "toy-sdxl copy with a truncated UNet, offered by the studio",
                  lambda: page_handler_explore(str(folder)), (page_error_type(),))
        if not self.fast:
            self.cli("alignment", ["generate", "--model", str(folder), "--prompt", PROMPT, "--out",
                                   str(self.folder / "corrupt.png"), "--device", "cpu"],
                     "--model <toy-sdxl copy with a truncated UNet>", out=self.folder / "corrupt.png")

    def rewards(self):
        from alignment import ModelLoadError
        from alignment.rewards import load_reward

        for value in ("nope", "", None, "pickscore+nope", "0.5*", "pickscore++clip", "nan*pickscore",
                      "toy-pickscore; rm -rf /", SCRIPT):
            self.call("`alignment.rewards.load_reward`", show(value), lambda v=value: load_reward(v),
                      (ValueError, ModelLoadError))
        self.call("`alignment.rewards.load_reward`", "'toy-pickscore', source= a missing folder",
                  lambda: load_reward("toy-pickscore", source=str(self.folder / "no-reward")),
                  (ValueError, ModelLoadError, OSError))

    def parquet(self):
        from alignment.pickapic import LoadReport, iter_pairs

        for what, build, expected in parquet_cases(self.folder / "parquet"):
            def read(build=build):
                report = LoadReport()
                pairs = list(iter_pairs(build(), report=report))
                captions = [p.caption for p in pairs]
                wrong = [c for c in captions if not c.startswith("good row")]
                return f"{report}" + (f"; WRONG: kept {wrong}" if wrong else "")
            row = self.call("`alignment.pickapic.iter_pairs`", what, read, expected)
            if "WRONG" in row.answer:
                row.problems.append("a broken row was kept")
            if row.stored == "nothing":
                row.stored = "nothing (the loader only reads)"

    def store_api(self):
        from studio.arena_tab import ArenaSession, PairState
        from studio.store import StoreError, VoteRefused

        store, image = self.store, _image()
        session = store.start_session()
        a = store.add_generation(PROMPT, image, model="toy-sdxl", method="baseline", config={}, seed=0, rewards={})
        b = store.add_generation(PROMPT, _image(200), model="toy-sdxl", method="guided", config={"beta": 0.5},
                                 seed=0, rewards={})
        comparison = store.create_comparison(session, a, b)
        other = store.start_session()
        entry = "`studio.store.Store.record_vote`"
        for shown, args in [("an unknown comparison id", (session, "0" * 32, "left")),
                            (f"comparison id {show(SQL)}", (session, SQL, "left")),
                            ("choice 'maybe'", (session, comparison, "maybe")),
                            ("choice ''", (session, comparison, "")), ("choice None", (session, comparison, None)),
                            (f"choice {'left' + SQL!r}", (session, comparison, "left" + SQL)),
                            ("another session's pair", (other, comparison, "left")),
                            ("an unknown session", ("f" * 32, comparison, "left"))]:
            self.call(entry, shown, lambda args=args: store.record_vote(*args), (ValueError, StoreError))
        self.call(entry, "the first vote on a pair", lambda: store.record_vote(session, comparison, "tie") or
                  "stored", expect=votes(1))
        self.call(entry, "the same vote again", lambda: store.record_vote(session, comparison, "tie"), (VoteRefused,))
        self.call(entry, "a different vote on the voted pair", lambda: store.record_vote(session, comparison, "left"),
                  (VoteRefused,))
        entry = "`studio.store.Store.add_generation`"
        for shown, kwargs in [("prompt ''", {"prompt": ""}), ("prompt '\\x00\\x1b'", {"prompt": "\x00\x1b"}),
                              ("prompt of 10,000 characters", {"prompt": LONG}),
                              ("rewards {'r': NaN}", {"rewards": {"r": NAN}}), ("seed -1", {"seed": -1}),
                              ("config {'beta': inf}", {"config": {"beta": INF}}),
                              ("model 'toy\\x00sdxl' (not printable)", {"model": "toy\x00sdxl"})]:
            args = {"prompt": PROMPT, "model": "toy-sdxl", "method": "baseline", "config": {}, "seed": 0, "rewards": {}}
            args.update(kwargs)
            self.call(entry, shown, lambda args=args: store.add_generation(args.pop("prompt"), image, **args))
        entry = "`studio.arena_tab.ArenaSession.vote`"
        arena = ArenaSession(self.engine, store, self.configs)
        self.call(entry, "choice 'maybe' on a shown pair", lambda: arena.vote(PairState(session, comparison), "maybe"),
                  (ValueError, StoreError))
        self.call(entry, "a forged comparison id", lambda: arena.vote(PairState(session, "1" * 32), "left"),
                  (ValueError, StoreError))
        self.call(entry, "no pair", lambda: arena.vote(None, "left"), (ValueError, StoreError))
        integrity = self.db.query("PRAGMA integrity_check")[0][0]
        tables = {r[0] for r in self.db.query("SELECT name FROM sqlite_master WHERE type='table'")}
        self.add(Row("after every input above", "the database (`PRAGMA integrity_check`, tables)",
                     f"integrity_check: {integrity}; tables: {', '.join(sorted(tables & set(TABLES)))}",
                     False, "—", [] if integrity == "ok" and set(TABLES) <= tables else ["the database is damaged"]))


def out_of_range_values(cases: list) -> list:
    return [v for _, v in cases]


# -- corrupt checkpoints and parquet files -------------------------------------------------------------------

def corruptions() -> list[tuple[str, Callable[[Path], None]]]:
    def truncate(path: str, size: int = 1000):
        def damage(folder: Path):
            file = folder / path
            file.write_bytes(file.read_bytes()[:size])
        return damage

    def garble_header(path: str):
        def damage(folder: Path):
            file = folder / path
            data = bytearray(file.read_bytes())
            data[:64] = bytes((i * 37 + 11) % 256 for i in range(64))
            file.write_bytes(bytes(data))
        return damage

    def write(path: str, text: str):
        def damage(folder: Path):
            (folder / path).write_text(text)
        return damage

    def remove(path: str):
        def damage(folder: Path):
            shutil.rmtree(folder / path)
        return damage

    index = (ROOT / "checkpoints" / "toy-sdxl" / "model_index.json").read_text()
    return [("UNet weights truncated to 1,000 bytes", truncate("unet/diffusion_pytorch_model.safetensors")),
            ("text encoder weights' header garbled", garble_header("text_encoder/model.safetensors")),
            ("VAE weights emptied (0 bytes)", truncate("vae/diffusion_pytorch_model.safetensors", 0)),
            ("model_index.json garbled (not JSON)", write("model_index.json", "{\x00garbled: ]]")),
            ("model_index.json truncated to half", write("model_index.json", index[: len(index) // 2])),
            ("model_index.json a JSON list, not an object", write("model_index.json", "[1, 2, 3]")),
            ("model_index.json with an unknown pipeline class",
             write("model_index.json", index.replace("StableDiffusionXLPipeline", "NopePipeline"))),
            ("UNet config.json garbled", write("unet/config.json", "not json")),
            ("VAE folder removed", remove("vae"))]


def _image(value: int = 90):
    import numpy as np
    from PIL import Image

    return Image.fromarray(np.full((16, 16, 3), value, dtype=np.uint8))


def parquet_cases(folder: Path):
    """(what, build → path, the exceptions allowed) per kind of broken Pick-a-Pic file: two good rows and one bad."""
    import pandas as pd

    from alignment.pickapic import jpeg_bytes, write_pickapic

    folder.mkdir(parents=True, exist_ok=True)
    good = [{"caption": f"good row {i}", "image_0": _image(10 + i), "image_1": _image(200 - i), "label_0": 1.0,
                 "label_1": 0.0, "model_0": "a", "model_1": "b"} for i in range(2)]

    def with_row(name: str, **changes):
        def build():
            path = write_pickapic(good, folder / f"{name}.parquet")
            frame = pd.read_parquet(path)
            bad = dict(frame.iloc[0].to_dict(), caption="bad row")
            bad.update(changes)
            pd.concat([frame, pd.DataFrame([bad])]).to_parquet(path, index=False)
            return path
        return build

    def raw(name: str, content: bytes):
        def build():
            path = folder / f"{name}.parquet"
            path.write_bytes(content)
            return path
        return build

    def columns_missing():
        path = folder / "no-images.parquet"
        pd.DataFrame([{"caption": "good row", "label_0": 1.0, "label_1": 0.0}]).to_parquet(path, index=False)
        return path

    jpeg = jpeg_bytes(_image(5))
    return [
        ("a row whose image is not an image (b'not a jpeg')", with_row("undecodable", jpg_0=b"not a jpeg"), ()),
        ("a row whose JPEG is cut after 40 bytes", with_row("truncated", jpg_1=jpeg[:40]), ()),
        ("a row whose image is empty bytes", with_row("empty-image", jpg_0=b""), ()),
        ("a row whose image is missing (None)", with_row("no-image", jpg_1=None), ()),
        ("a row whose caption is missing (None)", with_row("no-caption", caption=None), ()),
        ("a row whose caption is ''", with_row("empty-caption", caption=""), ()),
        ("a row whose caption is whitespace", with_row("blank-caption", caption=" \t\n"), ()),
        ("a row with label_0 NaN", with_row("nan-label", label_0=NAN), ()),
        ("a row with label_1 None", with_row("none-label", label_1=None), ()),
        ("a row with label_0 inf", with_row("inf-label", label_0=INF), ()),
        ("a row with labels (5, -3)", with_row("out-of-range-label", label_0=5.0, label_1=-3.0), ()),
        ("a row with labels (0, 0)", with_row("zero-labels", label_0=0.0, label_1=0.0), ()),
        ("a file that is not parquet", raw("garbage", b"PAR1 this is not parquet"), (ValueError,)),
        ("an empty file", raw("empty", b""), (ValueError,)),
        ("a parquet file without image columns", columns_missing, (ValueError,)),
        ("a path that does not exist", lambda: folder / "missing.parquet", (ValueError, FileNotFoundError)),
    ]


def page_error_type():
    import gradio as gr

    return gr.Error


def page_handler_explore(model: str):
    """What the page's explore handler answers for ``model`` offered by the studio (``page_errors`` over the
    engine), without serving a second page."""
    from studio.engine import Engine
    from studio.errors import page_errors
    from studio.settings import StudioSettings
    from studio.explore import run_explore

    engine = Engine(StudioSettings(models=(model,), device="cpu", reward="toy-pickscore"))
    return page_errors(run_explore)(engine, model, PROMPT, 0, 0.5, 1.0, 1.0, 8)


# -- entry ---------------------------------------------------------------------------------------------------------

def run(fast: bool = False, folder: str | Path | None = None) -> list[Row]:
    """Every bad input through every entry point; the rows of the table."""
    with tempfile.TemporaryDirectory(prefix="bad-inputs-") as tmp:
        folder = Path(folder or tmp)
        start = time.perf_counter()
        studio = Run(folder, fast)
        seconds = {"serve": time.perf_counter() - start}
        try:
            for part in (studio.prompts, studio.knobs, studio.votes, studio.html_views, studio.store_api,
                         studio.generate_cli, studio.loading, studio.rewards, studio.parquet):
                start = time.perf_counter()
                part()
                seconds[part.__name__] = round(time.perf_counter() - start, 1)
        finally:
            studio.close()
        if os.environ.get("BAD_INPUTS_VERBOSE"):
            print(seconds, flush=True)
        return studio.rows


def cell(text: str) -> str:
    """A Markdown table cell that shows the text as it is: one line, HTML escaped (an answer that quotes
    ``<script>`` shows it, and one the page escaped shows ``&lt;``), Markdown's own characters backslashed."""
    text = html.escape(" ".join(str(text).split()), quote=False)
    return re.sub(r"([\\|*_`])", r"\\\1", text)


def markdown(rows: list[Row], meta: dict) -> str:
    crashed = sum(r.crashed for r in rows)
    outside = sum(r.crashed and bool(r.outside) for r in rows)
    wrong = [r for r in rows if r.problems and not r.outside]
    lines = [
        "# Bad inputs: the answer each got",
        "",
        (f"{len(rows)} bad inputs through {len({r.entry for r in rows})} entry points; crashed: {crashed} (of "
         f"which {outside} in Gradio's own protocol handling, before any studio code: malformed requests no page "
         f"sends); with a problem (unclear answer, wrong row stored, raw HTML shown): {len(wrong)}. Made by "
         f"`python -m benchmarks.bad_inputs{' --fast' if meta['fast'] else ''}` in {meta['seconds']:.0f} s on "
         f"{meta['machine']} ({meta['when']})."),
        "",
        ("Inputs are shown as Python literals (control characters escaped, long ones cut). *Crashed* means a stack "
         "trace, Gradio's bare 'Error' without a sentence, the page's 'Something went wrong' for an exception "
         "nobody expected, or a process that died of one. *Stored* is the change in rows of sessions, prompts, "
         "generations, comparisons and votes (read with plain SQL), checked against what that input may store."),
        "",
        "| input | entry point | answer | crashed? | stored? |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        problems = f" **Problem: {cell('; '.join(r.problems))}**" if r.problems else ""
        problems += f" *({cell(r.outside)})*" if r.outside else ""
        shown = " ".join(r.input.split()).replace("|", "\\|").replace("`", "ˋ")  # a code span: shown as typed
        lines.append(f"| `{shown}` | {r.entry.replace('|', '/')} | {cell(r.answer)}{problems} | "
                     f"{'**yes**' if r.crashed else 'no'} | {cell(r.stored)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bad_inputs", description=__doc__.split("\n")[0])
    parser.add_argument("--fast", action="store_true", help="run the command lines in this process, fewer of them")
    parser.add_argument("--out", type=Path, default=RESULTS / "bad_inputs.md", help="the markdown table (and .json)")
    parser.add_argument("--render", action="store_true", help="write the table again from the .json, run nothing")
    args = parser.parse_args(argv)
    if args.render:
        report = json.loads(args.out.with_suffix(".json").read_text(encoding="utf-8"))
        rows = [Row(**r) for r in report.pop("rows")]
        args.out.write_text(markdown(rows, report), encoding="utf-8")
        print(f"wrote {args.out}")
        return 0
    import platform

    start = time.perf_counter()
    rows = run(fast=args.fast)
    meta = {"fast": args.fast, "seconds": time.perf_counter() - start, "when": time.strftime("%Y-%m-%d"),
                "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores, Python {platform.python_version()}"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown(rows, meta), encoding="utf-8")
    args.out.with_suffix(".json").write_text(json.dumps(dict(meta, rows=[asdict(r) for r in rows]), indent=1,
                                                        ensure_ascii=False) + "\n", encoding="utf-8")
    bad = [r for r in rows if not r.outside and (r.crashed or r.problems)]
    print(f"{len(rows)} inputs, {sum(r.crashed for r in rows)} crashed, {len(bad)} with a problem → {args.out}")
    for r in bad:
        print(f"  {r.entry} · {r.input}: {r.answer[:160]} [{'; '.join(r.problems)}]")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
