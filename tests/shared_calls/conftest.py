"""Calls and live vitals across replicas (docs/redis.md, "Calls and live vitals across
replicas"): gateways in this process on one fresh PostgreSQL schema, one data dir and one
private ``redis-server`` (killed after the test), as in tests/shared_fanout; and, for a
replica killed with ``kill -9``, a real ``telegate serve`` process beside them. Without
redis-server or PostgreSQL the tests skip locally and fail in CI (tests/conftest.py)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.config import Config
from tests.gateway.idclient import Holder
from tests.gateway.vitals.world import World

#: The origin the real ``telegate serve`` replicas of tests/replicas use: a serve process
#: beside the in-process replicas shares their keys in Redis (``telegate:<origin>:``).
from tests.replicas.conftest import ORIGIN
from tests.shared_fanout import conftest as fanout
from tests.shared_fanout.conftest import PrivateRedis

Client = TestClient[Any, Any]

# tests/shared_fanout's fixtures: a fresh PostgreSQL schema, a private redis-server per test.
pg_base = fanout.pg_base
_pg_schemas = fanout._pg_schemas
pg_url = fanout.pg_url
redis_server = fanout.redis_server


def config_of(data_dir: Path, database_url: str, redis_url: str) -> Config:
    return Config(
        data_dir=data_dir,
        log_origin=ORIGIN,
        database_url=database_url,
        token_lifetime=3600,
        redis_url=redis_url,
        # A Redis back empty refuses proofs dated before then plus the skew (docs/redis.md
        # "Persistence"): a short skew keeps the outage tests short.
        clock_skew=1,
    )


class Pair:
    """Replicas A and B; the world (identities, consents) made through B. A request for
    replica A carries B's address (Host, DPoP ``htu``), as behind one load balancer."""

    def __init__(self, a: Client, b: Client, w: World, config: Config) -> None:
        self.a, self.b, self.w, self.config = a, b, w, config

    async def on(self, c: Client, method: str, path: str, h: Holder, token: str, **kw: Any) -> Any:
        url = str(self.b.make_url(path))
        headers = {
            "Authorization": f"DPoP {token}",
            "DPoP": h.dpop(method, url, token),
            "Host": f"127.0.0.1:{self.b.port}",
            **kw.pop("headers", {}),
        }
        return await c.request(method, path, headers=headers, **kw)

    async def schedule(self) -> str:
        w = self.w
        r = await self.on(
            self.b, "POST", "/v1/sessions", w.prov, w.prov_t, json={"patient": w.pat.sub}
        )
        assert r.status == 201, await r.text()
        return str((await r.json())["id"])

    async def ws(self, c: Client, sid: str, h: Holder, token: str) -> Any:
        """A socket on replica ``c`` with a ticket from B (tickets are in Redis)."""
        ticket = await self.w.ticket(sid, h, token)
        ws = await c.ws_connect(f"/v1/sessions/{sid}/ws?ticket={ticket}")
        hello = await ws.receive_json(timeout=5)
        assert hello["type"] == "hello", hello
        return ws

    async def admit(self, sid: str, via: Client | None = None) -> None:
        w = self.w
        r = await self.on(via or self.b, "POST", f"/v1/sessions/{sid}/admit", w.prov, w.prov_t)
        assert r.status == 200, await r.text()

    async def admitted_across(self) -> tuple[str, Any, Any]:
        """A call with the patient's socket on A and the provider's on B, admitted."""
        w = self.w
        sid = await self.schedule()
        prov_ws = await self.ws(self.b, sid, w.prov, w.prov_t)
        pat_ws = await self.ws(self.a, sid, w.pat, w.pat_t)
        assert (await next_of(prov_ws, "waiting"))["session"] == sid
        await self.admit(sid)
        await next_of(prov_ws, "admitted")
        await next_of(pat_ws, "admitted")
        return sid, prov_ws, pat_ws


async def events(pair: Pair, kind: str, n: int = 0) -> list[dict[str, Any]]:
    """The ledger's events of a type, once there are at least ``n``: read through B, whose
    view of the shared log catches up with A's appends (docs/database.md)."""
    deadline = time.monotonic() + 10
    while True:
        found = await pair.w.events(kind)
        if len(found) >= n or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.1)


async def next_of(ws: Any, kind: str, within: float = 10) -> dict[str, Any]:
    """The next message of type ``kind`` (others before it are skipped)."""
    while True:
        msg: dict[str, Any] = await ws.receive_json(timeout=within)
        if msg["type"] == kind:
            return msg


async def closed_with(ws: Any, within: float = 10) -> tuple[int | None, list[dict[str, Any]]]:
    """The close code of a socket and the messages it got before it closed."""
    got = []
    deadline = time.monotonic() + within
    while True:
        msg = await ws.receive(timeout=max(0.01, deadline - time.monotonic()))
        if msg.type == WSMsgType.TEXT:
            got.append(json.loads(msg.data))
            continue
        # The code the gateway sent (the client's own close may fail on a closed link).
        return (msg.data if msg.type == WSMsgType.CLOSE else ws.close_code), got


@pytest.fixture
async def pair(
    aiohttp_client: Any, tmp_path: Path, pg_url: str, redis_server: PrivateRedis
) -> AsyncIterator[Pair]:
    config = config_of(tmp_path / "data", pg_url, redis_server.url)
    b = await aiohttp_client(create_app(config))
    a = await aiohttp_client(create_app(config))
    w = World(b)
    await w.setup(config)
    await w.grant(["call"])  # the provider schedules; live vitals have a consent of their own
    yield Pair(a, b, w, config)
