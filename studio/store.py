"""The vote store: sessions, prompts, generations, blind comparisons and votes in a SQL database, images on disk.

    store = Store()                                   # STUDIO_DATABASE_URL, else SQLite under /data or ./studio-data
    session = store.start_session(client_address="203.0.113.7")
    a = store.add_generation("a red star", image_a, model="toy-sdxl", method="baseline", config={}, seed=0,
                             rewards={"toy-pickscore": 0.3}, latency_s=0.4)
    b = store.add_generation("a red star", image_b, model="toy-sdxl", method="guided", config={"beta": 0.5}, ...)
    comparison = store.create_comparison(session, left_generation_id=b, right_generation_id=a)
    store.record_vote(session, comparison, "left")   # a second call raises VoteRefused; nothing is stored twice

Every write is one transaction: it happens whole or not at all. A busy (locked) database is retried with
exponential backoff, then reported as :class:`StoreBusy` (SQLite waits ``busy_timeout_s`` for its lock, PostgreSQL as
long: its ``lock_timeout``; a serialization failure or deadlock is busy too); a read-only, full or unreachable one
as :class:`StoreUnavailable`; a refused vote (already voted, cap reached, another session's pair) as
:class:`VoteRefused`. All three are :class:`StoreError`, whose message is written for the person in front of the
page. Bad arguments (empty prompt, NaN reward, unknown choice) raise ``ValueError`` before anything is written.

Settings (environment): ``STUDIO_DATABASE_URL`` (any SQLAlchemy URL, e.g. ``postgresql+psycopg://…``),
``STUDIO_DATA_DIR`` (images, the default SQLite file and the client-address salt), ``STUDIO_VOTE_CAP`` (votes per
session, default 200), ``STUDIO_CLIENT_VOTE_CAP`` (votes per client address over all its sessions, default 1000),
``STUDIO_CLIENT_SALT`` (the salt of client-address hashes; else a random one kept in the data folder).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import random
import secrets
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, TypeVar

from PIL import Image
from sqlalchemy import create_engine, delete, event, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import sessionmaker

from .images import ImageStore
from .schema import CHOICES, Base, Comparison, Generation, Prompt, Session, Vote

T = TypeVar("T")
MAX_PROMPT_CHARS = 2000  # the same rule as alignment.sampling.check_prompt (tests hold them equal)
MAX_SEED = 2**31 - 1  # the seed column is a 32-bit integer; the page's inputs are held to it by
# alignment.checks.check_seed(seed, limit=MAX_SEED + 1) (studio/checks.py). add_generation checks it again
# itself, as clean_prompt does the prompt, because the store imports no model code (alignment loads torch).
LABEL_KEYS = {"beta": "β", "eta": "η", "alpha": "α", "n": "N", "tau": "τ", "scale": "λ", "sigma_min": "σmin",
              "sigma_max": "σmax", "damping": "κ", "particles": "K", "rounds": "R"}


class StoreError(RuntimeError):
    """A store failure with a message meant for the person using the page."""


class StoreBusy(StoreError):
    """The database stayed locked through every retry."""


class StoreUnavailable(StoreError):
    """The database can't be written: read-only, disk full, or unreachable."""


class VoteRefused(StoreError):
    """The vote was not stored: already voted on this pair, vote cap reached, or not this session's pair."""


def default_data_dir() -> Path:
    """``STUDIO_DATA_DIR``; else ``/data/studio`` when ``/data`` exists (Hugging Face Spaces persistent storage);
    else ``studio-data/`` next to this package."""
    if os.environ.get("STUDIO_DATA_DIR"):
        return Path(os.environ["STUDIO_DATA_DIR"])
    if Path("/data").is_dir():
        return Path("/data/studio")
    return Path(__file__).resolve().parent.parent / "studio-data"


def clean_prompt(text: str) -> str:
    """The prompt with non-printable characters turned to spaces and whitespace collapsed; ValueError when empty or
    longer than MAX_PROMPT_CHARS (as ``alignment.sampling.check_prompt``, without importing the models)."""
    if not isinstance(text, str):
        raise ValueError(f"the prompt must be text, not {type(text).__name__}")
    cleaned = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    if not cleaned:
        raise ValueError("the prompt is empty")
    if len(cleaned) > MAX_PROMPT_CHARS:
        raise ValueError(f"the prompt has {len(cleaned)} characters; at most {MAX_PROMPT_CHARS} are accepted")
    return cleaned


def prompt_of(s, text: str) -> Prompt:
    """The prompt row of a (cleaned) text in the open ORM session ``s``, added when new: prompts are stored once,
    by their SHA-256."""
    digest = hashlib.sha256(text.encode()).hexdigest()
    row = s.scalar(select(Prompt).where(Prompt.text_sha256 == digest))
    if row is None:
        row = Prompt(text_sha256=digest, text=text)
        s.add(row)
        s.flush()
    return row


def config_label(model: str, method: str, config: dict) -> str:
    """A configuration's default name: ``toy-sdxl · guided · β=0.5 η=1``, from the β, η, α, N present."""
    knobs = " ".join(f"{sym}={config[key]:g}" if isinstance(config[key], float) else f"{sym}={config[key]}"
                     for key, sym in LABEL_KEYS.items() if key in config)
    return " · ".join(part for part in (model, method, knobs) if part)


def _json_object(value, what: str) -> dict:
    """A JSON object with finite numbers only (NaN and ±inf are not JSON), as plain Python types."""
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"{what} must be a dict with text keys")

    def plain(o):
        if hasattr(o, "item"):  # numpy scalars
            return o.item()
        raise TypeError(f"{type(o).__name__} is not JSON")

    try:
        return json.loads(json.dumps(value, allow_nan=False, default=plain))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what} must hold only JSON values with finite numbers: {e}") from e


def _rewards(value) -> dict[str, float]:
    rewards = _json_object(value, "rewards")
    for name, score in rewards.items():
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            raise ValueError(f"reward {name!r} must be a number, not {score!r}")
    return {name: float(score) for name, score in rewards.items()}


def _text(value, what: str, max_len: int) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > max_len or not value.isprintable():
        raise ValueError(f"{what} must be printable text of 1 to {max_len} characters, not {value!r:.80}")
    return value.strip()


# PostgreSQL's SQLSTATE codes (psycopg's ``sqlstate``, psycopg2's ``pgcode``), by prefix. Busy, so retried: a
# serialization failure, a deadlock, a lock wait past lock_timeout, too many connections. Unavailable: a read-only
# transaction (a hot standby, default_transaction_read_only), a lost connection (08), a full disk or no memory (53),
# a server shutting down or starting (57P).
_BUSY_STATES = ("40001", "40P01", "55P03", "53300")
_UNAVAILABLE_STATES = ("25006", "08", "53", "57P")


def _text_id(value) -> str:
    """A session or comparison id as given, or "" (which names no row) when it can't be one: not text, not ASCII
    letters and digits, over 64 characters. PostgreSQL would refuse a NUL byte or a number with an error of its own
    where SQLite finds nothing; both now find nothing, and the caller's "unknown ..." follows."""
    return value if isinstance(value, str) and len(value) <= 64 and value.isascii() and value.isalnum() else ""


def _number_id(value) -> int:
    """A generation id as given, or 0 (which names no row) when it is not a whole number in 1..2^31-1 (PostgreSQL's
    integer: a larger one, or text, would be an error there)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_SEED else 0


def _classify(error: DBAPIError) -> str:
    state = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
    if isinstance(state, str) and state.startswith(_BUSY_STATES):
        return "busy"
    if isinstance(state, str) and state.startswith(_UNAVAILABLE_STATES):
        return "unavailable"
    if not isinstance(error, OperationalError):  # constraint violations, bad SQL: not the database's state
        return "other"
    message = str(error.orig if error.orig is not None else error).lower()
    if any(s in message for s in ("locked", "busy", "could not serialize", "deadlock", "lock timeout")):
        return "busy"
    if any(s in message for s in ("readonly", "read-only", "disk is full", "no space", "disk i/o",
                                  "unable to open", "could not connect", "connection refused", "closed the connection")):
        return "unavailable"
    return "other"


def _sqlite_engine(url: str, busy_timeout_s: float):
    """SQLite with foreign keys on, WAL, a busy timeout, fsync on commit, and real BEGIN statements (pysqlite's own
    transaction handling delays BEGIN and is bypassed, as SQLAlchemy's documentation advises). A write transaction
    (execution option ``sqlite_write``) begins IMMEDIATE: it takes the write lock first, waiting for it with the
    busy timeout; a deferred one that reads and then writes fails at once (SQLITE_BUSY_SNAPSHOT, no waiting) when
    another writer committed in between, which lost votes to "busy" under concurrent voters."""
    engine = create_engine(url, connect_args={"timeout": busy_timeout_s})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE" if connection.get_execution_options().get("sqlite_write")
                                   else "BEGIN")

    return engine


def _server_engine(url: str, busy_timeout_s: float):
    """A database server's engine (connections checked before use). On PostgreSQL a lock wait ends after
    ``busy_timeout_s`` (``lock_timeout``), as SQLite's busy timeout does, and is retried like a busy SQLite: without
    it a vote would wait for as long as another connection holds its lock."""
    engine = create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "postgresql":
        @event.listens_for(engine, "connect")
        def _lock_timeout(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute(f"SET lock_timeout = {max(int(busy_timeout_s * 1000), 1)}")
            cursor.close()
            dbapi_connection.commit()  # SET is transactional: a rollback would undo it

    return engine


class Store:
    def __init__(self, url: str | None = None, data_dir: str | Path | None = None, *,
                 vote_cap: int | None = None, client_vote_cap: int | None = None, client_salt: str | None = None,
                 busy_timeout_s: float = 2.0, retries: int = 4, backoff_s: float = 0.05,
                 sleep: Callable[[float], None] = time.sleep):
        self.data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
        self.url = url or os.environ.get("STUDIO_DATABASE_URL") or f"sqlite:///{self.data_dir / 'studio.sqlite'}"
        self.vote_cap = int(vote_cap if vote_cap is not None else os.environ.get("STUDIO_VOTE_CAP", 200))
        self.client_vote_cap = int(client_vote_cap if client_vote_cap is not None
                                   else os.environ.get("STUDIO_CLIENT_VOTE_CAP", 1000))
        self.retries, self.backoff_s, self._sleep = retries, backoff_s, sleep
        try:
            self._make_data_dir()
            self._salt = client_salt or os.environ.get("STUDIO_CLIENT_SALT") or self._stored_salt()
        except OSError as e:
            raise StoreUnavailable(f"The studio's data folder {self.data_dir} can't be written ({e.strerror}); "
                                   "votes can't be saved. Generation still works.") from e
        self.images = ImageStore(self.data_dir / "images")
        if self.url.startswith("sqlite"):
            self.engine = _sqlite_engine(self.url, busy_timeout_s)
        else:
            self.engine = _server_engine(self.url, busy_timeout_s)
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer at a time. Two threads of this process that both wait for its lock wait in SQLite's
        # busy handler, which polls with sleeps (up to 100 ms each): under 50 voters that, not the writes, was most
        # of a pair's time. So this process's writers queue on a lock of their own and get SQLite's at once; other
        # processes' writers still wait with the busy timeout. A database server takes concurrent writers itself.
        self._write_lock = threading.Lock() if self.engine.dialect.name == "sqlite" else None
        self._retrying(lambda: Base.metadata.create_all(self.engine))

    def __repr__(self) -> str:
        return f"Store({self.engine.url.render_as_string(hide_password=True)!r}, images={str(self.images.folder)!r})"

    def close(self) -> None:
        self.engine.dispose()

    # -- plumbing ------------------------------------------------------------------------------------------------

    def _make_data_dir(self) -> None:
        fresh = not self.data_dir.exists()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if fresh and not Path("/data").is_dir():  # a local folder: keep votes and images out of git
            (self.data_dir / ".gitignore").write_text("*\n")

    def _stored_salt(self) -> str:
        """A random salt kept (mode 0600) in the data folder; created whole, once, even by racing processes."""
        path = self.data_dir / "client_salt"
        if not path.exists():
            fd, tmp = tempfile.mkstemp(dir=self.data_dir, prefix=".salt-")  # mode 0600
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(secrets.token_hex(32))
                os.link(tmp, path)  # atomic; the first process to get here wins
            except FileExistsError:
                pass
            finally:
                os.unlink(tmp)
        return path.read_text().strip()

    def _retrying(self, work: Callable[[], T]) -> T:
        """Run ``work``; on a locked database wait backoff_s · 2^k (with jitter) and retry, up to ``retries``."""
        for attempt in range(self.retries + 1):
            try:
                return work()
            except DBAPIError as e:
                kind = _classify(e)
                if kind == "busy" and attempt < self.retries:
                    self._sleep(self.backoff_s * 2**attempt * (0.5 + random.random()))
                    continue
                if kind == "busy":
                    raise StoreBusy(f"The vote database is busy (still locked after {self.retries + 1} tries); "
                                    "nothing was saved. Please try again in a moment.") from e
                if kind == "unavailable":
                    raise StoreUnavailable("The vote database can't be written right now (read-only, full or "
                                           "unreachable); nothing was saved. Generation still works.") from e
                raise
        raise AssertionError("unreachable")

    def _transaction(self, work: Callable, *, write: bool = True) -> T:
        """``work(session)`` in one transaction, committed whole or rolled back, with retries. A ``write`` one
        takes SQLite's write lock at its start (see :func:`_sqlite_engine`)."""
        def once():
            with self._session.begin() as s:
                if write:
                    s.connection(execution_options={"sqlite_write": True})
                return work(s)

        if write and self._write_lock is not None:
            def once_locked():
                with self._write_lock:
                    return once()
            return self._retrying(once_locked)
        return self._retrying(once)

    def client_hash(self, client_address: str) -> str:
        """HMAC-SHA256 of the address with the store's salt: the same client gives the same hash, which can't be
        turned back into the address without the salt."""
        return hmac.new(self._salt.encode(), client_address.encode(), hashlib.sha256).hexdigest()

    # -- writes --------------------------------------------------------------------------------------------------

    def start_session(self, client_address: str | None = None) -> str:
        """A new anonymous session; its random id is what the page keeps."""
        if client_address is not None and not isinstance(client_address, str):
            raise ValueError("client_address must be text")
        session_id = secrets.token_hex(16)
        client = self.client_hash(client_address) if client_address else None
        self._transaction(lambda s: s.add(Session(id=session_id, client_hash=client, vote_count=0)))
        return session_id

    def add_generation(self, prompt: str, image: Image.Image, *, model: str, method: str, config: dict, seed: int,
                       rewards: dict[str, float], latency_s: float | None = None, label: str | None = None) -> int:
        """Store one generated image and how it was made; returns the generation id. ``config`` holds every knob
        (β, η, α, N, steps, …) as JSON; ``label`` names the configuration (default :func:`config_label`)."""
        return self.add_generations(prompt, [dict(image=image, model=model, method=method, config=config, seed=seed,
                                                  rewards=rewards, latency_s=latency_s, label=label)])[0]

    def add_generations(self, prompt: str, generations: list[dict]) -> list[int]:
        """Several generations of one prompt (each a dict of :meth:`add_generation`'s keyword arguments and its
        ``image``) in one transaction, all or none; returns their ids in order. An arena pair is stored so."""
        write = self._generations_writer(prompt, generations)
        return self._adding_prompt(lambda s: [row.id for row in write(s)[1]])

    def _adding_prompt(self, write: Callable) -> T:
        """``write`` in a transaction, once more if another writer added the same new prompt between our read and
        insert (the unique index refuses the second)."""
        try:
            return self._transaction(write)
        except IntegrityError:
            return self._transaction(write)

    def _generations_writer(self, prompt: str, generations: list[dict]) -> Callable:
        """Checks the generations and writes their images (files first: content-addressed, so a file left behind
        is harmless); returns ``write(session) -> (prompt row, generation rows)`` that adds the rows within a
        transaction. Holding the rows keeps them in the ORM session's identity map (it holds rows weakly), so the
        rest of the transaction reads them without a query."""
        text = clean_prompt(prompt)
        if not isinstance(generations, (list, tuple)) or not generations:
            raise ValueError("generations must be a non-empty list of dicts")
        rows = [self._generation_fields(**g) for g in generations]  # everything checked before anything is written
        try:
            shas = [self.images.put(image) for image, _ in rows]
        except OSError as e:
            reason = e.strerror or str(e) or type(e).__name__
            raise StoreUnavailable(f"The image couldn't be saved because the image folder can't be written (the "
                                   f"system says “{reason}”). Nothing was stored. Generation still works.") from e

        def write(s):
            prompt_row = prompt_of(s, text)
            added = [Generation(prompt_id=prompt_row.id, image_sha256=sha, **fields)
                     for sha, (_, fields) in zip(shas, rows)]
            s.add_all(added)
            s.flush()
            return prompt_row, added

        return write

    @staticmethod
    def _generation_fields(*, image: Image.Image, model: str, method: str, config: dict, seed: int,
                           rewards: dict[str, float], latency_s: float | None = None,
                           label: str | None = None) -> tuple[Image.Image, dict]:
        """(image, the generation row's columns) checked; ValueError says what is wrong."""
        model, method = _text(model, "model", 200), _text(method, "method", 50)
        config, rewards = _json_object(config, "config"), _rewards(rewards)
        label = _text(label, "label", 200) if label is not None else config_label(model, method, config)
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            raise ValueError(f"seed must be a whole number in 0..{MAX_SEED}, not {seed!r}")
        if latency_s is not None and not (isinstance(latency_s, (int, float)) and math.isfinite(latency_s)
                                          and latency_s >= 0):
            raise ValueError(f"latency_s must be a finite number of seconds ≥ 0, not {latency_s!r}")
        return image, dict(label=label, model=model, method=method, config=config, seed=seed, rewards=rewards,
                           latency_s=None if latency_s is None else float(latency_s))

    def create_comparison(self, session_id: str, left_generation_id: int, right_generation_id: int) -> str:
        """Record that this session is shown these two generations, on these sides; returns the comparison id."""
        return self._create_comparison(session_id, left_generation_id, right_generation_id, within_cap=False)["id"]

    def show_pair(self, session_id: str, left_generation_id: int, right_generation_id: int) -> dict:
        """:meth:`create_comparison`, refused (VoteRefused) when the session has no votes left, so that no pair is
        shown that can't be voted on; returns the new comparison as :meth:`comparison` with ``generations``, read in
        the same transaction (the arena's pair is one write)."""
        return self._create_comparison(session_id, left_generation_id, right_generation_id, within_cap=True)

    def _create_comparison(self, session_id: str, left_generation_id: int, right_generation_id: int, *,
                           within_cap: bool) -> dict:
        return self._transaction(self._comparison_writer(session_id, left_generation_id, right_generation_id,
                                                         within_cap=within_cap))

    def add_pair(self, session_id: str, prompt: str, left: dict, right: dict) -> dict:
        """An arena pair in one transaction: both generations (:meth:`add_generations`' dicts) and the comparison
        that shows them on these sides, refused (VoteRefused, nothing stored) when the session has no votes left;
        returns the comparison as :meth:`show_pair` does."""
        add = self._generations_writer(prompt, [left, right])

        def write(s):
            prompt_row, (left_row, right_row) = add(s)  # held while the comparison reads them back
            return self._comparison_writer(session_id, left_row.id, right_row.id, within_cap=True)(s)

        return self._adding_prompt(write)

    def _comparison_writer(self, session_id: str, left_generation_id: int, right_generation_id: int, *,
                           within_cap: bool) -> Callable:
        comparison_id = secrets.token_hex(16)

        def write(s):
            session = s.get(Session, _text_id(session_id))
            if session is None:
                raise ValueError("unknown session: reload the page to start a new one")
            if within_cap and session.vote_count >= self.vote_cap:
                raise VoteRefused(f"This session has reached its limit of {self.vote_cap} votes. Thank you!")
            left = s.get(Generation, _number_id(left_generation_id))
            right = s.get(Generation, _number_id(right_generation_id))
            if left is None or right is None:
                raise ValueError(f"unknown generation id {left_generation_id if left is None else right_generation_id}")
            if left.id == right.id:
                raise ValueError("a comparison needs two different generations")
            if left.prompt_id != right.prompt_id:
                raise ValueError("both generations of a comparison must answer the same prompt")
            s.add(Comparison(id=comparison_id, session_id=session_id, left_generation_id=left.id,
                             right_generation_id=right.id))
            return dict(id=comparison_id, session_id=session_id, left_generation_id=left.id,
                        right_generation_id=right.id, choice=None, left=self._generation(s, left.id),
                        right=self._generation(s, right.id))

        return write

    def record_vote(self, session_id: str, comparison_id: str, choice: str) -> int:
        """Store the session's vote on its comparison, exactly once; returns the session's votes left after it.
        Raises VoteRefused (with the reason) when the pair was already voted on, the session or its client reached
        its cap, or the pair is another session's."""
        return self._record_vote(session_id, comparison_id, choice, reveal=False)

    def record_vote_and_reveal(self, session_id: str, comparison_id: str, choice: str) -> dict:
        """:meth:`record_vote`, returning the voted comparison as :meth:`comparison` with ``generations`` and the
        session's ``votes_left``, read in the same transaction (the arena's vote is one write)."""
        return self._record_vote(session_id, comparison_id, choice, reveal=True)

    def _record_vote(self, session_id: str, comparison_id: str, choice: str, *, reveal: bool):
        if choice not in CHOICES:
            raise ValueError(f"choice must be one of {', '.join(CHOICES)}, not {choice!r}")

        def write(s):
            comparison = s.get(Comparison, _text_id(comparison_id))
            if comparison is None:
                raise ValueError("unknown comparison: ask for a new pair")
            if comparison.session_id != session_id:
                raise VoteRefused("This pair was shown to another session; your vote was not stored.")
            if s.scalar(select(Vote.id).where(Vote.comparison_id == comparison_id)) is not None:
                raise VoteRefused("You already voted on this pair; the first vote counts.")
            client = s.scalar(select(Session.client_hash).where(Session.id == session_id))
            if client is not None:
                # The client's sessions are locked (in id order, so two voters can't deadlock) until this vote is
                # committed: on PostgreSQL concurrent votes of one client would otherwise each read the same total
                # and pass its cap together. SQLite, one writer at a time, leaves FOR NO KEY UPDATE out.
                used = sum(s.scalars(select(Session.vote_count).where(Session.client_hash == client)
                                     .order_by(Session.id).with_for_update(key_share=True)))
                if used >= self.client_vote_cap:
                    raise VoteRefused(f"This connection has reached its limit of {self.client_vote_cap} votes. "
                                      "Thank you!")
            count = (update(Session).where(Session.id == session_id, Session.vote_count < self.vote_cap)
                     .values(vote_count=Session.vote_count + 1))
            if s.get_bind().dialect.update_returning:  # the new count with the update (SQLite ≥ 3.35, PostgreSQL)
                counted = s.execute(count.returning(Session.vote_count)).scalar()
            else:
                counted = (s.scalar(select(Session.vote_count).where(Session.id == session_id))
                           if s.execute(count).rowcount == 1 else None)
            if counted is None:
                raise VoteRefused(f"This session has reached its limit of {self.vote_cap} votes. Thank you!")
            s.add(Vote(comparison_id=comparison_id, session_id=session_id, choice=choice))
            s.flush()
            votes_left = max(self.vote_cap - counted, 0)
            if not reveal:
                return votes_left
            left, right = self._generations(s, comparison.left_generation_id, comparison.right_generation_id)
            return dict(id=comparison.id, session_id=comparison.session_id,
                        left_generation_id=comparison.left_generation_id,
                        right_generation_id=comparison.right_generation_id, choice=choice,
                        left=left, right=right, votes_left=votes_left)

        try:
            return self._transaction(write)
        except IntegrityError as e:  # a concurrent duplicate (double click) lost the race to the unique index
            raise VoteRefused("You already voted on this pair; the first vote counts.") from e

    # -- reads ---------------------------------------------------------------------------------------------------

    def generation(self, generation_id: int) -> dict:
        """Everything about one generation (its configuration included): for after the vote, never before."""
        return self._transaction(lambda s: self._generation(s, generation_id), write=False)

    @staticmethod
    def _generation(s, generation_id: int) -> dict:
        row = s.get(Generation, _number_id(generation_id))
        if row is None:
            raise ValueError(f"unknown generation id {generation_id}")
        return Store._generation_dict(row, s.get(Prompt, row.prompt_id).text)

    @staticmethod
    def _generations(s, *generation_ids: int) -> list[dict]:
        """:meth:`_generation` of several ids, in their order, in one query."""
        ids = [_number_id(g) for g in generation_ids]
        found = {row.id: Store._generation_dict(row, text) for row, text in s.execute(
            select(Generation, Prompt.text).join(Prompt, Prompt.id == Generation.prompt_id)
            .where(Generation.id.in_(ids)))}
        missing = [g for g in ids if g not in found]
        if missing:
            raise ValueError(f"unknown generation id {missing[0]}")
        return [found[g] for g in ids]

    @staticmethod
    def _generation_dict(row: Generation, prompt: str) -> dict:
        return dict(id=row.id, prompt=prompt, label=row.label, model=row.model, method=row.method,
                    config=row.config, seed=row.seed, rewards=row.rewards, latency_s=row.latency_s,
                    image_sha256=row.image_sha256)

    def comparison(self, comparison_id: str, *, generations: bool = False) -> dict:
        """A comparison: its session, the two generation ids by side, and the vote's choice (None before it); with
        ``generations``, also ``left`` and ``right``: each side's :meth:`generation`, read in the same transaction."""
        def read(s):
            row = s.get(Comparison, _text_id(comparison_id))
            if row is None:
                raise ValueError("unknown comparison: ask for a new pair")
            choice = s.scalar(select(Vote.choice).where(Vote.comparison_id == comparison_id))
            found = dict(id=row.id, session_id=row.session_id, left_generation_id=row.left_generation_id,
                         right_generation_id=row.right_generation_id, choice=choice)
            if generations:
                found["left"], found["right"] = self._generations(s, row.left_generation_id,
                                                                  row.right_generation_id)
            return found
        return self._transaction(read, write=False)

    def votes_left(self, session_id: str) -> int:
        session_id = _text_id(session_id)
        count = self._transaction(lambda s: s.scalar(select(Session.vote_count).where(Session.id == session_id)),
                                  write=False)
        if count is None:
            raise ValueError("unknown session: reload the page to start a new one")
        return max(self.vote_cap - count, 0)

    def delete_votes(self, session_id: str) -> int:
        """An admin action: delete every vote of one session (a spammer's, say) and return how many. The session's
        vote count is kept, so its caps still count those votes; prompts, generations and images stay."""
        session_id = _text_id(session_id)

        def write(s):
            if s.get(Session, session_id) is None:
                raise ValueError("unknown session: copy its id from the votes table or the CSV export")
            return s.execute(delete(Vote).where(Vote.session_id == session_id)).rowcount

        return int(self._transaction(write))

    def image(self, sha256: str) -> Image.Image:
        return self.images.get(sha256)

    def image_path(self, sha256: str) -> Path:
        """The stored PNG's file (FileNotFoundError when it is missing)."""
        path = self.images.path(sha256)
        if not path.is_file():
            raise FileNotFoundError(f"image {sha256} is not in {self.images.folder}")
        return path

    def vote_records(self):
        """Every vote joined with its prompt and both generations: a DataFrame in the form that
        ``studio.ratings`` and ``studio.dashboard`` take (columns: ``studio.vote_records``)."""
        from .vote_records import read_votes  # pandas: imported when first read, not with the store

        return self._retrying(lambda: read_votes(self.engine))

    def generation_records(self):
        """Every generation with its prompt, configuration and rewards (for reward distributions)."""
        from .vote_records import read_generations

        return self._retrying(lambda: read_generations(self.engine))
