"""docker/mosquitto/acl in a real mosquitto: a device publishes only under its own id and
reads only its own receipts; the gateway (user telegate-gateway) takes every device's
batches through the shared subscription and answers on their receipts. TLS is not part of
this test: usernames are claimed (allow_anonymous), which is what the ACL keys on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from gateway.app import create_app
from gateway.appkeys import CONFIG
from gateway.config import Config
from gateway.mqtt.topics import receipts_topic, vitals_topic
from tests.conftest import ROOT
from tests.gateway.vitals.world import World, batch, hr, sign
from tests.mqtt.broker import Broker, running
from tests.mqtt.conftest import ORIGIN, device_link, subscribed

ACL = ROOT / "docker" / "mosquitto" / "acl"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    extra = f"acl_file {ACL}\nlog_type debug"  # the tests read the broker's denials
    with running(tmp_path_factory.mktemp("mosquitto-acl"), extra) as b:
        yield b


@pytest.fixture
async def w(aiohttp_client: Any, tmp_path: Path, broker: Broker) -> World:
    url = f"mqtt://telegate-gateway@127.0.0.1:{broker.port}"
    config = Config(
        data_dir=tmp_path / "data", log_origin=ORIGIN, rate_exempt_loopback=True, mqtt_url=url
    )
    gw = await aiohttp_client(create_app(config))
    await subscribed(gw.app)
    return await World(gw).setup(gw.app[CONFIG])


async def test_a_device_cannot_publish_under_another_device_topic(w: World, broker: Broker) -> None:
    async with (
        device_link(broker, w.dev.sub) as mine,
        device_link(broker, w.other_dev.sub) as theirs,
    ):
        # Under the other device's id, signed by this one: the broker drops it.
        forged = sign(w.dev, batch([hr(90, time.time() - 5)], "acl-forged"))
        await mine.publish(forged, topic=vitals_topic(w.other_dev.sub), correlation=b"f")
        # Its own batch under its own id goes through, and is answered.
        ok = await mine.ask(sign(w.dev, batch([hr(70, time.time() - 5)], "acl-ok")))
        assert ok.status == 201
        # The broker refused it (its log says so), so the gateway never had it.
        log = broker.log.read_text()
        assert f"Denied PUBLISH from {mine.client.identifier}" in log
        assert mine._replies.empty() and theirs._replies.empty()
    events = await w.events("vitals.batch")
    assert [e["data"]["batch_id"] for e in events] == ["acl-ok"]
    assert [e for e in await w.events("auth.refused") if e["data"]["method"] == "PUBLISH"] == []


async def test_a_device_cannot_read_another_device_receipts(w: World, broker: Broker) -> None:
    # Mosquitto grants the subscription and filters each message by the ACL's read rules.
    async with (
        device_link(broker, w.other_dev.sub) as theirs,
        aiomqtt.Client(
            "127.0.0.1", broker.port, username=w.dev.sub, protocol=aiomqtt.ProtocolVersion.V5
        ) as spy,
    ):
        await spy.subscribe(receipts_topic(w.other_dev.sub), qos=1)
        await spy.subscribe("telegate/v1/devices/+/receipts/#", qos=1)
        await spy.subscribe("telegate/v1/devices/+/vitals", qos=1)
        r = await theirs.ask(sign(w.other_dev, batch([hr(70, time.time() - 5)], "acl-r")))
        assert r.status == 201  # the other device published and got its receipt
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                async for m in spy.messages:
                    raise AssertionError(f"read {m.topic.value}")
