"""A private ``redis-server`` per test, on a free loopback port, started and killed here
(never the machine's shared one), and a fresh PostgreSQL schema for replicas that share a
database. A missing redis-server or PostgreSQL is a skip locally, a failure in CI."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import need
from tests.pgschema import answers, fresh_schema
from tests.redisserver import RedisServer, running

PG_URL = os.environ.get("TELEGATE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with running(tmp_path / "redis") as server:
        yield server


@pytest.fixture(scope="session")
def pg_base() -> str:
    need(answers(PG_URL), f"PostgreSQL at {PG_URL} (TELEGATE_TEST_DATABASE_URL)")
    return PG_URL


@pytest.fixture
def pg_url(pg_base: str) -> Iterator[str]:
    """A URL whose connections see only a new, empty schema."""
    with fresh_schema(pg_base) as url:
        yield url
