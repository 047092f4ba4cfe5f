"""Live vitals in a call: pushed to the admitted provider while vitals.stream consent
allows, stopped at once by a revocation, never sent to anyone else."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiohttp import WSMsgType

from tests.gateway.idclient import call
from tests.gateway.vitals.world import World, batch, bp, hr


async def _nothing(ws: Any, seconds: float = 0.3) -> None:
    with pytest.raises(asyncio.TimeoutError):
        msg = await ws.receive_json(timeout=seconds)
        raise AssertionError(f"unexpected message {msg}")


@pytest.fixture
async def consented(world: World) -> dict[str, Any]:
    return dict(await world.grant(["call", "vitals.stream"]))


async def test_readings_reach_the_provider_in_the_call(
    world: World, consented: dict[str, Any]
) -> None:
    sid, prov_ws, pat_ws = await world.admitted_call()
    now = time.time()
    t0 = time.perf_counter()
    resp = await world.send(batch([hr(88, now - 2), bp(131, 84, now - 1)], "live-1"))
    assert resp.status == 201
    msg = await prov_ws.receive_json(timeout=5)
    latency = time.perf_counter() - t0
    assert (
        msg["type"] == "vitals" and msg["patient"] == world.pat.sub and msg["batch_id"] == "live-1"
    )
    assert [r["code"] for r in msg["readings"]] == ["8867-4", "85354-9"]
    assert msg["readings"][0]["value"] == 88
    print(f"post-to-push latency {latency * 1000:.1f} ms")  # measured in bench/vitals.py
    await _nothing(pat_ws)  # the patient's socket gets no copy
    # The start of the stream is one consent.used event naming the session and consent.
    used = [e for e in await world.events("consent.used") if e["data"]["scope"] == "vitals.stream"]
    assert (
        len(used) == 1
        and used[0]["session"] == sid
        and used[0]["data"]["consent"] == consented["id"]
    )
    # A second batch streams without a second consent event; a repeat is not pushed again.
    await world.send(batch([hr(90, now)], "live-2"))
    assert (await prov_ws.receive_json(timeout=5))["batch_id"] == "live-2"
    assert (await world.send(batch([hr(90, now)], "live-2"))).status == 200
    await _nothing(prov_ws)
    assert (
        len(
            [e for e in await world.events("consent.used") if e["data"]["scope"] == "vitals.stream"]
        )
        == 1
    )
    await prov_ws.close()
    await pat_ws.close()


async def test_revoking_consent_stops_the_stream_at_once(
    world: World, consented: dict[str, Any]
) -> None:
    sid, prov_ws, pat_ws = await world.admitted_call()
    now = time.time()
    await world.send(batch([hr(70, now - 3)]))
    assert (await prov_ws.receive_json(timeout=5))["type"] == "vitals"
    r = await call(
        world.client, "DELETE", f"/v1/consents/{consented['id']}", world.pat, world.pat_t
    )
    assert r.status in (200, 204), await r.text()
    # The provider is told at the revocation, not at the next reading.
    stopped = await prov_ws.receive_json(timeout=5)
    assert stopped == {"type": "vitals_stopped", "reason": "consent"}
    # The consent also allowed the call: that ends too (tests/gateway/test_live_revocation.py).
    assert (await prov_ws.receive_json(timeout=5))["reason"] == "consent"
    assert (await world.send(batch([hr(71, now - 2)]))).status == 201  # still stored
    await world.send(batch([hr(72, now - 1)]))
    assert (await prov_ws.receive(timeout=5)).type == WSMsgType.CLOSE
    refused = [
        e for e in await world.events("consent.refused") if e["data"]["scope"] == "vitals.stream"
    ]
    assert len(refused) == 1 and refused[0]["session"] == sid
    await prov_ws.close()
    await pat_ws.close()


async def test_no_stream_without_vitals_stream_consent(world: World) -> None:
    await world.grant(["call", "vitals.read"])
    _, prov_ws, pat_ws = await world.admitted_call()
    assert (await world.send(batch([hr(70, time.time())]))).status == 201
    await _nothing(prov_ws)
    await prov_ws.close()
    await pat_ws.close()


async def test_no_stream_before_admission_or_for_another_patient(
    world: World, consented: dict[str, Any]
) -> None:
    r = await call(
        world.client,
        "POST",
        "/v1/sessions",
        world.prov,
        world.prov_t,
        json={"patient": world.pat.sub},
    )
    sid = str((await r.json())["id"])
    prov_ws = await world.ws(sid, world.prov, world.prov_t)
    assert (await world.send(batch([hr(70, time.time())]))).status == 201
    await _nothing(prov_ws)  # scheduled, not admitted
    # Admitted, but the readings are another patient's.
    pat_ws = await world.ws(sid, world.pat, world.pat_t)
    assert (await prov_ws.receive_json(timeout=5))["type"] == "waiting"
    await call(world.client, "POST", f"/v1/sessions/{sid}/admit", world.prov, world.prov_t)
    assert (await prov_ws.receive_json(timeout=5))["type"] == "admitted"
    assert (await world.send(batch([hr(70, time.time())]), world.other_dev)).status == 201
    await _nothing(prov_ws)
    # After the call ends nothing more is streamed.
    await call(world.client, "POST", f"/v1/sessions/{sid}/end", world.pat, world.pat_t)
    assert (await prov_ws.receive_json(timeout=5))["type"] == "bye"
    await world.send(batch([hr(71, time.time())]))
    assert (await prov_ws.receive(timeout=5)).type == WSMsgType.CLOSE  # nothing but the close
    await prov_ws.close()
    await pat_ws.close()
