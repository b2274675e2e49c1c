"""Fixtures shared by the test modules: ``database_url`` (SQLite and PostgreSQL), ``postgres_url``."""

from postgres import database_url, postgres_server, postgres_url  # noqa: F401  (pytest finds fixtures by name)
