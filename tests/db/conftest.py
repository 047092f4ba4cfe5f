"""Every store test runs on both engines: a SQLite file under tmp_path, and PostgreSQL in a
fresh schema of ``TELEGATE_TEST_DATABASE_URL`` (default: the machine's test database),
dropped afterwards. PostgreSQL that does not answer is a skip locally, a failure in CI."""

from __future__ import annotations

import os
import secrets
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from gateway.db import Database
from tests.conftest import need

PG_URL = os.environ.get("TELEGATE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_answers() -> bool:
    try:
        psycopg.connect(PG_URL, connect_timeout=2).close()
    except psycopg.Error:
        return False
    return True


@pytest.fixture(scope="session")
def pg_base() -> str:
    need(_pg_answers(), f"PostgreSQL at {PG_URL} (TELEGATE_TEST_DATABASE_URL)")
    return PG_URL


@pytest.fixture
def pg_url(pg_base: str) -> Iterator[str]:
    """A URL whose connections see only a new, empty schema."""
    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(pg_base, autocommit=True) as c:
        c.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in pg_base else "?"
    options = urllib.parse.quote(f"-csearch_path={schema}")
    try:
        yield f"{pg_base}{sep}options={options}"
    finally:
        with psycopg.connect(pg_base, autocommit=True) as c:
            c.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A Database on either engine, its schemas upgraded as ``serve`` would find them."""
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    d = Database(tmp_path / "data", url)
    d.upgrade()
    try:
        yield d
    finally:
        d.close()
