"""Every store test runs on both engines: a SQLite file under tmp_path, and PostgreSQL in a
fresh schema of ``TELEGATE_TEST_DATABASE_URL`` (default: the machine's test database),
dropped afterwards. PostgreSQL that does not answer is a skip locally, a failure in CI."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway.db import Database
from ledger.log import Log
from ledger.note import Signer
from ledger.store import SQLiteStore
from tests.conftest import need
from tests.pgschema import answers, fresh_schema

PG_URL = os.environ.get("TELEGATE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def pg_base() -> str:
    need(answers(PG_URL), f"PostgreSQL at {PG_URL} (TELEGATE_TEST_DATABASE_URL)")
    return PG_URL


@pytest.fixture
def pg_url(pg_base: str) -> Iterator[str]:
    """A URL whose connections see only a new, empty schema."""
    with fresh_schema(pg_base) as url:
        yield url


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


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Log]:
    """An embedded log for store tests that record on one (revocations, tokens)."""
    log = Log(SQLiteStore(tmp_path / "ledger.db"), Signer.generate("r.example/t/log"))
    log.start()
    yield log
    await asyncio.to_thread(log.close)
