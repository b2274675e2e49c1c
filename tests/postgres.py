"""PostgreSQL for the store and load tests: a fresh database per test on the server named by
``STUDIO_TEST_POSTGRES_URL`` (a SQLAlchemy URL such as ``postgresql+psycopg://studio@127.0.0.1:5432/studio``).

``.ci/run`` starts a throwaway server on loopback, sets that variable and ``STUDIO_POSTGRES_TESTS=required``: then
a missing or unreachable server fails the PostgreSQL cases loudly. Elsewhere they skip with the reason.

    def test_something(database_url):      # runs twice: on a fresh SQLite file and on a fresh PostgreSQL database
        store = Store(database_url, ...)
"""

from __future__ import annotations

import os
import secrets

import pytest

URL_VARIABLE = "STUDIO_TEST_POSTGRES_URL"
BACKENDS = ("sqlite", "postgresql")


def _missing(reason: str):
    if os.environ.get("STUDIO_POSTGRES_TESTS") == "required":
        pytest.fail(f"PostgreSQL tests are required here but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server():
    """An engine on the test server's maintenance database (autocommit, for CREATE / DROP DATABASE)."""
    url = os.environ.get(URL_VARIABLE)
    if not url:
        _missing(f"{URL_VARIABLE} is not set (.ci/run starts a server and sets it)")
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    try:
        engine = create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        with engine.connect() as c:
            c.execute(text("SELECT 1"))
    except Exception as e:  # no driver, bad URL, server down
        _missing(f"{URL_VARIABLE} can't be used: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_url(postgres_server):
    """The URL of a new, empty database, dropped after the test (with whatever connections are left)."""
    from sqlalchemy import text

    name = f"studio_test_{secrets.token_hex(6)}"
    with postgres_server.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}" TEMPLATE template0'))
    yield postgres_server.url.set(database=name).render_as_string(hide_password=False)
    with postgres_server.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=BACKENDS)
def database_url(request, tmp_path):
    """A fresh database: a SQLite file, then a PostgreSQL database (see the module's docstring)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'votes.sqlite'}"
    return request.getfixturevalue("postgres_url")
