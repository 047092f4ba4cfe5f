"""Redis under replicas in real processes: stopped then restarted (protected calls 503
meanwhile, never a replay accepted, service back without restarting a gateway), restarted
empty (a proof from before the loss refused: gateway/shared/replay.py), and the per-source
limit of anonymous refusals shared (gateway/shared/buckets.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import redis

from tests.gateway.idclient import Holder, admin, get_token
from tests.gateway.test_sessions import Call
from tests.redisserver import RedisServer
from tests.replicas.conftest import ORIGIN, Replicas
from tests.replicas_shared.conftest import Remote, config_of


@pytest.fixture
def pair(
    database: str, tmp_path: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Replicas]:
    # A skew of 2 s: after Redis comes back empty, proofs dated before the loss plus the
    # skew are refused, so fresh ones are accepted again 2 s later.
    monkeypatch.setenv("TELEGATE_CLOCK_SKEW", "2")
    g = Replicas(tmp_path, database, redis_server.url)
    try:
        g.start(2)
        yield g
    finally:
        g.stop()


def _headers(c: Remote, h: Holder, token: str, method: str, path: str) -> dict[str, str]:
    url = str(c.make_url(path))
    return {"Authorization": f"DPoP {token}", "DPoP": h.dpop(method, url, token)}


async def _status(c: Remote, path: str, headers: dict[str, str], method: str = "GET") -> int:
    r = await c.request(method, path, headers=headers)
    await r.read()
    if r.status == 503:
        assert "Retry-After" in r.headers
    return r.status


async def test_redis_stopped_then_back_empty(pair: Replicas, redis_server: RedisServer) -> None:
    config = config_of(pair)
    async with aiohttp.ClientSession() as http:
        a, b = (Remote(http, r, config) for r in pair.members)
        adm, token = await admin(a, config.data_dir)
        k = await Call(a).setup(config)
        sid = await k.schedule()
        spent = _headers(a, adm, token, "GET", "/v1/me")
        assert await _status(a, "/v1/me", spent) == 200

        redis_server.kill()
        for c in (a, b, a, b):
            assert await _status(c, "/v1/me", _headers(c, adm, token, "GET", "/v1/me")) == 503
            assert await _status(c, "/v1/me", spent) == 503  # a replay: never accepted
            ticket = f"/v1/sessions/{sid}/ticket"
            assert (
                await _status(c, ticket, _headers(c, k.prov, k.prov_t, "POST", ticket), "POST")
                == 503
            )
            # What needs no proof is still answered.
            assert (await c.get("/healthz")).status == 200
            assert (await c.get("/ledger/checkpoint")).status == 200
        r = await b.post("/oauth/token", data={}, headers={})  # malformed: answered, no Redis
        assert r.status == 400
        unused = _headers(b, adm, token, "GET", "/v1/me")  # made before Redis is back

        redis_server.start()  # the same port, empty; no gateway restarted
        for c in (b, a):
            assert await _status(c, "/v1/me", spent) != 200
            assert await _status(c, "/v1/me", unused) != 200
        # Fresh proofs are accepted again once the skew after the loss has passed.
        for c in (a, b):
            async with asyncio.timeout(30):
                while True:
                    if await _status(c, "/v1/me", _headers(c, adm, token, "GET", "/v1/me")) == 200:
                        break
                    await asyncio.sleep(0.1)
        for c in (a, b):
            assert await _status(c, "/v1/me", spent) != 200
            assert await _status(c, "/v1/me", unused) != 200
        marker = redis.Redis.from_url(redis_server.url).get(f"telegate:{ORIGIN}:epoch")
        assert marker is not None and marker.endswith(b" lost"), marker
        # Tickets and tokens work again.
        assert await get_token(b, adm)
        ticket = f"/v1/sessions/{sid}/ticket"
        assert (
            await _status(b, ticket, _headers(b, k.prov, k.prov_t, "POST", ticket), "POST") == 200
        )


async def test_a_proof_spent_before_redis_lost_its_data_is_refused_after(
    pair: Replicas, redis_server: RedisServer
) -> None:
    config = config_of(pair)
    async with aiohttp.ClientSession() as http:
        a, b = (Remote(http, r, config) for r in pair.members)
        adm, token = await admin(a, config.data_dir)
        spent = _headers(a, adm, token, "GET", "/v1/me")
        assert await _status(a, "/v1/me", spent) == 200
        redis_server.kill()
        redis_server.start()  # at once, empty: the replicas may not even have noticed
        for c in (b, a, b):
            assert await _status(c, "/v1/me", spent) != 200
        marker = redis.Redis.from_url(redis_server.url).get(f"telegate:{ORIGIN}:epoch")
        assert marker is not None and marker.endswith(b" lost"), marker


async def test_the_limit_of_anonymous_refusals_is_shared(
    database: str, tmp_path: Path, session_redis: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TELEGATE_REFUSAL_BURST", "6")
    monkeypatch.setenv("TELEGATE_REFUSAL_RATE", "0.01")
    g = Replicas(tmp_path, database, session_redis)
    try:
        r0, r1 = g.start(2)
        async with aiohttp.ClientSession() as http:
            for _ in range(5):  # five of the six at r0
                async with http.get(r0.url + "/v1/me") as r:
                    assert r.status == 401
            # r1 alone would refuse six more before its own bucket is empty; the shared one
            # has one left: r1 learns it is empty from that refusal's spend.
            statuses = []
            for _ in range(5):
                async with http.get(r1.url + "/v1/me") as r:
                    statuses.append(r.status)
                    if r.status == 429:
                        assert int(r.headers["Retry-After"]) >= 1
                        break
                await asyncio.sleep(0.1)
            assert statuses[-1] == 429, statuses
    finally:
        g.stop()
