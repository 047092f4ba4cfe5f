"""A replica killed with ``kill -9`` mid-call: a real ``telegate serve`` process holding the
patient's socket, beside the in-process replicas on the same database, data dir and Redis.
The patient reconnects to another replica and the call is connected again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis

from gateway.appkeys import HUB
from gateway.shared.fanout import REPLICA_ID
from tests.replicas.conftest import Replica

from .conftest import Pair, closed_with, events, next_of
from .peers import Peers

CANDIDATE = {"type": "candidate", "candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host"}


@pytest.fixture
def serve(pair: Pair, tmp_path: Path) -> Iterator[Replica]:
    """Replica R: ``telegate serve`` on the pair's database, data dir and Redis."""
    config = pair.config
    assert config.database_url is not None and config.redis_url is not None
    logs = tmp_path / "logs"
    logs.mkdir()
    r = Replica("r", config.data_dir, config.database_url, logs, config.redis_url)
    r.start()
    try:
        yield r
    finally:
        r.kill()


async def test_a_replica_killed_mid_call_the_patient_reconnects_elsewhere_and_connects_again(
    pair: Pair, serve: Replica
) -> None:
    w = pair.w
    sid = await pair.schedule()
    prov_ws = await pair.ws(pair.b, sid, w.prov, w.prov_t)
    async with aiohttp.ClientSession() as http:
        ticket = await w.ticket(sid, w.pat, w.pat_t)
        pat_ws = await http.ws_connect(f"{serve.url}/v1/sessions/{sid}/ws?ticket={ticket}")
        assert (await pat_ws.receive_json(timeout=5))["type"] == "hello"
        await next_of(prov_ws, "waiting")
        await pair.admit(sid)
        await next_of(prov_ws, "admitted")
        await next_of(pat_ws, "admitted")
        first = Peers()
        try:
            assert await first.connect(pat_ws, prov_ws, "before") == "before"
        finally:
            await first.close()
        hub = pair.b.server.app[HUB]
        key = hub.presence_key(sid, "patient")  # type: ignore[attr-defined]
        redis = aioredis.Redis.from_url(pair.config.redis_url or "")
        try:
            owner = (await redis.get(key) or b"").decode()
            assert owner and not owner.startswith(pair.b.server.app[REPLICA_ID])
            serve.kill()  # SIGKILL: no close frame, no goodbye to Redis
            code, _ = await closed_with(pat_ws)
            assert code != 1000
            # Its presence is left to expire (within the TTL), not kept alive by anyone.
            assert 0 < await redis.pttl(key) <= 6000
            assert (await redis.get(key) or b"").decode() == owner
        finally:
            await redis.aclose()
    # Meanwhile the provider's messages reach no one, and it is told.
    await prov_ws.send_json({**CANDIDATE, "sdpMid": "0"})
    assert await next_of(prov_ws, "error") == {
        "type": "error",
        "error": "the other party is not connected",
    }
    # The page reconnects (a fresh ticket) to another replica and restarts ICE: the call
    # page does it with the same peer connection; aiortc has no ICE restart, so two fresh
    # peers stand in for it here.
    pat_ws = await pair.ws(pair.a, sid, w.pat, w.pat_t)
    again = Peers()
    try:
        assert await again.connect(pat_ws, prov_ws, "after", restart=True) == "after"
    finally:
        await again.close()
    r = await pair.on(pair.a, "GET", f"/v1/sessions/{sid}", w.pat, w.pat_t)
    assert (await r.json())["state"] == "connected"
    assert len(await events(pair, "session.media_bound", 4)) == 4
    await pat_ws.close()
    await prov_ws.close()
