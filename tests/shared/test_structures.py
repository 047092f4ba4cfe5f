"""The Redis backings on their own: keys per log origin, expiry with the acceptance
window, and tickets spent by their first taker whatever it finds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from gateway.auth.dpop import ReplayCache
from gateway.shared import RedisReplays, RedisTickets, SharedUnavailable, key_prefix
from gateway.shared.client import open_client
from tests.shared.conftest import RedisServer


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = open_client(redis_server.url)
    yield client
    await client.aclose()


async def test_a_key_is_spent_once_and_kept_for_its_window_only(redis: Redis) -> None:
    r = RedisReplays(redis, key_prefix("a.example/log"))
    assert await r.spend("jkt:jti-1", 1090, 1000) is True
    assert await r.spend("jkt:jti-1", 1090, 1000) is False
    ttl = await redis.pttl("telegate:a.example/log:dpop:jkt:jti-1")
    assert 89_000 < ttl <= 90_000


async def test_two_gateways_on_one_redis_never_share_a_key(redis: Redis) -> None:
    a = RedisReplays(redis, key_prefix("a.example/log"))
    b = RedisReplays(redis, key_prefix("b.example/log"))
    assert await a.spend("k:j", 1060, 1000) and await b.spend("k:j", 1060, 1000)


async def test_of_many_concurrent_spends_of_one_key_exactly_one_wins(redis: Redis) -> None:
    r = RedisReplays(redis, key_prefix("a.example/log"))
    won = await asyncio.gather(*(r.spend("k:same", 1060, 1000) for _ in range(50)))
    assert won.count(True) == 1


async def test_the_in_process_cache_answers_the_same_protocol() -> None:
    r = ReplayCache(1000)
    assert await r.spend("k", 1060, 1000) is True
    assert await r.spend("k", 1060, 1000) is False


async def test_a_ticket_is_taken_once_and_only_for_its_session(redis: Redis) -> None:
    clock = Clock()
    t = RedisTickets(redis, key_prefix("a.example/log"), clock)
    code, expires = await t.issue("s1", "prov:1", "jti", "jkt")
    assert expires == clock.now + 60
    got = await t.redeem(code, "s1")
    assert got is not None and (got.session, got.sub, got.jti, got.jkt) == (
        "s1",
        "prov:1",
        "jti",
        "jkt",
    )
    assert await t.redeem(code, "s1") is None
    other, _ = await t.issue("s1", "prov:1", "jti", "jkt")
    assert await t.redeem(other, "s2") is None  # the wrong session spends it too
    assert await t.redeem(other, "s1") is None
    late, _ = await t.issue("s1", "prov:1", "jti", "jkt")
    clock.now += 60
    assert await t.redeem(late, "s1") is None
    assert 0 < await redis.pttl(t.prefix + (await t.issue("s", "p", "j", "k"))[0]) <= 60_000


async def test_a_stopped_redis_is_a_503_not_an_answer(redis_server: RedisServer) -> None:
    client = open_client(redis_server.url)
    try:
        redis_server.kill()
        with pytest.raises(SharedUnavailable) as e:
            await RedisReplays(client, "p:").spend("k", 1060, 1000)
        assert e.value.status == 503 and e.value.headers == {"Retry-After": "1"}
        with pytest.raises(SharedUnavailable):
            await RedisTickets(client, "p:", Clock()).redeem("code", "s1")
    finally:
        await client.aclose()
