"""Two gateway replicas on one PostgreSQL schema (and one private Redis), each subscribed
with the same shared subscription to one private broker: the broker splits the devices'
batches between them, and together they record every batch exactly once, answering each.
Without PostgreSQL, redis-server or mosquitto the test skips locally and fails in CI."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import time
from pathlib import Path
from typing import Any

from gateway.app import create_app
from gateway.mqtt.app import MQTT
from tests.gateway.vitals.world import World, batch, hr, sign
from tests.mqtt.broker import Broker
from tests.mqtt.conftest import DeviceLink, device_link, subscribed
from tests.shared_calls.conftest import config_of
from tests.shared_fanout import conftest as fanout
from tests.shared_fanout.conftest import PrivateRedis

pg_base = fanout.pg_base
_pg_schemas = fanout._pg_schemas
pg_url = fanout.pg_url
redis_server = fanout.redis_server

DEVICES = 4
BATCHES = 12  # per device


async def test_two_replicas_split_the_batches_and_record_each_once(
    aiohttp_client: Any, tmp_path: Path, pg_url: str, redis_server: PrivateRedis, broker: Broker
) -> None:
    base = config_of(tmp_path / "data", pg_url, redis_server.url)
    # One data directory, as the other replica tests share it: each replica names its own
    # persistent MQTT session, or the second would take the first one's session over.
    apps = []
    for name in ("replica-a", "replica-b"):
        cfg = dataclasses.replace(base, mqtt_url=f"{broker.url}?client_id={name}")
        apps.append(await aiohttp_client(create_app(cfg)))
    for c in apps:
        await subscribed(c.app)
    w = await World(apps[1]).setup(base)
    devices = [w.dev, *[await w.device(w.pat) for _ in range(DEVICES - 1)]]

    async with contextlib.AsyncExitStack() as stack:
        links: list[DeviceLink] = [
            await stack.enter_async_context(device_link(broker, d.sub)) for d in devices
        ]
        now = time.time()
        sent: dict[str, list[str]] = {d.sub: [] for d in devices}

        async def publish_all(i: int) -> list[Any]:
            d, link = devices[i], links[i]
            for m in range(BATCHES):
                bid = f"r-{i}-{m:02d}"
                sent[d.sub].append(bid)
                await link.publish(sign(d, batch([hr(60 + m, now - 100 + m)], bid)))
            return [await link.reply() for _ in range(BATCHES)]

        replies = await asyncio.gather(*(publish_all(i) for i in range(DEVICES)))

    # Every device got every receipt, each a new record (201), for its own batches.
    for i, got in enumerate(replies):
        assert [r.status for r in got] == [201] * BATCHES, [r.body for r in got]
        assert sorted(r.body["batch_id"] for r in got) == sent[devices[i].sub]
    # Both replicas took a share: the broker split the shared subscription. (A replica
    # acknowledges a message just after publishing its answer.)
    deadline = time.monotonic() + 10
    while sum(shares := [c.app[MQTT].acknowledged for c in apps]) < DEVICES * BATCHES:
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert sum(shares) == DEVICES * BATCHES and min(shares) > 0, shares

    # The shared ledger holds each batch once, with the receipt its device got.
    expect = DEVICES * BATCHES
    deadline = time.monotonic() + 10
    # Read through B, whose view of the shared log catches up with A's appends.
    while len(events := await w.events("vitals.batch")) < expect:
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    keys = collections.Counter((e["actor"], e["data"]["batch_id"]) for e in events)
    assert len(events) == expect and set(keys.values()) == {1}
    assert set(keys) == {(d, b) for d, ids in sent.items() for b in ids}
    indexes = {r.body["receipt"]["index"] for got in replies for r in got}
    assert indexes == {e["_index"] for e in events}
    # The vitals store holds each reading once, whichever replica wrote it.
    resp = await w.read(w.pat, w.pat_t, limit=1000)
    assert resp.status == 200, await resp.text()
    stored = collections.Counter(
        (x["device"], x["batch_id"]) for x in (await resp.json())["readings"]
    )
    assert stored == collections.Counter(dict.fromkeys(keys, 1))
