"""A fresh PostgreSQL schema per test (the ``pg_url`` fixture; import it to use it).

PostgreSQL is ``TELEGATE_TEST_DATABASE_URL`` when set, else the machine's own server at
``postgresql://postgres@127.0.0.1:5432/test`` when it answers; without one the tests that
need it skip locally and fail in CI (``tests/conftest.py:need``).
"""

from __future__ import annotations

import functools
import os
import secrets
from collections.abc import Iterator
from urllib.parse import quote

import psycopg
import pytest

from tests.conftest import need

__all__ = ["DEFAULT_DATABASE_URL", "pg_url", "server_url"]

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
    """A ``postgresql://`` URL whose search_path is a new, empty schema (dropped after)."""
    base = server_url()
    need(base is not None, "PostgreSQL (set TELEGATE_TEST_DATABASE_URL or run one locally)")
    assert base is not None
    schema = f"tg_{secrets.token_hex(6)}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}".encode())
    try:
        sep = "&" if "?" in base else "?"
        yield f"{base}{sep}options={quote(f'-c search_path={schema}')}"
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            # A SIGKILLed child's backend may still be finishing; DROP waits for its locks.
            conn.execute(f"DROP SCHEMA {schema} CASCADE".encode())
