"""Concurrent calls of one script share round trips to Redis, and each still gets its own
answer (gateway/shared/batch.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from gateway.shared.batch import MAX_BATCH, ScriptBatcher
from gateway.shared.client import open_client
from tests.shared.conftest import RedisServer

#: SET NX PX, 1 if this call set the key: the replay check's core.
SET_NX = "if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then return 1 end return 0"


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = open_client(redis_server.url)
    yield client
    await client.aclose()


def batcher(redis: Redis) -> ScriptBatcher:
    return ScriptBatcher(redis, redis.register_script(SET_NX))


async def test_concurrent_calls_share_round_trips_and_each_is_answered(redis: Redis) -> None:
    b = batcher(redis)
    keys = [f"k:{i % 300}" for i in range(600)]  # each key asked twice
    results = await asyncio.gather(*(b.call([k], ["60000"]) for k in keys))
    # Exactly one of the two asks of each key set it: each script is atomic in a pipeline.
    won: dict[str, int] = {}
    for k, r in zip(keys, results, strict=True):
        won[k] = won.get(k, 0) + int(r)
    assert set(won.values()) == {1}
    assert b.calls == 600
    assert b.round_trips < 600 / 10  # batched, not one round trip each
    for k in ("k:0", "k:299"):
        assert 0 < await redis.pttl(k) <= 60_000
    assert await redis.dbsize() == 300


async def test_a_lone_call_is_one_plain_command(redis: Redis) -> None:
    b = batcher(redis)
    assert await b.call(["alone"], ["1000"]) == 1
    assert await b.call(["alone"], ["1000"]) == 0
    assert (b.round_trips, b.calls) == (2, 2)


async def test_a_pipeline_loads_a_script_the_server_forgot(redis: Redis) -> None:
    b = batcher(redis)
    assert await b.call(["x"], ["1000"]) == 1
    await redis.script_flush()  # as after a Redis restart
    assert await asyncio.gather(*(b.call([f"y:{i}"], ["1000"]) for i in range(5))) == [1] * 5
    await redis.script_flush()
    assert await b.call(["z"], ["1000"]) == 1


async def test_a_batch_never_exceeds_its_limit(redis: Redis) -> None:
    b = batcher(redis)
    await asyncio.gather(*(b.call([f"m:{i}"], ["1000"]) for i in range(3 * MAX_BATCH)))
    assert b.calls == 3 * MAX_BATCH
    assert b.round_trips >= 3


async def test_one_calls_error_fails_only_its_caller(redis: Redis) -> None:
    b = batcher(redis)
    # A PX of 0 is an error Redis reports for that call alone.
    outcomes = await asyncio.gather(
        b.call(["ok-1"], ["1000"]),
        b.call(["bad"], ["0"]),
        b.call(["ok-2"], ["1000"]),
        return_exceptions=True,
    )
    assert outcomes[0] == 1 and outcomes[2] == 1
    assert isinstance(outcomes[1], ResponseError)


async def test_redis_gone_fails_every_waiting_caller(
    redis: Redis, redis_server: RedisServer
) -> None:
    b = batcher(redis)
    assert await b.call(["before"], ["1000"]) == 1
    redis_server.kill()
    outcomes = await asyncio.gather(
        *(b.call([f"during:{i}"], ["1000"]) for i in range(20)), return_exceptions=True
    )
    assert all(isinstance(o, Exception) for o in outcomes)
    # and it recovers by itself once Redis is back (empty: the script is loaded again)
    redis_server.start()
    assert await b.call(["after"], ["1000"]) == 1


async def test_a_caller_that_gives_up_does_not_break_the_others(redis: Redis) -> None:
    b = batcher(redis)

    async def impatient() -> int:
        async with asyncio.timeout(0):
            return int(await b.call(["impatient"], ["1000"]))

    outcomes = await asyncio.gather(
        impatient(), *(b.call([f"p:{i}"], ["1000"]) for i in range(10)), return_exceptions=True
    )
    assert isinstance(outcomes[0], TimeoutError)
    assert outcomes[1:] == [1] * 10


async def test_more_concurrent_calls_than_connections_wait_for_one(redis: Redis) -> None:
    # The app's client: a bounded pool that makes a call wait for a free connection
    # rather than fail (redis-py's default pool raised MaxConnectionsError past 100).
    from gateway.shared.client import MAX_CONNECTIONS

    async def slow(i: int) -> bytes:
        # Each holds its connection for a moment, so they all want one at once.
        await redis.blpop([f"nothing:{i}"], timeout=0.01)
        return bytes(await redis.set(f"w:{i}", b"1") and b"ok")

    got = await asyncio.gather(*(slow(i) for i in range(4 * MAX_CONNECTIONS)))
    assert got == [b"ok"] * (4 * MAX_CONNECTIONS)


async def test_any_command_batches_and_keeps_the_order_it_was_called_in(
    redis: Redis, redis_server: RedisServer
) -> None:
    """PUBLISHes of signalling messages (gateway/shared/hub.py) go out in call order, so one
    sender's messages arrive in order, batched or not."""
    from gateway.shared.batch import Batcher

    listener = Redis.from_url(redis_server.url)
    pubsub = listener.pubsub()
    await pubsub.subscribe("ch")
    assert (await pubsub.get_message(timeout=2))["type"] == "subscribe"  # type: ignore[index]
    b = Batcher(redis)
    heard = await asyncio.gather(
        *(b.run(lambda c, i=i: c.publish("ch", str(i))) for i in range(200))
    )
    assert heard == [1] * 200  # each PUBLISH's own answer: one subscriber heard it
    assert b.round_trips < 20
    got = []
    while len(got) < 200:
        msg = await pubsub.get_message(timeout=2)
        assert msg is not None
        got.append(int(msg["data"]))
    assert got == list(range(200))
    await pubsub.aclose()  # type: ignore[no-untyped-call]
    await listener.aclose()
