"""A device whose clock is minutes off: it learns the gateway's time from the answers
(HTTP ``Date``, the ``date`` property of an MQTT answer) and corrects what it signs, the
reading times of its batches and the ``iat`` of its proofs; each batch recorded once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app
from gateway.appkeys import CONFIG
from gateway.devicekit import Device, MqttTransport
from gateway.rfc3339 import parse_time
from tests.devicekit.test_offline import _batch_ids, _invite
from tests.gateway.vitals.world import World, hr
from tests.mqtt.broker import Broker, running
from tests.mqtt.conftest import gateway_config, subscribed


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with running(tmp_path_factory.mktemp("mosquitto")) as b:
        yield b


@pytest.fixture
async def gw(aiohttp_client: Any, tmp_path: Path, broker: Broker) -> AsyncIterator[Any]:
    c = await aiohttp_client(create_app(gateway_config(tmp_path / "data", broker)))
    await subscribed(c.app)
    yield c


async def _device(
    gw: Any, w: World, home: Path, clock: Callable[[], float], broker: Broker | None = None
) -> Device:
    code = await _invite(gw, w.pat, w.pat_t)
    url = str(gw.make_url("")).rstrip("/")
    dev = await asyncio.to_thread(
        Device.enroll, home, url, code, serial="S", model="M", clock=clock
    )
    await dev.close()
    transport = None
    if broker is not None:
        transport = MqttTransport(dev.id, "127.0.0.1", broker.port, answer_timeout=5)
    return Device.open(home, transport, clock=clock, backoff_base=0.01)


async def _stored_times(w: World) -> list[float]:
    r = await w.read(w.pat, w.pat_t)
    assert r.status == 200, await r.text()
    return [parse_time(x["time"]).timestamp() for x in (await r.json())["readings"]]


@pytest.mark.parametrize("transport", ["http", "mqtt"])
@pytest.mark.parametrize("skew", [600.0, -900.0], ids=["ahead-10min", "behind-15min"])
async def test_a_device_clock_minutes_off_is_corrected_and_each_batch_recorded_once(
    gw: Any, broker: Broker, tmp_path: Path, transport: str, skew: float
) -> None:
    w = await World(gw).setup(gw.app[CONFIG])
    clock = lambda: time.time() + skew  # noqa: E731 - the device's wrong clock
    dev = await _device(gw, w, tmp_path / "dev", clock, broker if transport == "mqtt" else None)
    try:
        # Enrollment asked the gateway's time: readings stamped on the device's wrong
        # clock are signed corrected.
        assert abs(dev.offset + skew) < 5
        ids = [dev.record([hr(70 + i, dev.local_now() - 50 + i)]) for i in range(2)]
        assert (await dev.flush()).delivered == 2
        if skew > 0 or transport == "http":
            # The clock drifted since (the offset learned is stale): the gateway refuses
            # the readings (in its future) or the proof (out of its window), and its
            # answer teaches the device, which signs again and sends again at once. (A
            # clock behind, over MQTT, is not noticed: old readings are valid ones.)
            dev.offset = 0.0
            ids += [dev.record([hr(80 + i, dev.local_now() - 30 + i)]) for i in range(3)]
            done = await dev.flush()
            assert (done.delivered, done.rejected, done.waiting) == (3, 0, 0)
            assert abs(dev.offset + skew) < 5
        assert await _batch_ids(w) == ids  # each once, in order
        # What is stored is on the gateway's clock: within seconds of when it was measured.
        for t in await _stored_times(w):
            assert time.time() - 60 < t <= time.time()
        # The offset is kept with the queue: the device restarted knows it at once.
        await dev.close()
        dev = Device.open(tmp_path / "dev", clock=clock)
        assert abs(dev.offset + skew) < 5 and abs(dev.now() - time.time()) < 5
    finally:
        await dev.close()


async def test_a_gateway_time_beyond_belief_is_not_taken(
    gw: Any, broker: Broker, tmp_path: Path
) -> None:
    w = await World(gw).setup(gw.app[CONFIG])
    dev = await _device(gw, w, tmp_path / "dev", time.time)
    try:
        dev.transport.server_time = (time.time() + 30 * 86_400, time.time())
        assert not dev._learn() and dev.offset == 0  # a month off: not believed
        dev.transport.server_time = (time.time() + 1, time.time())
        assert not dev._learn() and dev.offset == 0  # within the tolerance: left alone
    finally:
        await dev.close()
