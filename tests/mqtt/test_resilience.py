"""The broker goes away and comes back; the gateway dies between taking a message and
making its batch durable. Nothing is lost, nothing is recorded twice."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app
from gateway.appkeys import CONFIG
from gateway.mqtt.app import MQTT
from tests.faults.conftest import Gateway, remote, world
from tests.faults.test_store_faults import hold_lock
from tests.gateway.vitals.world import World, batch, hr, sign
from tests.mqtt.broker import running
from tests.mqtt.conftest import device_link, gateway_config, subscribed


async def test_the_consumer_reconnects_by_itself_after_a_broker_restart(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    with running(tmp_path / "broker") as broker:
        gw = await aiohttp_client(create_app(gateway_config(tmp_path / "data", broker)))
        await subscribed(gw.app)
        w = await World(gw).setup(gw.app[CONFIG])
        consumer = gw.app[MQTT]
        broker.kill()
        async with asyncio.timeout(10):
            while consumer.subscribed.is_set():  # noqa: ASYNC110 - cleared on the link's loss
                await asyncio.sleep(0.05)
        broker.start()  # same port, empty: no session survived (persistence false)
        await subscribed(gw.app, 15)
        assert consumer.connections == 2
        async with device_link(broker, w.dev.sub) as d:
            r = await d.ask(sign(w.dev, batch([hr(70, time.time() - 5)], "after-restart")))
        assert r.status == 201
        assert len(await w.events("vitals.batch")) == 1


async def _logged(path: Path, text: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while text not in await asyncio.to_thread(path.read_text, errors="replace"):
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not in {path}")
        await asyncio.sleep(0.1)


async def test_a_gateway_killed_before_the_batch_is_durable_gets_it_again_and_records_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running(tmp_path / "broker") as broker:
        monkeypatch.setenv("TELEGATE_MQTT_URL", broker.url)
        (tmp_path / "logs").mkdir()
        gw = Gateway(tmp_path / "data", tmp_path / "logs")
        try:
            async with remote(gw) as r:
                w = await world(r, gw)
                async with device_link(broker, w.dev.sub) as d:
                    b = batch([hr(71, time.time() - 5)], "through-a-crash")
                    # The vitals store cannot be written: the gateway takes the message,
                    # cannot make it durable, and so does not acknowledge it.
                    holder = hold_lock(gw.data_dir / "vitals.db", 60)
                    try:
                        await d.publish(sign(w.dev, b), correlation=b"c-crash")
                        await _logged(gw.log_path, "mqtt message not durable yet")
                        gw.kill()  # SIGKILL: no cleanup, no acknowledgement
                    finally:
                        holder.kill()
                        holder.communicate(timeout=10)
                    gw.start()  # the same data directory: the same MQTT session
                    reply = await d.reply(30)
                    assert reply.correlation == b"c-crash"
                    assert reply.status == 201, reply.body
                    again = await d.ask(sign(w.dev, b))  # and a device's own retry
                    assert again.status == 200
                    assert again.body["receipt"] == reply.body["receipt"]
                events = await w.events("vitals.batch")
                assert [e["_index"] for e in events] == [reply.body["receipt"]["index"]]
        finally:
            gw.stop()
