"""Votes and generations as flat records, read from the studio's database through the store's tables.

A vote record has :data:`VOTE_COLUMNS`: the choice (``left``, ``right``, ``tie``, ``both_bad``) and, for each
side as shown, the generation's configuration label, model, method, config, seed, rewards and image hash. Every
function of ``studio.ratings`` and ``studio.dashboard`` takes such records (a DataFrame or a list of dicts),
wherever they came from: ``Store.vote_records()``, :func:`read_votes` on any database URL (the command line's
dashboard), or a CSV export read back with :func:`as_frame`.

The queries are built from the tables of ``studio/schema.py`` (SQLAlchemy Core over the ORM classes), so a renamed
table or column is renamed here too.
"""

from __future__ import annotations

import json

import pandas as pd
from sqlalchemy import create_engine, inspect, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import aliased

from .schema import Comparison, Generation, Prompt, Vote

SIDE_FIELDS = ("generation_id", "label", "model", "method", "config", "seed", "rewards", "image")
VOTE_COLUMNS = ("vote_id", "voted_at", "choice", "comparison_id", "session_id", "prompt") + tuple(
    f"{side}_{f}" for side in ("left", "right") for f in SIDE_FIELDS)
GENERATION_COLUMNS = ("generation_id", "created_at", "prompt", "label", "model", "method", "config", "seed",
                      "rewards", "latency_s", "image")
JSON_COLUMNS = ("config", "rewards")


def _side(generation, side: str) -> list:
    """The columns of one side of a vote, from an (aliased) generations table, named ``<side>_<field>``."""
    columns = dict(generation_id=generation.id, label=generation.label, model=generation.model,
                   method=generation.method, config=generation.config, seed=generation.seed,
                   rewards=generation.rewards, image=generation.image_sha256)
    return [columns[f].label(f"{side}_{f}") for f in SIDE_FIELDS]


def votes_query():
    """Every vote with its prompt and both generations as shown, oldest first."""
    left, right = aliased(Generation, name="l"), aliased(Generation, name="r")
    return (select(Vote.id.label("vote_id"), Vote.created_at.label("voted_at"), Vote.choice, Vote.comparison_id,
                   Vote.session_id, Prompt.text.label("prompt"), *_side(left, "left"), *_side(right, "right"))
            .join(Comparison, Comparison.id == Vote.comparison_id)
            .join(left, left.id == Comparison.left_generation_id)
            .join(right, right.id == Comparison.right_generation_id)
            .join(Prompt, Prompt.id == left.prompt_id)
            .order_by(Vote.id))


def generations_query():
    """Every generation with its prompt, oldest first."""
    return (select(Generation.id.label("generation_id"), Generation.created_at, Prompt.text.label("prompt"),
                   Generation.label, Generation.model, Generation.method, Generation.config, Generation.seed,
                   Generation.rewards, Generation.latency_s, Generation.image_sha256.label("image"))
            .join(Prompt, Prompt.id == Generation.prompt_id)
            .order_by(Generation.id))


def _engine(db: str | Engine) -> Engine:
    return db if isinstance(db, Engine) else create_engine(db)


def _as_dict(value) -> dict:
    """A JSON column's value: an object from the database, or JSON text from a CSV file."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        parsed = json.loads(value)
        if not isinstance(parsed, dict):
            raise ValueError(f"expected a JSON object, not {value!r:.80}")
        return parsed
    return {}  # NULL, or an empty cell of a CSV file


def _read(db: str | Engine, query, columns: tuple[str, ...], needs: tuple) -> pd.DataFrame:
    engine = _engine(db)
    missing = [t.__tablename__ for t in needs if not inspect(engine).has_table(t.__tablename__)]
    if missing:
        raise ValueError(f"{engine.url.render_as_string(hide_password=True)} has no table {', '.join(missing)}: "
                         "is it the studio's database?")
    with engine.connect() as connection:
        rows = connection.execute(query).mappings().all()
    frame = pd.DataFrame([dict(r) for r in rows], columns=list(columns))
    for column in frame.columns:
        if column.endswith(JSON_COLUMNS):
            frame[column] = frame[column].map(_as_dict)
        elif column in ("voted_at", "created_at"):  # stored in UTC (SQLite keeps no zone: read as UTC)
            frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def read_votes(db: str | Engine) -> pd.DataFrame:
    """All votes (one row each, oldest first) with :data:`VOTE_COLUMNS`; ``db`` is a SQLAlchemy URL or engine."""
    return _read(db, votes_query(), VOTE_COLUMNS, (Vote, Comparison, Generation, Prompt))


def read_generations(db: str | Engine) -> pd.DataFrame:
    """All generations with :data:`GENERATION_COLUMNS`."""
    return _read(db, generations_query(), GENERATION_COLUMNS, (Generation, Prompt))


def as_frame(records, columns: tuple[str, ...] = VOTE_COLUMNS) -> pd.DataFrame:
    """Records (a DataFrame, or a list of dicts as from a CSV export) as a DataFrame; JSON columns held as text
    are parsed. Missing columns are an error, so a wrong file is named, not half-read."""
    frame = records.copy() if isinstance(records, pd.DataFrame) else pd.DataFrame(list(records))
    if frame.empty and not len(frame.columns):
        return pd.DataFrame(columns=list(columns))
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"the records lack the column(s) {', '.join(missing)}")
    for column in frame.columns:
        if column.endswith(JSON_COLUMNS):
            frame[column] = frame[column].map(_as_dict)
    return frame
