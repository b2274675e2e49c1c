"""The vote store's tables (SQLAlchemy 2 ORM): sessions, prompts, generations, comparisons and votes.

    sessions     1 ─< comparisons >─ 2 generations >─ 1 prompts
    comparisons  1 ─ 0..1 votes          (a unique comparison_id: one vote per shown pair, ever)

A comparison records which generation was shown on the left and which on the right, so a vote's ``choice``
(left / right / tie / both_bad) is read against what the person saw. ``studio/vote_records.py`` reads the votes
and generations back as flat records through these classes.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import JSON, CheckConstraint, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

CHOICES = ("left", "right", "tie", "both_bad")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class Session(Base):
    """An anonymous voter: a random id, never a name. The client address is kept only as a salted hash."""

    __tablename__ = "sessions"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    client_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    vote_count: Mapped[int] = mapped_column(Integer, default=0)


class Prompt(Base):
    __tablename__ = "prompts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    text_sha256: Mapped[str] = mapped_column(String(64), unique=True)  # long texts can't carry a unique index
    text: Mapped[str] = mapped_column(Text)


class Generation(Base):
    """One image and everything needed to make it again: model, method, full config (β, η, α, N, …), seed."""

    __tablename__ = "generations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id"), index=True)
    label: Mapped[str] = mapped_column(String(200))  # the configuration's name in win rates and ratings
    model: Mapped[str] = mapped_column(String(200))
    method: Mapped[str] = mapped_column(String(50))
    config: Mapped[dict] = mapped_column(JSON)
    seed: Mapped[int] = mapped_column(Integer)
    rewards: Mapped[dict] = mapped_column(JSON)
    latency_s: Mapped[float | None] = mapped_column(Float)
    image_sha256: Mapped[str] = mapped_column(String(64), index=True)


class Comparison(Base):
    """A blind pair shown to one session; the id is random, so it reveals nothing and can't be guessed."""

    __tablename__ = "comparisons"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id"), index=True)
    left_generation_id: Mapped[int] = mapped_column(ForeignKey("generations.id"))
    right_generation_id: Mapped[int] = mapped_column(ForeignKey("generations.id"))


class Vote(Base):
    __tablename__ = "votes"
    __table_args__ = (CheckConstraint(f"choice IN {CHOICES}", name="valid_choice"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    comparison_id: Mapped[str] = mapped_column(ForeignKey("comparisons.id"), unique=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id"), index=True)
    choice: Mapped[str] = mapped_column(String(10))
