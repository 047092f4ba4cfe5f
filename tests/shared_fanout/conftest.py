"""Replicas that share invalidations through Redis: a private ``redis-server`` on a free
loopback port (never the machine's 6379), killed after the test, restartable on its port;
gateways in this process on one fresh PostgreSQL schema and one data dir. Without
redis-server or PostgreSQL the tests skip locally and fail in CI (tests/conftest.py)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config import Config
from gateway.db import Database
from tests.conftest import need
from tests.pgschema import answers, fresh_schema

PG_URL = os.environ.get("TELEGATE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
ORIGIN = "fanout.example/telegate/log"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    """``redis-server`` of this test only: no persistence, on its own port."""

    def __init__(self, binary: str, logs: Path) -> None:
        self.binary, self.logs = binary, logs
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no"]
        with (self.logs / "redis.log").open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                assert self.proc.poll() is None, "redis-server exited"
                time.sleep(0.05)
        raise AssertionError("redis-server did not answer within 10 s")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[PrivateRedis]:
    binary = shutil.which("redis-server")
    need(binary is not None, "redis-server (apt install redis-server)")
    assert binary is not None
    r = PrivateRedis(binary, tmp_path)
    r.start()
    try:
        yield r
    finally:
        r.kill()


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
    )
    return cfg
