"""Real witnesses on loopback for gateway tests, and a gateway configured to use them.

A :class:`WitnessServer` is ``gateway.witness.create_app`` on a real port. It can go down
(the port closes: connection refused) and come back on the same port with the same state,
or stay up and answer 503 while ``failing`` is set. It counts the requests it was sent.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import socket
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.config import Config, WitnessPeer
from gateway.db import Database
from gateway.ledger_keys import init_log_key
from gateway.witness.app import create_app as witness_app
from gateway.witness.config import LogConfig, WitnessConfig
from gateway.witness.keys import init_witness_key
from tests.pgschema import fresh_schema

ORIGIN = "test.example/telegate/log"

_schemas: dict[Path, str] = {}
_dropped = contextlib.ExitStack()
atexit.register(_dropped.close)


def database_url(data_dir: Path) -> str | None:
    """With ``TELEGATE_TEST_DATABASE_URL`` set, a PostgreSQL schema of it for the gateway or
    witness whose data dir this is (the same one again on a restart), upgraded as
    ``telegate db upgrade`` would, and dropped when the tests end; unset, None (SQLite)."""
    base = os.environ.get("TELEGATE_TEST_DATABASE_URL")
    if not base:
        return None
    if data_dir not in _schemas:
        url = _dropped.enter_context(fresh_schema(base))
        db = Database(data_dir, url)
        try:
            db.upgrade()
        finally:
            db.close()
        _schemas[data_dir] = url
    return _schemas[data_dir]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class WitnessServer:
    """One witness following ``origin`` signed by ``log_vkey``, with its own key and state."""

    def __init__(
        self,
        root: Path,
        name: str,
        log_vkey: str,
        origin: str = ORIGIN,
        also: Sequence[tuple[str, str]] = (),
    ) -> None:
        """``also``: more logs to follow, as (origin, vkey) pairs (one witness for several
        organizations' logs, as in the federation tests)."""
        data_dir = root / name.replace("/", "_")
        self.config = WitnessConfig(
            name=name,
            data_dir=data_dir,
            logs=(LogConfig(origin, (log_vkey,)), *(LogConfig(o, (k,)) for o, k in also)),
            database_url=database_url(data_dir),
        )
        self.vkey = init_witness_key(self.config.key_path, name)[0].vkey
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.failing = False
        self.seen: Counter[int] = Counter()  # answers by status
        self._runner: web.AppRunner | None = None

    @property
    def peer(self) -> WitnessPeer:
        return WitnessPeer(self.url, self.vkey)

    async def start(self) -> WitnessServer:
        app = witness_app(self.config)

        @web.middleware
        async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
            if self.failing:
                resp: web.StreamResponse = web.Response(status=503, text="down for a test\n")
            else:
                resp = await handler(request)
            if request.path == "/add-checkpoint":
                self.seen[resp.status] += 1
            return resp

        app.middlewares.append(count)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def log_vkey(data_dir: Path, origin: str = ORIGIN) -> str:
    """Create the gateway's log key ahead of its first start, so witnesses can pin it."""
    return init_log_key(data_dir / "keys", origin)[0].vkey


def gateway_config(data_dir: Path, witnesses: list[WitnessServer], **kw: Any) -> Config:
    settings: dict[str, Any] = {"witness_rate": 50.0, "witness_backoff_max": 0.2}
    settings["database_url"] = database_url(data_dir)
    settings.update(kw)
    return Config(
        data_dir=data_dir,
        log_origin=ORIGIN,
        witnesses=tuple(w.peer for w in witnesses),
        **settings,
    )


DEADLINE = 30.0  # seconds; generous: it only bounds a test that would otherwise hang


async def until(what: str, cond: Callable[[], bool]) -> None:
    """Wait until ``cond()`` holds, checking often; fail after ``DEADLINE``. Never a fixed
    sleep standing in for "long enough"."""
    deadline = time.monotonic() + DEADLINE
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
