"""Votes that outlive the Space: the vote store synced to a Hugging Face dataset repo, and restored from it at start.

    sync = start(store, "user/studio-votes", every=5)   # restore when the store is empty, then commit every 5 min
    sync.status()                                        # one sentence for the Dashboard
    sync.add_export(path)                                # an export file goes up with the next commit

``STUDIO_HUB_DATASET`` turns it on (``studio/settings.py``); the token is huggingface_hub's own (``HF_TOKEN``, or a
saved login) and needs write access. The dataset (created private) holds a part of the data folder, same layout:

    votes/<run>.jsonl          one line per vote: the CSV export's columns and the session's and pair's own fields
    deletions/<run>.jsonl      one line per vote deleted by an admin after it was synced
    generations/<run>.jsonl    one line per generation: prompt, configuration, seed, rewards, latency, image hash
    images/ab/<sha256>.png     the images, by content hash (left out with ``STUDIO_HUB_IMAGES=0``)
    exports/<file>             the Dashboard's exports

``<run>`` names one run of the studio (UTC start and a random suffix), so a restarted Space never overwrites an
earlier run's files. New lines are appended only by the commit itself (huggingface_hub's ``CommitScheduler``,
subclassed), under the scheduler's lock and before it lists the files, so every commit uploads whole lines. A process
killed between commits loses, on the hub, only the votes since the last commit; nothing already there changes.

Restoring reads every run's files (a vote is one ``comparison_id`` and ``vote_id``; its deletion wins), keeps the ids,
sessions, timestamps and configurations as they were, and skips what the store already has, so restoring twice
adds nothing. A row that can't be read or doesn't fit the store is skipped, logged and counted; start-up goes on.
Missing token or unreachable hub: the studio serves without the sync and says why (log and Dashboard).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import secrets
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from huggingface_hub import CommitScheduler, HfApi
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session as OrmSession

from .schema import CHOICES, Comparison, Generation, Session, Vote
from .store import MAX_SEED, Store, clean_prompt, prompt_of
from .vote_records import generations_query, votes_query

log = logging.getLogger("studio.hub_sync")

KINDS = ("generations", "votes", "deletions")  # written in this order, so a vote's generations go up with it
IMAGE_PATTERN = "images/*/*.png"
CHUNK = 500
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def vote_key(vote_id, comparison_id) -> str:
    """A vote's identity in the synced files: its pair (one vote per pair) and its id."""
    return f"{comparison_id}:{vote_id}"


def _iso(value: datetime | None) -> str | None:
    """A stored time as ISO 8601 in UTC (SQLite keeps no zone: its times are UTC)."""
    if value is None:
        return None
    return (value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)).isoformat()


def _time(value, what: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{what} is not a time")
    parsed = datetime.fromisoformat(value)
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)


def _int(value, what: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_SEED:
        raise ValueError(f"{what} must be a whole number in {low}..{MAX_SEED}, not {value!r:.40}")
    return value


def _id(value, what: str) -> str:
    if not (isinstance(value, str) and 0 < len(value) <= 32 and value.isascii() and value.isalnum()):
        raise ValueError(f"{what} must be 1 to 32 ASCII letters and digits, not {value!r:.40}")
    return value


def _label(value, what: str, max_len: int) -> str:
    if not (isinstance(value, str) and value.strip() and len(value) <= max_len and value.isprintable()):
        raise ValueError(f"{what} must be printable text of 1 to {max_len} characters, not {value!r:.40}")
    return value


def _sha(value, what: str) -> str:
    if not (isinstance(value, str) and _HEX64.match(value)):
        raise ValueError(f"{what} is not an image hash")
    return value


def _finite(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _generation(record: dict, prefix: str = "") -> dict:
    """A generation row's values from a generations line (``prefix`` "") or one side of a vote line."""
    get = lambda name: record[prefix + name]  # noqa: E731 - a KeyError names the missing field
    config, rewards = get("config"), get("rewards")
    if not isinstance(config, dict):
        raise ValueError(f"{prefix}config is not an object")
    if not (isinstance(rewards, dict) and all(_finite(v) for v in rewards.values())):
        raise ValueError(f"{prefix}rewards must map names to finite numbers")
    latency = record.get(prefix + "latency_s")
    if latency is not None and not (_finite(latency) and latency >= 0):
        raise ValueError(f"{prefix}latency_s must be a finite number ≥ 0")
    return dict(id=_int(get("generation_id"), f"{prefix}generation_id", 1), prompt=clean_prompt(record["prompt"]),
                label=_label(get("label"), "label", 200), model=_label(get("model"), "model", 200),
                method=_label(get("method"), "method", 50), config=config,
                rewards={k: float(v) for k, v in rewards.items()}, seed=_int(get("seed"), "seed", 0),
                latency_s=None if latency is None else float(latency),
                image_sha256=_sha(get("image"), f"{prefix}image"),
                created_at=_time(record.get(prefix + "created_at"), "created_at"))


def _vote(record: dict) -> dict:
    """A vote line's values (the vote, its pair and its session), checked."""
    if record["choice"] not in CHOICES:
        raise ValueError(f"choice must be one of {', '.join(CHOICES)}, not {record['choice']!r:.40}")
    left, right = _generation(record, "left_"), _generation(record, "right_")
    if left["id"] == right["id"]:
        raise ValueError("both sides are the same generation")
    client, voted_at = record.get("client_hash"), _time(record["voted_at"], "voted_at")
    if voted_at is None:
        raise ValueError("voted_at is empty")
    return dict(id=_int(record["vote_id"], "vote_id", 1), comparison_id=_id(record["comparison_id"], "comparison_id"),
                session_id=_id(record["session_id"], "session_id"), choice=record["choice"],
                created_at=voted_at, left=left, right=right,
                comparison_created_at=_time(record.get("comparison_created_at"), "comparison_created_at"),
                session_created_at=_time(record.get("session_created_at"), "session_created_at"),
                client_hash=None if client is None else _sha(client, "client_hash"))


@dataclass
class Records:
    """What the synced files hold: vote and generation lines by identity, deleted vote keys, unreadable lines."""

    votes: dict[str, dict] = field(default_factory=dict)
    generations: dict[str, dict] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    files: int = 0
    problems: list[str] = field(default_factory=list)

    def read(self, folder: Path) -> Records:
        """Add every ``<kind>/*.jsonl`` line under ``folder`` (a line that is not a JSON object is a problem)."""
        for kind in KINDS:
            for path in sorted((folder / kind).glob("*.jsonl")):
                self.files += 1
                with path.open("rb") as f:
                    for number, line in enumerate(f, 1):
                        try:
                            record = json.loads(line)
                            if not isinstance(record, dict):
                                raise ValueError("not a JSON object")
                            if kind == "generations":
                                self.generations.setdefault(f"{record['generation_id']}:{record['image']}", record)
                            else:
                                key = vote_key(record["vote_id"], record["comparison_id"])
                                (self.deleted.add(key) if kind == "deletions" else self.votes.setdefault(key, record))
                        except (ValueError, KeyError, TypeError) as e:
                            self.problems.append(f"{kind}/{path.name} line {number}: {_reason(e)}")
        return self


def _reason(e: Exception) -> str:
    return f"missing field {e}" if isinstance(e, KeyError) else f"{type(e).__name__}: {str(e)[:120]}"


@dataclass
class RestoreReport:
    files: int = 0
    votes: int = 0
    generations: int = 0
    already: int = 0  # votes and generations the store had
    deleted: int = 0  # votes deleted by an admin: not restored
    images: int = 0
    images_missing: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        return len(self.problems)

    def __str__(self) -> str:
        text = (f"restored {self.votes} votes and {self.generations} generations from {self.files} files "
                f"({self.already} already here, {self.deleted} deleted by an admin), {self.images} images")
        if self.images_missing:
            text += f"; {self.images_missing} images are in neither the store nor the dataset"
        if self.problems:
            text += f"; skipped {self.skipped} rows that can't be restored (first: {self.problems[0]})"
        return text


def import_records(store: Store, records: Records) -> RestoreReport:
    """Put the records' votes and generations into ``store`` with their ids, skipping what it has; one transaction,
    one savepoint per row, so a row that the database refuses is skipped alone."""
    report = RestoreReport(files=records.files, problems=list(records.problems))

    def parsed(items: dict, parse, kind: str):
        """(key, parsed record) for each record that parses; the others are skipped into the report."""
        for key, record in items.items():
            try:
                yield key, parse(record)
            except (ValueError, KeyError, TypeError) as e:
                report.problems.append(f"{kind} {str(key):.80}: {_reason(e)}")

    generations: dict[int, dict] = {}
    for _, row in parsed(records.generations, _generation, "generation"):
        if generations.setdefault(row["id"], row)["image_sha256"] != row["image_sha256"]:
            report.problems.append(f"generation {row['id']}: two different images under one id")
    votes, sessions, per_session = [], {}, Counter()
    for key, vote in parsed(records.votes, _vote, "vote"):
        per_session[vote["session_id"]] += 1  # deleted votes still count against the session's and client's caps
        sessions.setdefault(vote["session_id"], vote)
        if key in records.deleted:
            report.deleted += 1
            continue
        votes.append(vote)
        for side in (vote["left"], vote["right"]):  # a generation whose own line is lost: rebuilt from the vote
            generations.setdefault(side["id"], side)

    def row(s, make, what: str) -> bool:
        try:
            with s.begin_nested():
                s.add(make())
                s.flush()
            return True
        except Exception as e:  # noqa: BLE001 - one refused row is skipped, not the restore
            report.problems.append(f"{what}: {type(e).__name__}: {str(e).splitlines()[0][:120]}")
            return False

    with OrmSession(store.engine) as s, s.begin():
        for gid, g in sorted(generations.items()):
            have = s.get(Generation, gid)
            if have is not None:
                if have.image_sha256 == g["image_sha256"]:
                    report.already += 1
                else:
                    report.problems.append(f"generation {gid}: the store has another generation under this id")
                continue
            fields = {k: v for k, v in g.items() if k != "prompt" and (k != "created_at" or v is not None)}
            report.generations += row(s, lambda: Generation(prompt_id=prompt_of(s, g["prompt"]).id, **fields),
                                      f"generation {gid}")
        for sid, first in sessions.items():
            if s.get(Session, sid) is None:
                row(s, lambda: Session(id=sid, client_hash=first["client_hash"], vote_count=per_session[sid],
                                       **_when(first["session_created_at"])), f"session {sid}")
        for vote in votes:
            what = f"vote {vote['id']} ({vote['comparison_id']})"
            if s.scalar(select(Vote.id).where(Vote.comparison_id == vote["comparison_id"])) is not None:
                report.already += 1
                continue
            stored = [s.get(Generation, side["id"]) for side in (vote["left"], vote["right"])]
            if any(g is None or g.image_sha256 != side["image_sha256"]
                   for g, side in zip(stored, (vote["left"], vote["right"]))):
                report.problems.append(f"{what}: its generations are not the ones it was cast on")
                continue
            if stored[0].prompt_id != stored[1].prompt_id:
                report.problems.append(f"{what}: its two generations answer different prompts")
                continue
            if s.get(Session, vote["session_id"]) is None:
                report.problems.append(f"{what}: its session could not be restored")
                continue
            pair = s.get(Comparison, vote["comparison_id"])
            if pair is None and not row(s, lambda: Comparison(
                    id=vote["comparison_id"], session_id=vote["session_id"], left_generation_id=vote["left"]["id"],
                    right_generation_id=vote["right"]["id"], **_when(vote["comparison_created_at"])), what):
                continue
            if pair is not None and (pair.session_id, pair.left_generation_id, pair.right_generation_id) != (
                    vote["session_id"], vote["left"]["id"], vote["right"]["id"]):
                report.problems.append(f"{what}: the store shows this pair differently")
                continue
            vote_id = vote["id"] if s.get(Vote, vote["id"]) is None else None  # a taken id: the database picks one
            report.votes += row(s, lambda: Vote(id=vote_id, comparison_id=vote["comparison_id"],
                                                 session_id=vote["session_id"], choice=vote["choice"],
                                                 created_at=vote["created_at"]), what)
        if store.engine.dialect.name == "postgresql":  # rows inserted with their ids leave the sequences behind
            for table in ("prompts", "generations", "votes"):
                s.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                               f"GREATEST((SELECT MAX(id) FROM {table}), 1))"))
    return report


def _when(created_at: datetime | None) -> dict:
    return {} if created_at is None else {"created_at": created_at}


class VoteScheduler(CommitScheduler):
    """``CommitScheduler`` that first appends the store's new rows to the run's files (under its lock)."""

    def __init__(self, *, sync: HubSync, preloaded: dict[Path, float], **kwargs):
        self.sync, self._preloaded = sync, preloaded  # set before the base class starts the thread
        super().__init__(**kwargs)

    def push_to_hub(self):
        try:
            with self.lock:
                self.last_uploaded.update(self._preloaded)  # restored images: already in the dataset
                self._preloaded = {}
                written = self.sync.append_new()
            info = super().push_to_hub()
        except Exception as e:
            self.sync.last_error = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
            log.warning("votes not saved to the hub dataset %s this time: %s", self.repo_id, self.sync.last_error)
            raise
        self.sync.last_error, self.sync.last_commit = None, time.time()
        if written:
            log.info("saved %d new rows to the hub dataset %s", written, self.repo_id)
        return info


class HubSync:
    """The store's sync to one dataset repo: :meth:`open` restores and starts the scheduler; see the module."""

    def __init__(self, store: Store, repo_id: str, *, every: float = 5.0, images: bool = True, api=None):
        self.store, self.repo_id, self.every, self.images = store, repo_id, float(every), images
        self.api = api
        self.folder = Path(store.data_dir)
        self.run = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"
        self.scheduler: VoteScheduler | None = None
        self.report: RestoreReport | None = None
        self.error: str | None = None  # why the sync is off
        self.last_error: str | None = None  # why the last commit failed
        self.last_commit: float | None = None
        self._synced_votes: set[str] = set()
        self._synced_generations: set[str] = set()
        self._known_votes: set[str] = set()

    # -- start -----------------------------------------------------------------------------------------------------

    def open(self) -> HubSync:
        """Read the dataset's records, restore them when the store is empty, fetch missing images, then start
        committing. Raises when the hub can't be used; nothing is written then."""
        self.api = self.api or HfApi()
        with self._staging() as staging:
            records = self._pull(staging)
            report = import_records(self.store, records) if self._store_is_empty() else RestoreReport()
            restored = self._fetch_images(staging, report)
        if report.files or report.images or report.images_missing or report.problems:
            self.report = report
            (log.warning if report.problems or report.images_missing else log.info)(
                "hub dataset %s: %s", self.repo_id, report)
            for problem in report.problems[1:20]:
                log.warning("hub dataset %s: skipped %s", self.repo_id, problem)
        self._synced_votes = set(records.votes) | records.deleted
        self._synced_generations = set(records.generations)
        self._known_votes = self._vote_keys()
        # This run's files only: an earlier run's file in a kept data folder is never uploaded over the dataset's.
        patterns = [f"{kind}/{self.run}.jsonl" for kind in KINDS] + ["exports/*"] + ([IMAGE_PATTERN] if self.images
                                                                                      else [])
        self.scheduler = VoteScheduler(sync=self, preloaded={p.resolve(): p.stat().st_mtime for p in restored},
                                       repo_id=self.repo_id, repo_type="dataset", folder_path=self.folder,
                                       every=self.every, private=True, allow_patterns=patterns,
                                       ignore_patterns=["*/.*", ".*"], hf_api=self.api)
        log.info("votes are saved to the hub dataset %s every %g min", self.repo_id, self.every)
        return self

    def restore(self) -> RestoreReport:
        """Restore the dataset's votes and generations into the store (whatever it holds) and fetch their images."""
        self.api = self.api or HfApi()
        with self._staging() as staging:
            report = import_records(self.store, self._pull(staging))
            self._fetch_images(staging, report)
        return report

    def _staging(self):
        return tempfile.TemporaryDirectory(prefix=".hub-restore-", dir=self.folder)

    def _pull(self, staging: str) -> Records:
        """The dataset's records (downloaded into ``staging``); none when it doesn't exist yet."""
        records = Records()
        if self.api.repo_exists(self.repo_id, repo_type="dataset"):
            self.api.snapshot_download(self.repo_id, repo_type="dataset", local_dir=staging,
                                       allow_patterns=[f"{kind}/*.jsonl" for kind in KINDS])
            records.read(Path(staging))
        return records

    def _store_is_empty(self) -> bool:
        with self.store.engine.connect() as c:
            return not c.scalar(select(func.count()).select_from(Generation))

    def _fetch_images(self, staging: str, report: RestoreReport) -> list[Path]:
        """Download the store's missing images from the dataset, check their hashes and put them in the store;
        returns their paths."""
        restored = []
        with self.store.engine.connect() as c:
            shas = set(c.scalars(select(Generation.image_sha256)))
        missing = sorted(sha for sha in shas if not self.store.images.path(sha).exists())
        if not missing:
            return restored
        if self.images and self.api.repo_exists(self.repo_id, repo_type="dataset"):
            paths = [f"images/{sha[:2]}/{sha}.png" for sha in missing]
            for start in range(0, len(paths), CHUNK):
                self.api.snapshot_download(self.repo_id, repo_type="dataset", local_dir=staging,
                                           allow_patterns=paths[start:start + CHUNK])
        for sha in missing:
            source, target = Path(staging) / "images" / sha[:2] / f"{sha}.png", self.store.images.path(sha)
            if source.is_file() and hashlib.sha256(source.read_bytes()).hexdigest() == sha:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(source, target)
                restored.append(target)
                report.images += 1
            else:
                report.images_missing += 1
        return restored

    # -- each commit ---------------------------------------------------------------------------------------------

    def _vote_keys(self) -> set[str]:
        with self.store.engine.connect() as c:
            return {vote_key(i, cid) for i, cid in c.execute(select(Vote.id, Vote.comparison_id))}

    def append_new(self) -> int:
        """Append the store's rows not yet in the run's files (and deletions) to them; the scheduler calls this under
        its lock before each commit. Returns the number of lines written."""
        with self.store.engine.connect() as c:
            generations = {f"{i}:{sha}": i for i, sha in c.execute(select(Generation.id, Generation.image_sha256))}
            votes = {vote_key(i, cid): i for i, cid in c.execute(select(Vote.id, Vote.comparison_id))}
            new_generations = [i for key, i in generations.items() if key not in self._synced_generations]
            new_votes = [i for key, i in votes.items() if key not in self._synced_votes]
            lines = {"generations": [], "votes": [], "deletions": []}
            for start in range(0, len(new_generations), CHUNK):
                query = generations_query().where(Generation.id.in_(new_generations[start:start + CHUNK]))
                lines["generations"] += [_line(r) for r in c.execute(query).mappings()]
            query = votes_query().add_columns(
                Session.created_at.label("session_created_at"), Session.client_hash,
                Comparison.created_at.label("comparison_created_at")).join(Session, Session.id == Vote.session_id)
            for start in range(0, len(new_votes), CHUNK):
                lines["votes"] += [_line(r) for r in c.execute(query.where(Vote.id.in_(new_votes[start:start + CHUNK])))
                                   .mappings()]
        now = _iso(datetime.now(timezone.utc))
        gone = sorted((self._known_votes - set(votes)) & self._synced_votes)
        lines["deletions"] = [dict(zip(("comparison_id", "vote_id"), key.rsplit(":", 1)), deleted_at=now)
                              for key in gone]
        for line in lines["deletions"]:
            line["vote_id"] = int(line["vote_id"])
        for kind in KINDS:
            self._append(self.folder / kind / f"{self.run}.jsonl", lines[kind])
        self._synced_generations |= set(generations)
        self._synced_votes |= set(votes)
        self._known_votes = set(votes)
        return sum(map(len, lines.values()))

    @staticmethod
    def _append(path: Path, records: list[dict]) -> None:
        if not records:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        data = "".join(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in records).encode()
        with path.open("ab") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    # -- for the page --------------------------------------------------------------------------------------------

    def add_export(self, path: str | Path) -> None:
        """Copy an export file into ``exports/`` (whole, under the lock), for the next commit."""
        if self.scheduler is None:
            return
        source = Path(path)
        target = self.folder / "exports" / source.name
        tmp = target.with_name(f".tmp-{source.name}")
        try:
            with self.scheduler.lock:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, tmp)
                os.replace(tmp, target)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            log.warning("the export %s is not saved to the hub dataset %s: %s", source.name, self.repo_id, e)

    def commit(self):
        """Commit now and wait for it (the schedule goes on)."""
        return self.scheduler.trigger().result()

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.stop()

    def status(self) -> str:
        """One sentence for the Dashboard: where the votes are saved, or why they are not."""
        repo = f"`{self.repo_id}`"
        if self.scheduler is None:
            return (f"⚠️ Votes are not saved to the hub dataset {repo} ({self.error}); they are lost when the Space "
                    "restarts.")
        if self.last_error:
            return (f"⚠️ The last save to the hub dataset {repo} failed ({self.last_error}); it is retried every "
                    f"{self.every:g} min.")
        when = (time.strftime("%H:%M:%S UTC", time.gmtime(self.last_commit)) if self.last_commit
                else "none yet")
        restored = (f" {self.report.votes} votes were restored from it at start." if self.report and self.report.votes
                    else "")
        return f"Votes are saved to the hub dataset {repo} every {self.every:g} min (last save: {when}).{restored}"


def _line(row) -> dict:
    return {k: _iso(v) if isinstance(v, datetime) else v for k, v in dict(row).items()}


def _why(e: Exception) -> str:
    from huggingface_hub.errors import LocalTokenNotFoundError

    status = getattr(getattr(e, "response", None), "status_code", None)
    if isinstance(e, LocalTokenNotFoundError) or status in (401, 403):
        return f"no Hugging Face token with write access to it: set HF_TOKEN ({type(e).__name__})"
    return f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else 'no message'}"


def start(store: Store, repo_id: str, *, every: float = 5.0, images: bool = True, api=None) -> HubSync:
    """:meth:`HubSync.open`, never raising: on failure the sync is off, and the log and ``status()`` say why."""
    sync = HubSync(store, repo_id, every=every, images=images, api=api)
    try:
        return sync.open()
    except Exception as e:  # noqa: BLE001 - no token, no network, a bad repo id: the page serves without the sync
        sync.stop()
        sync.scheduler, sync.error = None, _why(e)
        log.warning("votes are NOT saved to the hub dataset %s: %s. The studio serves; its votes are lost when it "
                    "restarts.", repo_id, sync.error)
        return sync
