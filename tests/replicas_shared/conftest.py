"""Real ``telegate serve`` replicas sharing PostgreSQL and Redis (issue 15): what must hold
across replicas (a proof, an assertion, a ticket accepted once), a rolling restart, and a
Redis that stops, comes back, or comes back empty.

The processes, the fresh database and the ports are those of tests/replicas (its
``Replicas`` group). Redis is private: the session's (``session_redis``) where no test
stops it, else one of the test's own (tests/redisserver.py). ``Remote`` lets the helpers of
tests/gateway/idclient.py (written for aiohttp's in-process TestClient) talk to a replica
in another process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from gateway.appkeys import CONFIG
from gateway.config import Config
from tests.redisserver import RedisServer, running
from tests.replicas.conftest import (  # noqa: F401  (fixtures)
    ORIGIN,
    PUBLIC_URL,
    Replica,
    Replicas,
    database,
    pg_server,
)


class Remote:
    """What idclient.py uses of aiohttp's TestClient, for one replica in another process:
    requests go to the replica, while the URLs a client names (DPoP ``htu``, an assertion's
    ``aud``) are the public URL every replica serves under. ``app`` holds just the config,
    so ``idclient.admin`` writes its bootstrap invite to the shared database."""

    def __init__(self, http: aiohttp.ClientSession, replica: Replica, config: Config) -> None:
        self.http = http
        self.replica = replica
        self.app = {CONFIG: config}

    def make_url(self, path: str) -> URL:
        return URL(PUBLIC_URL + path)

    async def request(self, method: str, path: str, **kw: Any) -> aiohttp.ClientResponse:
        kw.setdefault("timeout", aiohttp.ClientTimeout(total=20))
        return await self.http.request(method, self.replica.url + path, **kw)

    async def get(self, path: str, **kw: Any) -> aiohttp.ClientResponse:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, **kw: Any) -> aiohttp.ClientResponse:
        return await self.request("POST", path, **kw)

    async def ws_connect(self, path: str, **kw: Any) -> aiohttp.ClientWebSocketResponse:
        url = self.replica.url.replace("http://", "ws://", 1) + path
        return await self.http.ws_connect(url, **kw)


def config_of(group: Replicas) -> Config:
    """The settings the CLI and the test helpers need to reach the replicas' stores."""
    return Config(data_dir=group.data_dir, database_url=group.database_url, log_origin=ORIGIN)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, which it may stop and start (empty) again."""
    with running(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def group(database: str, tmp_path: Path, session_redis: str) -> Iterator[Replicas]:  # noqa: F811
    g = Replicas(tmp_path, database, session_redis)
    try:
        yield g
    finally:
        g.stop()
