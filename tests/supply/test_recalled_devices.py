"""A device recalled (or made suspect) after its enrollment: its later batches are refused
with the verdict, audited, nothing stored, and its patient's providers in a live call are
told; the verdict cache forgets a unit when this process changes it, and trusts a verdict
at most VERDICT_TTL seconds otherwise."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.appkeys import AUTHORITY
from gateway.config import Config
from gateway.supply.devices import VERDICT_TTL, DeviceGuard, DeviceNotGenuine
from gateway.supply.http import SUPPLY
from tests.gateway.idclient import Holder, get_token, invite_and_enroll
from tests.gateway.vitals.world import DEVICE, batch, hr, sign
from tests.gateway.vitals.world import World as Vitals
from tests.supply.world import World, commission, decommission, recall, sgtin

UDI = "(01)70614141123451(21)DEV1"


async def _worlds(client: TestClient[Any, Any], config: Config) -> tuple[Vitals, World, Any]:
    vw = await Vitals(client).setup(config)
    sw = World(client, vw.adm, vw.adm_t)
    maker = await sw.party("manufacturer", 614141000000)
    await sw.ok(maker, commission([sgtin("DEV1"), sgtin("DEV2")]))
    return vw, sw, maker


async def _udi_device(vw: Vitals, udi: str = UDI) -> tuple[Holder, str]:
    dev = await invite_and_enroll(
        vw.client,
        vw.pat,
        vw.pat_t,
        "device",
        holder=Holder(),
        enroll_extra={**DEVICE, "udi": udi},
        patient=vw.pat.sub,
    )
    return dev, await get_token(vw.client, dev)


async def _nothing(ws: Any, seconds: float = 0.3) -> None:
    with pytest.raises(asyncio.TimeoutError):
        msg = await ws.receive_json(timeout=seconds)
        raise AssertionError(f"unexpected message {msg}")


async def test_a_device_recalled_after_enrollment_is_refused_and_its_providers_told(
    client: TestClient[Any, Any], config: Config
) -> None:
    vw, sw, maker = await _worlds(client, config)
    dev, dev_t = await _udi_device(vw)
    await vw.grant(["call", "vitals.stream"])
    _, prov_ws, pat_ws = await vw.admitted_call()
    now = time.time()
    r = await vw.post(sign(dev, batch([hr(80, now - 3)], "before")), dev, dev_t)
    assert r.status == 201, await r.text()
    assert (await prov_ws.receive_json(timeout=5))["batch_id"] == "before"

    await sw.ok(maker, recall([sgtin("DEV1")]))
    r = await vw.post(sign(dev, batch([hr(81, now - 2)], "after")), dev, dev_t)
    body = await r.json()
    assert r.status == 403 and r.content_type == "application/problem+json", body
    assert body["type"].endswith("/device-not-genuine") and body["verdict"] == "recalled"
    notice = await prov_ws.receive_json(timeout=5)
    assert notice == {
        "type": "device_refused",
        "patient": vw.pat.sub,
        "device": dev.sub,
        "verdict": "recalled",
    }
    await _nothing(pat_ws)  # the patient's own socket is not the providers' stream
    # A second refused batch: refused again, the providers are not told twice in a row.
    r = await vw.post(sign(dev, batch([hr(82, now - 1)], "again")), dev, dev_t)
    assert r.status == 403
    await _nothing(prov_ws)
    # Nothing of the refused batches was stored; the refusals are audited.
    r = await vw.read(vw.pat, vw.pat_t)
    stored = await r.json()
    assert r.status == 200
    assert [x["value"] for x in stored["readings"]] == [80], stored
    refused = [
        e
        for e in await vw.events("auth.refused")
        if e["actor"] == dev.sub and e["data"]["problem"] == "device-not-genuine"
    ]
    assert len(refused) == 2 and refused[0]["data"]["route"] == "/v1/vitals"
    # The patient's device enrolled without a UDI is not concerned.
    assert (await vw.send(batch([hr(70, now)]))).status == 201
    await prov_ws.close()
    await pat_ws.close()


async def test_decommissioned_and_suspect_devices_are_refused(
    client: TestClient[Any, Any], config: Config
) -> None:
    vw, sw, maker = await _worlds(client, config)
    dev1, t1 = await _udi_device(vw)
    dev2, t2 = await _udi_device(vw, "(01)70614141123451(21)DEV2")
    now = time.time()
    assert (await vw.post(sign(dev2, batch([hr(80, now)])), dev2, t2)).status == 201
    await sw.ok(maker, decommission([sgtin("DEV2")]))
    clone = await sw.party("manufacturer", 614141000001)
    await sw.refused(clone, commission([sgtin("DEV1")]))  # DEV1 is now suspect
    for dev, tok, why in ((dev2, t2, "decommissioned"), (dev1, t1, "suspect")):
        r = await vw.post(sign(dev, batch([hr(80, now)])), dev, tok)
        assert r.status == 403 and (await r.json())["verdict"] == why


async def test_the_verdict_is_cached_for_at_most_the_ttl(
    client: TestClient[Any, Any], config: Config
) -> None:
    vw, sw, maker = await _worlds(client, config)
    dev, _ = await _udi_device(vw)
    supply = client.app[SUPPLY]
    lookup = client.app[AUTHORITY].store.subject
    t = [1000.0]
    guard = DeviceGuard(supply, None, lambda: t[0])
    await guard.check(dev.sub, lookup)  # genuine, now cached
    # A change this process does not hear of (another replica's): unseen until the TTL.
    await asyncio.to_thread(supply.store.mark_suspect, sgtin("DEV1"), "commissioned_twice", 1)
    t[0] += VERDICT_TTL - 1
    await guard.check(dev.sub, lookup)
    t[0] += 1
    with pytest.raises(DeviceNotGenuine) as e:
        await guard.check(dev.sub, lookup)
    assert e.value.extra["verdict"] == "suspect"
    # A change this process makes is heard at once (Supply.listeners), TTL or not.
    dev2, _ = await _udi_device(vw, "(01)70614141123451(21)DEV2")
    await guard.check(dev2.sub, lookup)
    await sw.ok(maker, recall([sgtin("DEV2")]))
    with pytest.raises(DeviceNotGenuine) as e:
        await guard.check(dev2.sub, lookup)
    assert e.value.extra["verdict"] == "recalled"
