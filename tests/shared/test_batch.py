"""Concurrent spends share round trips to Redis, and each still gets its own answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from gateway.shared.batch import MAX_BATCH, SetNXBatcher
from gateway.shared.client import open_client
from tests.shared.conftest import RedisServer


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = open_client(redis_server.url)
    yield client
    await client.aclose()


async def test_concurrent_spends_share_round_trips_and_each_is_answered(redis: Redis) -> None:
    b = SetNXBatcher(redis)
    keys = [f"k:{i % 300}" for i in range(600)]  # each key asked twice
    results = await asyncio.gather(*(b.set_nx(k, 60_000) for k in keys))
    # Exactly one of the two asks of each key set it: SET NX stays atomic in a pipeline.
    won: dict[str, int] = {}
    for k, r in zip(keys, results, strict=True):
        won[k] = won.get(k, 0) + int(r)
    assert set(won.values()) == {1}
    assert b.commands == 600
    assert b.round_trips < 600 / 10  # batched, not one round trip each
    for k in ("k:0", "k:299"):
        assert 0 < await redis.pttl(k) <= 60_000
    assert await redis.dbsize() == 300


async def test_a_lone_spend_is_one_plain_command(redis: Redis) -> None:
    b = SetNXBatcher(redis)
    assert await b.set_nx("alone", 1000) is True
    assert await b.set_nx("alone", 1000) is False
    assert (b.round_trips, b.commands) == (2, 2)


async def test_a_batch_never_exceeds_its_limit(redis: Redis) -> None:
    b = SetNXBatcher(redis)
    await asyncio.gather(*(b.set_nx(f"m:{i}", 1000) for i in range(3 * MAX_BATCH)))
    assert b.commands == 3 * MAX_BATCH
    assert b.round_trips >= 3


async def test_one_commands_error_fails_only_its_caller(redis: Redis) -> None:
    b = SetNXBatcher(redis)
    # A PX of 0 is an error Redis reports for that command alone.
    outcomes = await asyncio.gather(
        b.set_nx("ok-1", 1000), b.set_nx("bad", 0), b.set_nx("ok-2", 1000), return_exceptions=True
    )
    assert outcomes[0] is True and outcomes[2] is True
    assert isinstance(outcomes[1], ResponseError)


async def test_redis_gone_fails_every_waiting_caller(
    redis: Redis, redis_server: RedisServer
) -> None:
    b = SetNXBatcher(redis)
    assert await b.set_nx("before", 1000) is True
    redis_server.kill()
    outcomes = await asyncio.gather(
        *(b.set_nx(f"during:{i}", 1000) for i in range(20)), return_exceptions=True
    )
    assert all(isinstance(o, Exception) for o in outcomes)
    # and it recovers by itself once Redis is back
    redis_server.start()
    assert await b.set_nx("after", 1000) is True


async def test_a_caller_that_gives_up_does_not_break_the_others(redis: Redis) -> None:
    b = SetNXBatcher(redis)

    async def impatient() -> bool:
        async with asyncio.timeout(0):
            return await b.set_nx("impatient", 1000)

    outcomes = await asyncio.gather(
        impatient(), *(b.set_nx(f"p:{i}", 1000) for i in range(10)), return_exceptions=True
    )
    assert isinstance(outcomes[0], TimeoutError)
    assert outcomes[1:] == [True] * 10
