"""A device recalled after its enrollment, publishing over MQTT: refused as over HTTP (one
code path, gateway.vitals.posting.post_batch), answered on its receipts topic, audited."""

from __future__ import annotations

import time
from typing import Any

from aiohttp.test_utils import TestClient

from gateway.appkeys import CONFIG
from tests.gateway.vitals.world import World as Vitals
from tests.gateway.vitals.world import batch, hr, sign
from tests.mqtt.broker import Broker
from tests.mqtt.conftest import broker, device_link, gw  # noqa: F401 (fixtures)
from tests.supply.test_recalled_devices import _udi_device
from tests.supply.world import World, commission, recall, sgtin


async def test_a_recalled_device_publishing_is_refused_and_audited(
    gw: TestClient[Any, Any],  # noqa: F811
    broker: Broker,  # noqa: F811
) -> None:
    vw = await Vitals(gw).setup(gw.app[CONFIG])
    sw = World(gw, vw.adm, vw.adm_t)
    maker = await sw.party("manufacturer", 614141000000)
    await sw.ok(maker, commission([sgtin("DEV1")]))
    dev, _ = await _udi_device(vw)
    now = time.time()
    async with device_link(broker, dev.sub) as link:
        assert (await link.ask(sign(dev, batch([hr(70, now - 2)], "m-1")))).status == 201
        await sw.ok(maker, recall([sgtin("DEV1")]))
        r = await link.ask(sign(dev, batch([hr(71, now - 1)], "m-2")))
    assert r.status == 403 and r.content_type == "application/problem+json"
    assert r.body["type"].endswith("/device-not-genuine") and r.body["verdict"] == "recalled"
    assert [e["data"]["batch_id"] for e in await vw.events("vitals.batch")] == ["m-1"]
    refused = [e for e in await vw.events("auth.refused") if e["actor"] == dev.sub]
    assert len(refused) == 1 and refused[0]["data"]["method"] == "PUBLISH"
    assert refused[0]["data"]["problem"] == "device-not-genuine"
