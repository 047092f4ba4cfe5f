"""The presence refresh of the signalling hub on Redis (gateway/shared/hub.py): every live
socket's key is kept in a few round trips (a script call per MAX_BATCH sockets), not one
each, and a socket whose key another socket took is closed (4409) by the refresh, wherever
the replacement happened."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from gateway.shared.batch import MAX_BATCH
from gateway.shared.client import open_client
from gateway.shared.hub import CLOSE_REPLACED, RedisHub
from tests.shared.conftest import RedisServer


class Socket:
    """The two things the hub does to a socket it closes: a last message, the close."""

    def __init__(self) -> None:
        self.closed = False
        self.code: int | None = None

    async def send_json(self, message: dict[str, Any]) -> None:
        pass

    async def close(self, *, code: int, message: bytes) -> None:
        self.closed, self.code = True, code


@pytest.fixture
async def hub(redis_server: RedisServer) -> AsyncIterator[RedisHub]:
    client = open_client(redis_server.url)
    listener = aioredis.Redis.from_url(redis_server.url)
    h = RedisHub(client, listener, "t:", "r1", ttl=60.0, refresh_every=3600)
    await h.start()
    yield h
    await h.close()
    await client.aclose()
    await listener.aclose()


async def test_refresh_keeps_every_key_in_few_round_trips_and_closes_the_replaced(
    hub: RedisHub,
) -> None:
    n = MAX_BATCH + 44  # two pipelines
    sockets: list[Socket] = []
    for i in range(n):
        owner = await hub.claim(f"s{i}", "patient", "pat:1")
        ws = Socket()
        sockets.append(ws)
        hub.join(f"s{i}", "patient", ws, "pat:1", owner=owner)  # type: ignore[arg-type]
    key = hub.presence_key
    await hub.refresh()  # the script is loaded (NOSCRIPT, SCRIPT LOAD) once, here
    for i in range(n):
        await hub.client.pexpire(key(f"s{i}", "patient"), 1000)  # about to lapse
    await hub.client.set(key("s7", "patient"), "r2.someone-else")  # taken on replica r2
    await hub.client.delete(key("s9", "patient"))  # lapsed: taken back by its holder

    # Round trips: a command sent on its own, or a pipeline sent.
    client = hub.client
    lone, pipelines = [], []
    plain_command, plain_pipeline = client.execute_command, client.pipeline

    async def command(*args: Any, **options: Any) -> Any:
        lone.append(args[0])
        return await plain_command(*args, **options)

    def pipeline(*args: Any, **kw: Any) -> Any:
        pipelines.append(1)
        return plain_pipeline(*args, **kw)

    client.execute_command = command  # type: ignore[method-assign]
    client.pipeline = pipeline  # type: ignore[method-assign]
    try:
        await hub.refresh()
    finally:
        client.execute_command = plain_command  # type: ignore[method-assign]
        client.pipeline = plain_pipeline  # type: ignore[method-assign]
    assert len(lone) + len(pipelines) == 2  # 300 keys, MAX_BATCH to a round trip

    for i in range(n):
        if i == 7:
            continue
        assert 1000 < await hub.client.pttl(key(f"s{i}", "patient")) <= 60_000, i
        assert not sockets[i].closed
    assert sockets[7].closed and sockets[7].code == CLOSE_REPLACED
    assert await hub.client.get(key("s7", "patient")) == b"r2.someone-else"
    assert "s7" not in hub.sessions and len(hub.peers()) == n - 1
