"""Votes and generations as flat records, read from the studio's database with plain SQL.

Evaluations may not import the studio (dependencies point ``studio → evaluations``), so this module knows the
studio's table and column names (``studio/schema.py``) and nothing else of it: the coupling is this file's two
queries. The studio's own ``Store.vote_records()`` calls :func:`read_votes`, so the store's tests check the two
stay in step.

A vote record has :data:`VOTE_COLUMNS`: the choice (``left``, ``right``, ``tie``, ``both_bad``) and, for each
side as shown, the generation's configuration label, model, method, config, seed, rewards and image hash. Every
function of ``evaluations.ratings`` and ``evaluations.dashboard`` takes such records (a DataFrame or a list of
dicts), wherever they came from.
"""

from __future__ import annotations

import json

import pandas as pd
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Engine

SIDE_FIELDS = ("generation_id", "label", "model", "method", "config", "seed", "rewards", "image")
VOTE_COLUMNS = ("vote_id", "voted_at", "choice", "comparison_id", "session_id", "prompt") + tuple(
    f"{side}_{f}" for side in ("left", "right") for f in SIDE_FIELDS)
GENERATION_COLUMNS = ("generation_id", "created_at", "prompt", "label", "model", "method", "config", "seed",
                      "rewards", "latency_s", "image")
JSON_COLUMNS = ("config", "rewards")

_GENERATION = {"generation_id": "id", "label": "label", "model": "model", "method": "method", "config": "config",
               "seed": "seed", "rewards": "rewards", "image": "image_sha256"}
_SIDES = ", ".join(f"{alias}.{col} AS {side}_{name}" for side, alias in (("left", "l"), ("right", "r"))
                   for name, col in _GENERATION.items())
VOTES_SQL = f"""
SELECT v.id AS vote_id, v.created_at AS voted_at, v.choice, v.comparison_id, v.session_id, p.text AS prompt, {_SIDES}
FROM votes v
JOIN comparisons c ON c.id = v.comparison_id
JOIN generations l ON l.id = c.left_generation_id
JOIN generations r ON r.id = c.right_generation_id
JOIN prompts p ON p.id = l.prompt_id
ORDER BY v.id
"""
GENERATIONS_SQL = """
SELECT g.id AS generation_id, g.created_at, p.text AS prompt, g.label, g.model, g.method, g.config, g.seed,
       g.rewards, g.latency_s, g.image_sha256 AS image
FROM generations g JOIN prompts p ON p.id = g.prompt_id
ORDER BY g.id
"""


def _engine(db: str | Engine) -> Engine:
    return db if isinstance(db, Engine) else create_engine(db)


def _as_dict(value) -> dict:
    """JSON columns come back as text from SQLite and as objects from PostgreSQL."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        parsed = json.loads(value)
        if not isinstance(parsed, dict):
            raise ValueError(f"expected a JSON object, not {value!r:.80}")
        return parsed
    return {}  # NULL, or an empty cell of a CSV file


def _read(db: str | Engine, sql: str, columns: tuple[str, ...], needs: tuple[str, ...]) -> pd.DataFrame:
    engine = _engine(db)
    missing = [t for t in needs if not inspect(engine).has_table(t)]
    if missing:
        raise ValueError(f"{engine.url.render_as_string(hide_password=True)} has no table {', '.join(missing)}: "
                         "is it the studio's database?")
    with engine.connect() as connection:
        rows = connection.execute(text(sql)).mappings().all()
    frame = pd.DataFrame([dict(r) for r in rows], columns=list(columns))
    for column in frame.columns:
        if column.endswith(JSON_COLUMNS):
            frame[column] = frame[column].map(_as_dict)
        elif column in ("voted_at", "created_at"):  # text from SQLite, datetime from PostgreSQL; stored in UTC
            frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
    return frame


def read_votes(db: str | Engine) -> pd.DataFrame:
    """All votes (one row each, oldest first) with :data:`VOTE_COLUMNS`; ``db`` is a SQLAlchemy URL or engine."""
    return _read(db, VOTES_SQL, VOTE_COLUMNS, ("votes", "comparisons", "generations", "prompts"))


def read_generations(db: str | Engine) -> pd.DataFrame:
    """All generations with :data:`GENERATION_COLUMNS`."""
    return _read(db, GENERATIONS_SQL, GENERATION_COLUMNS, ("generations", "prompts"))


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
