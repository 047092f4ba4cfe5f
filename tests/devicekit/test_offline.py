"""The device SDK's offline queue against real gateways: batches recorded while the
gateway (or the broker) is down wait on disk, survive the device's restart and a SIGKILL,
and are delivered in order, each recorded once."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app
from gateway.appkeys import CONFIG
from gateway.devicekit import Device, MqttTransport, OfflineQueue, QueueFull
from gateway.mqtt.app import MQTT
from tests.conftest import ROOT
from tests.faults.conftest import Gateway, remote, world
from tests.gateway.idclient import Holder, call
from tests.gateway.vitals.world import World, hr
from tests.mqtt.broker import running
from tests.mqtt.conftest import gateway_config, subscribed

LATER = 10_000.0  # seconds: past any backoff, on the device's injected clock


async def _invite(client: Any, patient: Holder, token: str) -> str:
    body = {"role": "device", "patient": patient.sub}
    r = await call(client, "POST", "/v1/invites", patient, token, json=body)
    assert r.status == 201, await r.text()
    return str((await r.json())["invite"])


async def _batch_ids(w: World) -> list[str]:
    return [e["data"]["batch_id"] for e in await w.events("vitals.batch")]


async def test_batches_queued_while_the_gateway_is_down_arrive_once_in_order(
    tmp_path: Path,
) -> None:
    (tmp_path / "logs").mkdir()
    gw = Gateway(tmp_path / "data", tmp_path / "logs")
    home = tmp_path / "device"
    skew = [0.0]
    try:
        async with remote(gw) as r:
            w = await world(r, gw)
            code = await _invite(r, w.pat, w.pat_t)
            dev = await asyncio.to_thread(
                Device.enroll, home, gw.url, code, serial="SN-9", model="M", backoff_base=0.01
            )
            assert (home / "device.json").stat().st_mode & 0o777 == 0o600
            assert (home / "queue.db").stat().st_mode & 0o777 == 0o600
            first = dev.record([hr(60, time.time() - 30)])
            assert (await dev.flush()).delivered == 1
            gw.stop()
            ids = [dev.record([hr(61 + i, time.time() - 20)]) for i in range(5)]
            bad = dev.record([{"code": "8867-4", "unit": "/min", "value": "x"}])
            down = await dev.flush()
            assert (down.delivered, down.waiting) == (0, 6) and down.retry_in is not None
            assert (await dev.flush()).delivered == 0  # not due yet: nothing sent
            await dev.close()  # the device restarts

            dev = Device.open(home, clock=lambda: time.time() + skew[0], backoff_base=0.01)
            assert len(dev.queue) == 6
            queued = {i.batch_id: i for i in dev.queue.pending()}
            assert list(queued) == [*ids, bad]
            gw.start()
            skew[0] = LATER  # past the backoff
            up = await dev.flush()
            assert (up.delivered, up.rejected, up.waiting) == (5, 1, 0)
            assert [b for b, _, _ in dev.queue.rejected()] == [bad]
            assert dev.queue.rejected()[0][1] == 422
            assert await _batch_ids(w) == [first, *ids]

            # Delivered, then the device died before taking it off the queue: sent again,
            # answered with the first receipt (200), recorded once.
            it = queued[ids[2]]
            dev.queue.put(ids[2], it.jws, time.time(), it.unsigned, it.skew)
            assert (await dev.flush()).delivered == 1
            assert await _batch_ids(w) == [first, *ids]
            await dev.close()
    finally:
        gw.stop()


KILLED_WRITER = """
import sys, time
from pathlib import Path
from gateway.mqtt.app import MQTT
from gateway.devicekit import OfflineQueue
q = OfflineQueue(Path(sys.argv[1]))
for i in range(int(sys.argv[2])):
    q.put(f"b-{i:04d}", f"jws-{i}", time.time())
print("queued", flush=True)
time.sleep(60)
"""


def test_the_queue_file_survives_a_sigkill_of_the_device_process(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    p = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(path), "50"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT)},
    )
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "queued"
        p.send_signal(signal.SIGKILL)
    finally:
        p.communicate(timeout=10)
    assert p.returncode == -signal.SIGKILL
    q = OfflineQueue(path)
    try:
        assert [i.batch_id for i in q.pending()] == [f"b-{i:04d}" for i in range(50)]
    finally:
        q.close()


def test_a_full_queue_refuses_with_a_clear_error_and_keeps_what_it_has(tmp_path: Path) -> None:
    q = OfflineQueue(tmp_path / "q.db", max_items=2)
    try:
        q.put("a", "x", 0)
        with pytest.raises(ValueError, match="already queued"):
            q.put("a", "x", 0)
        q.put("b", "y", 0)
        with pytest.raises(QueueFull, match="maximum"):
            q.put("c", "z", 0)
        assert [i.batch_id for i in q.pending()] == ["a", "b"]
    finally:
        q.close()


async def test_over_mqtt_batches_wait_for_the_broker_and_arrive_once(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    with running(tmp_path / "broker") as broker:
        gw = await aiohttp_client(create_app(gateway_config(tmp_path / "data", broker)))
        await subscribed(gw.app)
        w = await World(gw).setup(gw.app[CONFIG])
        code = await _invite(gw, w.pat, w.pat_t)
        url = str(gw.make_url("")).rstrip("/")
        home = tmp_path / "device"
        skew = [0.0]
        kw: dict[str, Any] = {"clock": lambda: time.time() + skew[0], "backoff_base": 0.01}
        dev = await asyncio.to_thread(Device.enroll, home, url, code, serial="S", model="M")
        await dev.close()
        transport = MqttTransport(dev.id, "127.0.0.1", broker.port, answer_timeout=5)
        dev = Device.open(home, transport, **kw)
        try:
            broker.kill()
            ids = [dev.record([hr(70 + i, time.time() - 10)]) for i in range(3)]
            down = await dev.flush()
            assert (down.delivered, down.waiting) == (0, 3)
            broker.start()
            # The gateway's new subscription, not the one the dead broker had: this
            # broker keeps nothing (persistence false), so it drops what has no subscriber.
            async with asyncio.timeout(15):
                while gw.app[MQTT].connections < 2:  # noqa: ASYNC110 - a count, no event
                    await asyncio.sleep(0.05)
            await subscribed(gw.app, 15)
            skew[0] = LATER
            up = await dev.flush()
            errors = [e for (e,) in dev.queue._db.execute("SELECT last_error FROM outbox")]
            assert (up.delivered, up.waiting) == (3, 0), errors
            assert await _batch_ids(w) == ids
        finally:
            await dev.close()
