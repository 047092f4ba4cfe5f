"""Replicas that share invalidations through Redis: a private ``redis-server`` on a free
loopback port (never the machine's 6379), killed after the test, restartable on its port;
gateways in this process on one fresh PostgreSQL schema and one data dir. Without
redis-server or PostgreSQL the tests skip locally and fail in CI (tests/conftest.py)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config import Config
from gateway.db import Database
from tests.conftest import need
from tests.pgschema import answers, fresh_schema
from tests.redisserver import RedisServer, running

PG_URL = os.environ.get("TELEGATE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
ORIGIN = "fanout.example/telegate/log"


#: One private redis-server per test (these tests kill and restart it).
PrivateRedis = RedisServer


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[PrivateRedis]:
    with running(tmp_path / "redis") as server:
        yield server


@pytest.fixture(scope="session")
def pg_base() -> str:
    need(answers(PG_URL), f"PostgreSQL at {PG_URL} (TELEGATE_TEST_DATABASE_URL)")
    return PG_URL


@pytest.fixture(scope="session")
def _pg_schemas() -> Iterator[contextlib.ExitStack]:
    """Schemas dropped when the session ends: an app's cleanup may still write (its
    ``gateway.stopped`` event, its heartbeat row) after a test's own fixtures are gone."""
    with contextlib.ExitStack() as stack:
        yield stack


@pytest.fixture
def pg_url(pg_base: str, _pg_schemas: contextlib.ExitStack) -> str:
    """A fresh schema, upgraded as ``telegate db upgrade`` leaves it before replicas start."""
    url = _pg_schemas.enter_context(fresh_schema(pg_base))
    db = Database(Path("/nonexistent"), url)
    try:
        db.upgrade()
    finally:
        db.close()
    return url


def replica_config(data_dir: Path, database_url: str, redis_url: str | None) -> Config:
    cfg = Config(
        data_dir=data_dir,
        log_origin=ORIGIN,
        database_url=database_url,
        token_lifetime=3600,
        redis_url=redis_url,
        # After Redis comes back empty, proofs dated before the loss plus the skew are
        # refused (gateway/shared/replay.py): a small skew lets a test resume within ~2 s.
        clock_skew=1,
    )
    return cfg
