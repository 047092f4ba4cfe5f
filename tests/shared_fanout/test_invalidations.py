"""A revocation made through one replica ends the live access it condemns on another within
a second, through Redis pub/sub; and while Redis is away the database still ends it."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import redis.asyncio as aioredis
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.appkeys import AUTHORITY, CLOCK, CONSENTS, INVALIDATIONS
from gateway.invalidation import Invalidation, Kind
from gateway.shared.fanout import REDIS_INVALIDATIONS
from gateway.shared.invalidation_redis import RedisInvalidations
from gateway.shared.recheck import REASON
from tests.gateway.idclient import Holder, call
from tests.gateway.vitals.world import World

from .conftest import ORIGIN, PrivateRedis, replica_config


class Replicas:
    def __init__(
        self, a: TestClient[Any, Any], b: TestClient[Any, Any], w: World, consent: str
    ) -> None:
        self.a, self.b, self.w, self.consent = a, b, w, consent

    async def on_a(self, method: str, path: str, h: Holder, token: str, **kw: Any) -> Any:
        """A request to replica A with a token that replica B issued: addressed as if to B
        (Host and DPoP ``htu``), as a load balancer in front of both would make it look."""
        url = str(self.b.make_url(path))
        headers = {
            "Authorization": f"DPoP {token}",
            "DPoP": h.dpop(method, url, token),
            "Host": f"127.0.0.1:{self.b.port}",
        }
        return await self.a.request(method, path, headers=headers, **kw)

    async def revoke_on_a(self, body: dict[str, Any]) -> Any:
        body = {**body, "reason": "key_compromise"}
        return await self.on_a("POST", "/v1/revocations", self.w.adm, self.w.adm_t, json=body)


@pytest.fixture
async def replicas(
    aiohttp_client: Any, tmp_path: Path, pg_url: str, redis_server: PrivateRedis
) -> AsyncIterator[Replicas]:
    config = replica_config(tmp_path / "data", pg_url, redis_server.url)
    b = await aiohttp_client(create_app(config))
    a = await aiohttp_client(create_app(config))
    w = World(b)
    await w.setup(config)
    consent = await w.grant(["call", "vitals.stream"])
    yield Replicas(a, b, w, str(consent["id"]))


async def closed_within(ws: Any, code: int, seconds: float) -> list[dict[str, Any]]:
    """The messages a socket gets before it closes with ``code``, within ``seconds``."""
    got = []
    deadline = time.monotonic() + seconds
    while True:
        msg = await ws.receive(timeout=max(0.01, deadline - time.monotonic()))
        if msg.type != WSMsgType.TEXT:
            break
        got.append(json.loads(msg.data))
    assert msg.type == WSMsgType.CLOSE and msg.data == code, (msg, got)
    return got


async def closed_events(w: World, sid: str, n: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 5
    while True:
        found = [e for e in await w.events("session.socket_closed") if e["session"] == sid]
        if len(found) >= n or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.05)


async def until(check: Any, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not within the time"
        await asyncio.sleep(0.02)


async def test_a_subject_revoked_on_one_replica_closes_its_socket_on_another_within_a_second(
    replicas: Replicas,
) -> None:
    w = replicas.w
    sid, prov_ws, pat_ws = await w.admitted_call()  # both sockets on replica B
    r = await replicas.revoke_on_a({"sub": w.prov.sub})
    assert r.status == 200, await r.text()
    got = await closed_within(prov_ws, 4403, 1.0)
    assert got == [{"type": "bye", "from": "gateway", "state": "admitted", "reason": "revoked"}]
    bye = await pat_ws.receive_json(timeout=1)
    assert (bye["from"], bye["reason"]) == ("provider", "revoked")
    # Heard through Redis (the revocation's own reason), not found later in the database.
    [ev] = await closed_events(w, sid, 1)
    assert ev["data"]["holder"] == w.prov.sub and ev["data"]["target"] == "subject"
    assert ev["data"]["reason"] == "key_compromise"
    await pat_ws.close()


async def test_a_replica_does_not_act_twice_on_its_own_revocation(replicas: Replicas) -> None:
    """The message comes back to its sender through Redis: dropped, so its listeners hear
    the news once, and the socket's close is recorded once."""
    w = replicas.w
    heard: list[Invalidation] = []

    async def listener(news: Invalidation) -> None:
        heard.append(news)

    replicas.b.server.app[INVALIDATIONS].subscribe(listener)
    sid, prov_ws, pat_ws = await w.admitted_call()
    jti = jwt.decode(w.pat_t, options={"verify_signature": False})["jti"]
    r = await call(
        w.client,
        "POST",
        "/v1/revocations",
        w.adm,
        w.adm_t,
        json={"jti": jti, "reason": "key_compromise"},
    )
    assert r.status == 200, await r.text()
    await closed_within(pat_ws, 4403, 1.0)
    await asyncio.sleep(0.5)  # room for an echo to arrive
    assert heard == [Invalidation(Kind.TOKEN, jti=jti, reason="key_compromise")]
    assert len(await closed_events(w, sid, 1)) == 1
    await prov_ws.close()


async def test_a_consent_revoked_on_one_replica_ends_the_call_on_another(
    replicas: Replicas,
) -> None:
    w = replicas.w
    sid, prov_ws, pat_ws = await w.admitted_call()
    r = await replicas.on_a("DELETE", f"/v1/consents/{replicas.consent}", w.pat, w.pat_t)
    assert r.status == 200, await r.text()
    got = await closed_within(prov_ws, 4403, 1.0)
    assert got[-1]["reason"] == "consent"
    [ev] = await closed_events(w, sid, 1)
    assert ev["data"]["closed"] == "consent" and ev["data"]["ref"] == replicas.consent
    await pat_ws.close()


async def test_a_consent_revoked_while_redis_is_away_is_found_in_the_database(
    replicas: Replicas, redis_server: PrivateRedis
) -> None:
    w = replicas.w
    bus_b = replicas.b.server.app[REDIS_INVALIDATIONS]
    sid, prov_ws, pat_ws = await w.admitted_call()
    redis_server.kill()
    await until(lambda: not bus_b.connected)
    # With Redis away, DPoP-protected calls fail closed (no proof accepted unchecked), so
    # the revocation comes from a replica that stored it and could not publish it: the
    # database alone must carry it to replica B.
    r = await replicas.on_a("DELETE", f"/v1/consents/{replicas.consent}", w.pat, w.pat_t)
    assert r.status == 503, await r.text()
    app_a = replicas.a.server.app
    assert await asyncio.to_thread(app_a[CONSENTS].revoke, replicas.consent, int(app_a[CLOCK]()))
    got = await closed_within(prov_ws, 4403, 2.5)
    assert got[-1]["reason"] == "consent"
    [ev] = await closed_events(w, sid, 1)
    assert (ev["data"]["closed"], ev["data"]["reason"]) == ("consent", REASON)
    await pat_ws.close()


async def test_redis_lost_then_back_the_database_covers_the_gap_and_pubsub_resumes(
    replicas: Replicas, redis_server: PrivateRedis
) -> None:
    w = replicas.w
    bus_b = replicas.b.server.app[REDIS_INVALIDATIONS]
    sid, prov_ws, pat_ws = await w.admitted_call()
    redis_server.kill()
    await until(lambda: not bus_b.connected)
    # Redis is down: DPoP-protected calls fail closed (503, retry), so the revocation is
    # one a replica stored and could not publish ...
    jti = jwt.decode(w.pat_t, options={"verify_signature": False})["jti"]
    r = await replicas.revoke_on_a({"jti": jti})
    assert r.status == 503 and r.headers["Retry-After"] == "1", await r.text()
    app_a = replicas.a.server.app
    assert (
        await asyncio.to_thread(app_a[AUTHORITY].store.revoke_token, jti, int(app_a[CLOCK]()))
        is not None
    )
    # ... yet replica B finds it in the database within its refresh and its recheck.
    t0 = time.monotonic()
    await closed_within(pat_ws, 4403, 3.0)
    assert time.monotonic() - t0 < 2.5
    [ev] = await closed_events(w, sid, 1)
    assert (ev["data"]["party"], ev["data"]["jti"], ev["data"]["reason"]) == (
        "patient",
        jti,
        REASON,
    )
    assert (await prov_ws.receive_json(timeout=1))["type"] == "bye"
    # Redis back on its port: the subscriber reconnects and revocations travel again.
    redis_server.start()
    await until(lambda: bus_b.connected)
    # Redis came back empty: proofs dated before then plus clock_skew are refused (503).
    for _ in range(50):
        r = await replicas.revoke_on_a({"sub": w.prov.sub})
        if r.status != 503:
            break
        await asyncio.sleep(0.1)
    assert r.status == 200, await r.text()
    await closed_within(prov_ws, 4403, 1.0)
    evs = await closed_events(w, sid, 2)
    assert [e["data"]["reason"] for e in evs] == [REASON, "key_compromise"]


async def test_a_redis_that_stops_answering_is_noticed_and_rejoined(
    redis_server: PrivateRedis,
) -> None:
    """A frozen server (SIGSTOP) closes no connection: the subscription's PINGs find it out,
    and the subscriber rejoins when it answers again."""
    client = aioredis.Redis.from_url(redis_server.url)
    bus = RedisInvalidations(client, ORIGIN, "r1", ping_every=0.3)
    heard: list[Invalidation] = []

    async def listener(news: Invalidation) -> None:
        heard.append(news)

    bus.subscribe(listener)
    await bus.start()
    try:
        assert bus.connected
        assert redis_server.proc is not None
        redis_server.proc.send_signal(signal.SIGSTOP)
        try:
            await until(lambda: not bus.connected, 3)
        finally:
            redis_server.proc.send_signal(signal.SIGCONT)
        await until(lambda: bus.connected, 5)
        # Another replica's news arrives again; a malformed message is dropped, not fatal.
        other = aioredis.Redis.from_url(redis_server.url)
        await other.publish(bus.channel, b"not json")
        news = Invalidation(Kind.SUBJECT, sub="pat:9", reason="key_compromise")
        await other.publish(bus.channel, json.dumps({"replica": "r2", "news": news.to_json()}))
        await other.aclose()
        await until(lambda: heard == [news], 2)
    finally:
        await bus.close()
        await client.aclose()
