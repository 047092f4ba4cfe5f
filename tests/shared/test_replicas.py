"""Two gateways on one PostgreSQL and one Redis, as two replicas behind a load balancer:
a DPoP proof, a signalling ticket and a client assertion are each accepted once between
them; with Redis gone, DPoP-protected calls fail closed (503) and come back with it."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse, WSServerHandshakeError

from gateway.appkeys import TICKETS
from gateway.auth.http import ASSERTION_TYPE
from gateway.config import Config
from gateway.db import Database
from gateway.shared import SharedUnavailable
from tests.gateway.idclient import Client, Holder, admin, call, token_response
from tests.gateway.test_sessions import Call
from tests.shared.conftest import RedisServer


@dataclass
class Pair:
    a: Client
    b: Client
    config: Config

    def as_a(self, method: str, path: str, h: Holder, token: str) -> dict[str, str]:
        """Headers of one request addressed to replica a (its URL in the proof, its Host),
        which a load balancer may hand to either replica."""
        url = self.a.make_url(path)
        return {
            "Authorization": f"DPoP {token}",
            "DPoP": h.dpop(method, str(url), token),
            "Host": f"{url.host}:{url.port}",
        }


async def _pair(
    aiohttp_client: Any, tmp_path: Path, pg_url: str, redis_url: str | None, **settings: Any
) -> Pair:
    from gateway.app import create_app

    data = tmp_path / "data"  # the key dir the replicas share
    db = Database(data, pg_url)
    db.upgrade()
    db.close()
    config = Config(
        data_dir=data,
        database_url=pg_url,
        redis_url=redis_url,
        log_origin="r.example/t/log",
        **settings,
    )
    a = await aiohttp_client(create_app(config))
    b = await aiohttp_client(create_app(config))
    return Pair(a, b, config)


@pytest.fixture
async def pair(
    pg_url: str, redis_server: RedisServer, aiohttp_client: Any, tmp_path: Path
) -> AsyncIterator[Pair]:
    # pg_url first: its schema is dropped after the apps (aiohttp_client) have closed.
    yield await _pair(aiohttp_client, tmp_path, pg_url, redis_server.url)


async def _problem(r: ClientResponse) -> dict[str, Any]:
    assert r.content_type == "application/problem+json"
    body: dict[str, Any] = await r.json()
    return body


async def test_one_dpop_proof_is_accepted_by_one_replica_and_refused_as_a_replay_by_the_other(
    pair: Pair,
) -> None:
    adm, adm_t = await admin(pair.a, pair.config.data_dir)
    for _ in range(5):  # at once, each time: SET NX decides, not who comes first
        headers = pair.as_a("GET", "/v1/me", adm, adm_t)
        ra, rb = await asyncio.gather(
            pair.a.get("/v1/me", headers=headers), pair.b.get("/v1/me", headers=headers)
        )
        assert sorted([ra.status, rb.status]) == [200, 401]
        refused = ra if ra.status == 401 else rb
        body = await _problem(refused)
        assert body["type"].endswith("/invalid-dpop-proof")
        assert body["detail"] == "DPoP proof replayed"
    # And each replica goes on taking fresh proofs.
    for c in (pair.a, pair.b):
        r = await c.get("/v1/me", headers=pair.as_a("GET", "/v1/me", adm, adm_t))
        assert r.status == 200, await r.text()


async def test_a_proof_spent_at_one_replica_is_refused_at_the_other_later(pair: Pair) -> None:
    adm, adm_t = await admin(pair.a, pair.config.data_dir)
    headers = pair.as_a("GET", "/v1/me", adm, adm_t)
    assert (await pair.a.get("/v1/me", headers=headers)).status == 200
    r = await pair.b.get("/v1/me", headers=headers)
    assert r.status == 401
    assert (await _problem(r))["detail"] == "DPoP proof replayed"


async def _take(c: Client, sid: str, ticket: str) -> int:
    try:
        ws = await c.ws_connect(f"/v1/sessions/{sid}/ws?ticket={ticket}")
    except WSServerHandshakeError as e:
        return e.status
    hello = await ws.receive_json(timeout=5)
    await ws.close()
    assert hello["type"] == "hello"
    return 101


async def test_one_signalling_ticket_opens_one_socket_across_replicas(pair: Pair) -> None:
    k = await Call(pair.a).setup(pair.config)
    sid = await k.schedule()
    for _ in range(3):
        ticket = await k.ticket(sid, k.prov, k.prov_t)  # issued by a
        got = await asyncio.gather(_take(pair.a, sid, ticket), _take(pair.b, sid, ticket))
        assert sorted(got) == [101, 403]
    ticket = await k.ticket(sid, k.prov, k.prov_t)
    assert await _take(pair.b, sid, ticket) == 101  # taken where it was not issued
    assert await _take(pair.a, sid, ticket) == 403


async def test_without_redis_protected_calls_fail_closed_and_resume_when_it_is_back(
    pg_url: str, redis_server: RedisServer, aiohttp_client: Any, tmp_path: Path
) -> None:
    # A skew of 1 s: after Redis comes back empty, proofs dated before the loss plus the
    # skew are refused (gateway/shared/replay.py), so service resumes a second later.
    pair = await _pair(aiohttp_client, tmp_path, pg_url, redis_server.url, clock_skew=1)
    adm, adm_t = await admin(pair.a, pair.config.data_dir)
    assert (await call(pair.a, "GET", "/v1/me", adm, adm_t)).status == 200
    redis_server.kill()
    for c in (pair.a, pair.b, pair.a):
        started = time.monotonic()
        r = await c.get("/v1/me", headers=pair.as_a("GET", "/v1/me", adm, adm_t))
        took = time.monotonic() - started
        assert r.status == 503, await r.text()
        assert r.headers["Retry-After"] == "1"
        assert (await _problem(r))["type"].endswith("/unavailable")
        assert took < 2.0
    r = await token_response(pair.a, adm)  # the token endpoint spends a proof too
    assert r.status == 503 and r.headers["Retry-After"] == "1"
    with pytest.raises(SharedUnavailable):
        await pair.a.server.app[TICKETS].issue("s1", adm.sub, "jti", "jkt")
    # Calls that need no proof are still answered.
    assert (await pair.b.get("/healthz")).status == 200
    before = pair.as_a("GET", "/v1/me", adm, adm_t)  # a proof made before Redis is back
    redis_server.start()  # the same port, empty: the apps are not restarted
    r = await pair.b.get("/v1/me", headers=before)
    assert r.status == 503, await r.text()  # dated before the loss: maybe a replay
    assert (await _problem(r))["type"].endswith("/unavailable")
    for c in (pair.a, pair.b):
        for _ in range(100):  # fresh proofs are accepted once the skew has passed
            r = await c.get("/v1/me", headers=pair.as_a("GET", "/v1/me", adm, adm_t))
            if r.status != 503:
                break
            await asyncio.sleep(0.1)
        assert r.status == 200, await r.text()
    headers = pair.as_a("GET", "/v1/me", adm, adm_t)
    assert (await pair.b.get("/v1/me", headers=headers)).status == 200
    assert (await pair.a.get("/v1/me", headers=headers)).status == 401


async def test_a_redis_that_hangs_answers_503_within_two_seconds(
    pair: Pair, redis_server: RedisServer
) -> None:
    adm, adm_t = await admin(pair.a, pair.config.data_dir)
    assert redis_server.proc is not None
    redis_server.proc.send_signal(signal.SIGSTOP)  # connections open, nothing answers
    try:
        started = time.monotonic()
        r = await pair.b.get("/v1/me", headers=pair.as_a("GET", "/v1/me", adm, adm_t))
        took = time.monotonic() - started
        assert r.status == 503 and r.headers["Retry-After"] == "1"
        assert took < 2.0
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
    r = await pair.b.get("/v1/me", headers=pair.as_a("GET", "/v1/me", adm, adm_t))
    assert r.status == 200, await r.text()


async def test_a_client_assertion_is_spent_once_across_replicas_through_the_database(
    pg_url: str, aiohttp_client: Any, tmp_path: Path, session_redis: str
) -> None:
    # Not Redis but the identity store's client_jtis table in the shared database decides
    # (the two DPoP proofs differ; the one client assertion is what both replicas see).
    p = await _pair(aiohttp_client, tmp_path, pg_url, session_redis)
    adm, _ = await admin(p.a, p.config.data_dir)
    url = p.a.make_url("/oauth/token")
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": adm.assertion(str(url)),
    }

    def headers() -> dict[str, str]:
        return {"DPoP": adm.dpop("POST", str(url)), "Host": f"{url.host}:{url.port}"}

    ra, rb = await asyncio.gather(
        p.a.post("/oauth/token", data=form, headers=headers()),
        p.b.post("/oauth/token", data=form, headers=headers()),
    )
    assert sorted([ra.status, rb.status]) == [200, 401]
    refused = await (ra if ra.status == 401 else rb).json()
    assert refused["error"] == "invalid_client"
    assert "already used" in refused["detail"]
