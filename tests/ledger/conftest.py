"""Ledger fixtures: one store factory per backend, so the same tests run on SQLite and on
PostgreSQL (a fresh schema per test).

PostgreSQL is ``TELEGATE_TEST_DATABASE_URL`` when set, else the machine's own server at
``postgresql://postgres@127.0.0.1:5432/test`` when it answers; without one the PostgreSQL
variants skip locally and fail in CI (``tests/conftest.py:need``).
"""

from __future__ import annotations

import functools
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from ledger.pgstore import PGStore
from ledger.store import LogStore, SQLiteStore
from tests.conftest import need

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"


@functools.cache
def server_url() -> str | None:
    """The test server's URL if it answers, else None."""
    url = os.environ.get("TELEGATE_TEST_DATABASE_URL") or DEFAULT_DATABASE_URL
    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.Error:
        return None
    return url


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A libpq conninfo whose search_path is a new, empty schema (dropped afterwards)."""
    base = server_url()
    need(base is not None, "PostgreSQL (set TELEGATE_TEST_DATABASE_URL or run one locally)")
    assert base is not None
    schema = f"tg_{secrets.token_hex(6)}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}".encode())
    try:
        yield make_conninfo(base, options=f"-c search_path={schema}")
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            # A SIGKILLed child's backend may still be finishing; DROP waits for its locks.
            conn.execute(f"DROP SCHEMA {schema} CASCADE".encode())


Opener = Callable[..., LogStore]


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def open_store(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """``open_store(writer=True)``: a new handle on this test's one log, on ``backend``."""
    if backend == "sqlite":
        return lambda writer=True: SQLiteStore(tmp_path / "log.db", writer=writer)
    url = request.getfixturevalue("pg_url")
    return lambda writer=True: PGStore(url, writer=writer)
