"""The request limits' buckets shared by the replicas through Redis (gateway/shared/rates.py):
what one replica spent is charged to the others' buckets at their next look."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from gateway.limits import GUARD, Buckets
from gateway.shared.client import open_client
from gateway.shared.rates import SharedRates
from tests.gateway.idclient import admin
from tests.shared.conftest import RedisServer
from tests.shared.test_replicas import _pair


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = open_client(redis_server.url)
    yield client
    await client.aclose()


def _rates(redis: Redis, replica: str) -> tuple[SharedRates, Buckets]:
    clients = Buckets(rate=0.001, burst=10, max_keys=100)
    addresses = Buckets(rate=0.001, burst=10, max_keys=100)
    rates = SharedRates(
        redis, "telegate:t/log:", replica, {"client": clients, "address": addresses}, lambda: 0.0
    )
    return rates, clients


async def test_what_one_replica_spends_the_others_charge_at_their_next_look(redis: Redis) -> None:
    r1, b1 = _rates(redis, "r1")
    r2, b2 = _rates(redis, "r2")
    for _ in range(7):
        assert b1.take("sub-1", 0.0) is None
        r1.note("client", "sub-1")
    await r1.sync()
    assert b2.take("sub-1", 0.0) is None  # r2 has not looked yet: it lets one through
    r2.note("client", "sub-1")
    await r2.sync()  # r2 learns r1's 7
    assert round(b2.level("sub-1", 0.0)) == 10 - 1 - 7
    await r1.sync()  # nothing noted: no look
    r1.note("client", "sub-1", 0.0)
    await r1.sync()  # r1 learns r2's 1
    assert round(b1.level("sub-1", 0.0)) == 10 - 7 - 1
    # Other keys and kinds are apart.
    assert b2.level("sub-2", 0.0) == 10


async def test_redis_away_leaves_each_replica_its_own_buckets(
    redis: Redis, redis_server: RedisServer
) -> None:
    r1, b1 = _rates(redis, "r1")
    redis_server.kill()
    b1.take("sub-1", 0.0)
    r1.note("client", "sub-1")
    await r1.sync()  # logged, dropped; no exception
    assert r1.looks == 0 and round(b1.level("sub-1", 0.0)) == 9


async def test_a_client_spreading_over_two_replicas_gets_one_bucket(
    pg_url: str, redis_server: RedisServer, aiohttp_client: Any, tmp_path: Path
) -> None:
    pair = await _pair(
        aiohttp_client, tmp_path, pg_url, redis_server.url, client_rate=0.01, client_burst=5
    )
    adm, adm_t = await admin(pair.a, pair.config.data_dir)  # the token costs one
    statuses = [
        (await pair.a.get("/v1/me", headers=pair.as_a("GET", "/v1/me", adm, adm_t))).status
        for _ in range(5)
    ]
    assert statuses.count(429) >= 1  # spent on A, alone
    rates_a = pair.a.server.app[GUARD].noted.__self__
    rates_b = pair.b.server.app[GUARD].noted.__self__
    looked = rates_a.looks
    for _ in range(100):  # A writes what it spent at its next look (every 0.25 s)
        if rates_a.looks > looked:
            break
        await asyncio.sleep(0.05)
    first = await pair.b.get("/v1/me", headers=pair.as_a("GET", "/v1/me", adm, adm_t))
    assert first.status == 200  # B has not looked yet
    looked = rates_b.looks
    for _ in range(100):
        if rates_b.looks > looked:
            break
        await asyncio.sleep(0.05)
    again = await pair.b.get("/v1/me", headers=pair.as_a("GET", "/v1/me", adm, adm_t))
    assert again.status == 429, await again.text()  # B knows what A spent
    assert again.headers["Retry-After"]
