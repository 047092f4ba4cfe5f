"""A call whose two parties are on two replicas: waiting room, admit, relay, media; one
admitted socket per participant across the replicas; what a stranger, a party not admitted
yet, or an oversized message gets; and Redis going away."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from gateway.appkeys import HUB
from gateway.sessions.http import end_call
from gateway.shared.fanout import REPLICA_ID
from gateway.shared.hub import RedisHub
from tests.gateway.test_sessions import FP_PAT, FP_PROV, sdp

from .conftest import Pair, PrivateRedis, closed_with, events, next_of
from .peers import Peers, local_fingerprints

CANDIDATE = {"type": "candidate", "candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host"}


def hub_of(c: Any) -> RedisHub:
    hub = c.server.app[HUB]
    assert isinstance(hub, RedisHub)
    return hub


async def until(check: Any, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, "not within the time"
        await asyncio.sleep(0.05)


async def test_a_call_with_its_parties_on_two_replicas_connects_real_peers(pair: Pair) -> None:
    w = pair.w
    sid = await pair.schedule()
    prov_ws = await pair.ws(pair.b, sid, w.prov, w.prov_t)
    pat_ws = await pair.ws(pair.a, sid, w.pat, w.pat_t)
    # The waiting room, wherever the provider asks.
    assert (await next_of(prov_ws, "waiting"))["session"] == sid
    r = await pair.on(pair.a, "GET", "/v1/sessions/waiting", w.prov, w.prov_t)
    assert [s["id"] for s in (await r.json())["waiting"]] == [sid]
    await pair.admit(sid, via=pair.a)  # a third place: neither socket is on the replica asked
    await next_of(prov_ws, "admitted")
    await next_of(pat_ws, "admitted")
    peers = Peers()
    try:
        assert await peers.connect(pat_ws, prov_ws, "across replicas") == "across replicas"
        bound = await events(pair, "session.media_bound", 2)
        assert len(bound) == 2  # each SDP recorded once, by the sender's replica
        on_ledger = {
            e["actor"]: {(f["algorithm"], f["value"]) for f in e["data"]["fingerprints"]}
            for e in bound
        }
        assert on_ledger[w.pat.sub] == local_fingerprints(peers.patient)
        assert on_ledger[w.prov.sub] == local_fingerprints(peers.provider)
        r = await pair.on(pair.a, "GET", f"/v1/sessions/{sid}", w.pat, w.pat_t)
        assert (await r.json())["state"] == "connected"
        # Ended through B: both sockets, on either replica, get bye and close.
        r = await pair.on(pair.b, "POST", f"/v1/sessions/{sid}/end", w.pat, w.pat_t)
        assert r.status == 200
        for ws in (pat_ws, prov_ws):
            code, got = await closed_with(ws)
            assert code == 1000 and got[-1]["type"] == "bye" and got[-1]["state"] == "ended"
    finally:
        await peers.close()


async def test_one_admitted_socket_per_participant_across_replicas(pair: Pair) -> None:
    w = pair.w
    sid, prov_ws, pat_on_a = await pair.admitted_across()
    key = hub_of(pair.a).presence_key(sid, "patient")
    client = aioredis.Redis.from_url(pair.config.redis_url or "")
    try:
        assert (await client.get(key) or b"").decode().startswith(pair.a.server.app[REPLICA_ID])
        # The patient reconnects through B: the socket on A is replaced, as on one replica.
        pat_on_b = await pair.ws(pair.b, sid, w.pat, w.pat_t)
        code, _ = await closed_with(pat_on_a)
        assert code == 4409
        assert (await client.get(key) or b"").decode().startswith(pair.b.server.app[REPLICA_ID])
        await prov_ws.send_json({**CANDIDATE, "sdpMid": "1"})
        assert (await next_of(pat_on_b, "candidate"))["sdpMid"] == "1"
        # And back through A.
        pat_again = await pair.ws(pair.a, sid, w.pat, w.pat_t)
        code, _ = await closed_with(pat_on_b)
        assert code == 4409
        await prov_ws.send_json({**CANDIDATE, "sdpMid": "2"})
        assert (await next_of(pat_again, "candidate"))["sdpMid"] == "2"
        # The one socket left relays the other way too.
        await pat_again.send_json({**CANDIDATE, "sdpMid": "3"})
        assert (await next_of(prov_ws, "candidate"))["sdpMid"] == "3"
    finally:
        await client.aclose()
    await pat_again.close()
    await prov_ws.close()


@pytest.mark.parametrize("where", ["two replicas", "one replica"])
async def test_two_sockets_of_one_party_opening_at_once_leave_one(pair: Pair, where: str) -> None:
    w = pair.w
    sid, prov_ws, pat_ws = await pair.admitted_across()
    t1 = await w.ticket(sid, w.pat, w.pat_t)
    t2 = await w.ticket(sid, w.pat, w.pat_t)
    second = pair.b if where == "two replicas" else pair.a
    x, y = await asyncio.gather(
        pair.a.ws_connect(f"/v1/sessions/{sid}/ws?ticket={t1}"),
        second.ws_connect(f"/v1/sessions/{sid}/ws?ticket={t2}"),
    )
    code, _ = await closed_with(pat_ws)
    assert code == 4409
    # One of the two is replaced by the other, whichever took the presence last.
    reads = {asyncio.ensure_future(closed_with(s)): s for s in (x, y)}
    done, _pending = await asyncio.wait(reads, return_when=asyncio.FIRST_COMPLETED, timeout=15)
    [first] = done
    assert first.result()[0] == 4409
    survivor = y if reads[first] is x else x
    for task in reads:
        task.cancel()
    await asyncio.sleep(0)
    # The survivor is the patient's socket: the provider's messages reach it.
    await prov_ws.send_json({**CANDIDATE, "sdpMid": "9"})
    while True:
        msg = await survivor.receive_json(timeout=10)
        if msg["type"] == "candidate":
            assert msg["sdpMid"] == "9"
            break
    await survivor.close()
    await prov_ws.close()


async def test_a_stranger_cannot_join_another_patients_call_from_another_replica(
    pair: Pair,
) -> None:
    w = pair.w
    sid, prov_ws, pat_ws = await pair.admitted_across()
    # A ticket for a call that is not theirs: none (one answer for absent and not yours).
    r = await pair.on(pair.b, "POST", f"/v1/sessions/{sid}/ticket", w.other, w.other_t)
    assert r.status == 404
    # The stranger's ticket for their own call, presented for this one on the other replica.
    r = await pair.on(
        pair.b, "POST", "/v1/sessions", w.other, w.other_t, json={"provider": w.prov.sub}
    )
    own = str((await r.json())["id"])
    ticket = await w.ticket(own, w.other, w.other_t)
    for c in (pair.a, pair.b):
        with pytest.raises(aiohttp.WSServerHandshakeError) as e:
            await c.ws_connect(f"/v1/sessions/{sid}/ws?ticket={ticket}")
        assert e.value.status == 403
    # The call goes on between its parties.
    await pat_ws.send_json({**CANDIDATE, "sdpMid": "0"})
    assert (await next_of(prov_ws, "candidate"))["sdpMid"] == "0"
    await pat_ws.close()
    await prov_ws.close()


async def test_nothing_from_a_party_not_admitted_crosses_to_the_other_replica(
    pair: Pair,
) -> None:
    w = pair.w
    sid = await pair.schedule()
    prov_ws = await pair.ws(pair.b, sid, w.prov, w.prov_t)
    pat_ws = await pair.ws(pair.a, sid, w.pat, w.pat_t)
    assert (await prov_ws.receive_json(timeout=5))["type"] == "waiting"
    await pat_ws.send_json({"type": "offer", "sdp": sdp(FP_PAT)})
    assert await pat_ws.receive_json(timeout=5) == {"type": "error", "error": "not admitted"}
    refused = await events(pair, "auth.refused", 1)
    assert refused[-1]["data"]["problem"] == "not-admitted" and refused[-1]["session"] == sid
    assert await w.events("session.media_bound") == []
    await pair.admit(sid)
    # The provider's next message is the admission: the offer never reached it.
    assert (await prov_ws.receive_json(timeout=5))["type"] == "admitted"
    await pat_ws.receive_json(timeout=5)
    await pat_ws.send_json({"type": "offer", "sdp": sdp(FP_PAT)})
    assert (await prov_ws.receive_json(timeout=5))["type"] == "offer"
    await prov_ws.send_json({"type": "answer", "sdp": sdp(FP_PROV)})
    assert (await pat_ws.receive_json(timeout=5))["type"] == "answer"
    await pat_ws.close()
    await prov_ws.close()


async def test_an_oversized_message_is_refused_and_not_relayed(pair: Pair) -> None:
    w = pair.w
    sid, prov_ws, pat_ws = await pair.admitted_across()
    await pat_ws.send_json({"type": "offer", "sdp": sdp(FP_PAT) + "a=x:" + "y" * 70_000})
    code, _ = await closed_with(pat_ws)
    assert code == 1009  # message too big: the socket ends, as on one replica
    pat_ws = await pair.ws(pair.a, sid, w.pat, w.pat_t)
    await pat_ws.send_json({**CANDIDATE, "sdpMid": "0"})
    # The provider's next message is the candidate: nothing of the oversized offer.
    assert (await prov_ws.receive_json(timeout=5))["type"] == "candidate"
    assert await w.events("session.media_bound") == []
    await pat_ws.close()
    await prov_ws.close()


async def test_redis_away_refuses_new_sockets_and_closes_those_it_strands(
    pair: Pair, redis_server: PrivateRedis
) -> None:
    w = pair.w
    sid, prov_ws, pat_ws = await pair.admitted_across()
    ticket = await w.ticket(sid, w.pat, w.pat_t)
    redis_server.kill()
    # A new socket: 503 with Retry-After, at once (the client gives up within a second).
    for c in (pair.a, pair.b):
        with pytest.raises(aiohttp.WSServerHandshakeError) as e:
            await asyncio.wait_for(c.ws_connect(f"/v1/sessions/{sid}/ws?ticket={ticket}"), 10)
        assert e.value.status == 503
        assert e.value.headers is not None and e.value.headers["Retry-After"] == "1"
    r = await pair.on(pair.b, "POST", f"/v1/sessions/{sid}/ticket", w.pat, w.pat_t)
    assert r.status == 503 and r.headers["Retry-After"] == "1"
    # The patient's message cannot cross to B: told, and closed for the page to reconnect.
    await pat_ws.send_json({**CANDIDATE, "sdpMid": "0"})
    code, got = await asyncio.wait_for(closed_with(pat_ws), 10)
    assert code == 1013
    assert got == [{"type": "error", "error": "shared state unavailable"}]
    # Redis back: the page's reconnection succeeds and signalling resumes.
    redis_server.start()
    await until(lambda: _connected(pair), 15)
    hub = hub_of(pair.b)
    redis = aioredis.Redis.from_url(pair.config.redis_url or "")
    try:
        # Redis came back empty: B sets the provider's presence again at its next refresh.
        await until(lambda: _exists(redis, hub.presence_key(sid, "provider")), 15)
    finally:
        await redis.aclose()
    # Redis came back empty: proofs dated before then plus clock_skew are refused (503
    # "Replay cache lost") until the clock passes it; then fresh proofs are taken again.
    for _ in range(100):
        r = await pair.on(pair.a, "GET", "/v1/me", w.pat, w.pat_t)
        if r.status != 503:
            break
        await asyncio.sleep(0.1)
    assert r.status == 200, await r.text()
    pat_ws = await pair.ws(pair.a, sid, w.pat, w.pat_t)
    await pat_ws.send_json({**CANDIDATE, "sdpMid": "7"})
    assert (await next_of(prov_ws, "candidate"))["sdpMid"] == "7"
    await pat_ws.close()
    await prov_ws.close()


async def _connected(pair: Pair) -> bool:
    return hub_of(pair.a).connected and hub_of(pair.b).connected


async def _exists(client: aioredis.Redis, key: str) -> bool:
    return bool(await client.exists(key))


async def test_a_call_ended_while_redis_is_away_still_closes_the_sockets_it_can(
    pair: Pair, redis_server: PrivateRedis
) -> None:
    """Ending a call is stored first: with Redis away the other replica's party is not told,
    but the end is answered, recorded, and the sockets here are closed."""
    sid, prov_ws, pat_ws = await pair.admitted_across()
    redis_server.kill()
    # DPoP-protected calls fail closed without Redis: the provider's end is made as the
    # gateway makes one (a provider who lost the right to the call), through B.
    await end_call(pair.b.server.app, sid, "consent")
    code, got = await closed_with(prov_ws)
    assert code == 1000 and got[-1]["type"] == "bye" and got[-1]["state"] == "ended"
    assert [e["session"] for e in await events(pair, "session.ended", 1)] == [sid]
    # The patient's socket on A learns it at its next message: the call is over (or, while
    # A's one-second copy of the call still says admitted, that nothing can cross).
    await pat_ws.send_json({"type": "offer", "sdp": sdp(FP_PAT)})
    err = await next_of(pat_ws, "error")
    assert err["error"] in ("not admitted", "shared state unavailable")
    await pat_ws.close()
