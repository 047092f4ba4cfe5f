"""Live vitals across replicas: a device posting to replica A reaches the provider's stream on
replica B, which checks the patient's consent itself before every push."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import redis.asyncio as aioredis

from gateway.appkeys import CLOCK, CONSENTS
from tests.gateway.vitals.world import batch, hr, sign

from .conftest import Pair, events, next_of

CANDIDATE = {"type": "candidate", "candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host"}


async def post_on(pair: Pair, c: Any, readings: list[dict[str, Any]], batch_id: str) -> None:
    w = pair.w
    jws = sign(w.dev, batch(readings, batch_id))
    headers = {"Content-Type": "application/jose"}
    r = await pair.on(c, "POST", "/v1/vitals", w.dev, w.dev_t, data=jws, headers=headers)
    assert r.status == 201, await r.text()


async def next_to_provider(pair: Pair, pat_ws: Any, prov_ws: Any, mark: str) -> dict[str, Any]:
    """The provider's next message other than a vitals_stopped, once the patient's candidate
    ``mark`` (sent after whatever is being checked) has been relayed: what came before the
    marker came first."""
    await pat_ws.send_json({**CANDIDATE, "sdpMid": mark})
    while True:
        msg: dict[str, Any] = await prov_ws.receive_json(timeout=10)
        if msg["type"] != "vitals_stopped":
            return msg


async def test_readings_posted_on_one_replica_reach_the_provider_on_another(pair: Pair) -> None:
    w = pair.w
    consent = await w.grant(["vitals.stream"])
    sid, prov_ws, pat_ws = await pair.admitted_across()  # provider on B
    spy = aioredis.Redis.from_url(pair.config.redis_url or "")
    heard = spy.pubsub(ignore_subscribe_messages=True)
    await heard.psubscribe("telegate:*:vitals:*")
    now = time.time()
    await post_on(pair, pair.a, [hr(88, now - 2)], "live-a1")
    msg = await next_of(prov_ws, "vitals")
    assert (msg["patient"], msg["device"], msg["batch_id"]) == (w.pat.sub, w.dev.sub, "live-a1")
    assert msg["readings"][0]["value"] == 88
    # What crossed Redis: identifiers and the readings sealed, nothing of them in the clear.
    crossed = await heard.get_message(timeout=5)
    while crossed is None or crossed["type"] != "pmessage":
        crossed = await heard.get_message(timeout=5)
    body = json.loads(crossed["data"])["m"]
    assert set(body) == {"patient", "device", "batch_id", "nonce", "sealed"}
    assert b"8867-4" not in crossed["data"] and len(base64.b64decode(body["sealed"])) > 16
    await heard.aclose()
    await spy.aclose()
    # B decided: the stream's start is one consent.used, naming the session and the consent.
    used = [
        e for e in await events(pair, "consent.used", 1) if e["data"]["scope"] == "vitals.stream"
    ]
    assert [(e["session"], e["data"]["consent"]) for e in used] == [(sid, consent["id"])]
    # Nothing of the readings stays in Redis: they crossed it on a channel, not in a key.
    client = aioredis.Redis.from_url(pair.config.redis_url or "")
    try:
        for key in await client.keys("*"):
            value = await client.get(key) if await client.type(key) == b"string" else b""
            assert b"8867-4" not in (value or b""), key
    finally:
        await client.aclose()
    # The patient's revocation, made through A, stops the stream on B at once.
    r = await pair.on(pair.a, "DELETE", f"/v1/consents/{consent['id']}", w.pat, w.pat_t)
    assert r.status == 200, await r.text()
    assert await next_of(prov_ws, "vitals_stopped") == {
        "type": "vitals_stopped",
        "reason": "consent",
    }
    await post_on(pair, pair.a, [hr(89, now - 1)], "live-a2")
    # The call goes on (its own consent), and the provider got nothing of live-a2.
    assert (await next_to_provider(pair, pat_ws, prov_ws, "after"))["type"] == "candidate"
    await pat_ws.close()
    await prov_ws.close()


async def test_the_receiving_replica_checks_consent_before_every_push(pair: Pair) -> None:
    """A consent revoked in the database with no news on Redis (as if the message were
    lost): B's own check before the push refuses the reading A relays."""
    w = pair.w
    consent = await w.grant(["vitals.stream"])
    sid, prov_ws, pat_ws = await pair.admitted_across()
    now = time.time()
    await post_on(pair, pair.a, [hr(70, now - 3)], "ok-1")
    assert (await next_of(prov_ws, "vitals"))["batch_id"] == "ok-1"
    app_a = pair.a.server.app
    revoked = await asyncio.to_thread(app_a[CONSENTS].revoke, consent["id"], int(app_a[CLOCK]()))
    assert revoked
    await post_on(pair, pair.a, [hr(71, now - 2)], "refused-1")
    assert await next_of(prov_ws, "vitals_stopped") == {
        "type": "vitals_stopped",
        "reason": "consent",
    }
    assert (await next_to_provider(pair, pat_ws, prov_ws, "after"))["type"] == "candidate"
    refused = [
        e for e in await events(pair, "consent.refused", 1) if e["data"]["scope"] == "vitals.stream"
    ]
    assert [e["session"] for e in refused] == [sid]
    await pat_ws.close()
    await prov_ws.close()


async def test_a_provider_on_the_posting_replica_gets_each_reading_once(pair: Pair) -> None:
    w = pair.w
    await w.grant(["vitals.stream"])
    sid = await pair.schedule()
    prov_ws = await pair.ws(pair.a, sid, w.prov, w.prov_t)
    pat_ws = await pair.ws(pair.b, sid, w.pat, w.pat_t)
    await next_of(prov_ws, "waiting")
    await pair.admit(sid)
    await next_of(prov_ws, "admitted")
    await next_of(pat_ws, "admitted")
    await post_on(pair, pair.a, [hr(60, time.time() - 1)], "once-1")
    assert (await next_of(prov_ws, "vitals"))["batch_id"] == "once-1"
    # No second copy through Redis: the next message is the marker.
    assert (await next_to_provider(pair, pat_ws, prov_ws, "after"))["type"] == "candidate"
    await pat_ws.close()
    await prov_ws.close()
