"""A real gateway on a real SQLite file under tmp_path, driven through aiohttp's test client."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.config import Config
from gateway.db import Database
from tests.conftest import need
from tests.pgschema import answers, fresh_schema

MakeClient = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture(scope="session")
def _pg_schemas() -> Iterator[contextlib.ExitStack]:
    """The PostgreSQL schemas the tests made, dropped when the session ends: a test's app
    may still write (``gateway.stopped``) after its ``config`` fixture is torn down, since
    pytest tears fixtures down in reverse order of their setup, whatever they depend on."""
    with contextlib.ExitStack() as stack:
        yield stack


@pytest.fixture
def config(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Config]:
    """With ``TELEGATE_TEST_DATABASE_URL`` set, the stores on the database layer live in a
    fresh PostgreSQL schema of it (docs/database.md); unset, SQLite files as always."""
    base = os.environ.get("TELEGATE_TEST_DATABASE_URL")
    data = tmp_path / "data"
    # Every test client is on loopback: the request limits (tests/overload) would count
    # the whole suite's traffic as one address's.
    dev = {"rate_exempt_loopback": True}
    if not base:
        yield Config(data_dir=data, log_origin="test.example/telegate/log", **dev)
        return
    need(answers(base), f"PostgreSQL at TELEGATE_TEST_DATABASE_URL={base}")
    url = request.getfixturevalue("_pg_schemas").enter_context(fresh_schema(base))
    db = Database(data, url)
    try:
        db.upgrade()  # what `telegate db upgrade` does before replicas start
    finally:
        db.close()
    yield Config(data_dir=data, log_origin="test.example/telegate/log", database_url=url, **dev)


@pytest.fixture
async def client(aiohttp_client: Any, config: Config) -> TestClient[Any, Any]:
    c: TestClient[Any, Any] = await aiohttp_client(create_app(config))
    return c


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveGateway:
    """``telegate serve`` in a real subprocess on a free loopback port."""

    def __init__(self, data_dir: Path, database_url: str | None = None) -> None:
        """``database_url``: the stores (and the ledger) in that PostgreSQL database,
        upgraded first as an operator would (`telegate db upgrade`); unset, SQLite files
        under ``data_dir``."""
        import os
        import subprocess
        import sys

        self.data_dir = data_dir
        self.database_url = database_url
        #: What a local command (``telegate invite``) is given to reach this gateway's stores.
        self.config = Config(
            data_dir=data_dir, log_origin="live.example/telegate/log", database_url=database_url
        )
        db_args: list[str] = []
        if database_url is not None:
            db = Database(data_dir, database_url)
            try:
                db.upgrade()
            finally:
                db.close()
            db_args = ["--database-url", database_url]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir.parent / "gateway.log"
        self._log = self.log_path.open("wb")
        cli = [sys.executable, "-m", "gateway.cli", "serve"]
        self.proc = subprocess.Popen(
            [*cli, "--port", str(self.port), "--data-dir", str(data_dir), *db_args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={
                **os.environ,
                "TELEGATE_LOG_ORIGIN": "live.example/telegate/log",
                # Every client here is one loopback address (schemathesis sends hundreds of
                # requests): the request limits have their own tests (tests/overload).
                "TELEGATE_RATE_EXEMPT_LOOPBACK": "true",
            },
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        import time
        import urllib.request

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited: {self.log_path.read_text()}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"gateway not ready: {self.log_path.read_text()}")

    def stop(self) -> int:
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(30)
        self._log.close()
        return rc


@pytest.fixture
def live_gateway(tmp_path: Path) -> Any:
    gw = LiveGateway(tmp_path / "data")
    try:
        yield gw
    finally:
        gw.stop()
