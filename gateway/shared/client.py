"""One ``redis.asyncio.Redis`` client per app, opened in a ``cleanup_ctx`` when
``redis_url`` is set, and the one error every Redis-backed structure raises.

Short socket timeouts and a single retry: an outage answers a request with 503 in well under
two seconds instead of hanging it (docs/redis.md, "When Redis is unreachable")."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

from aiohttp import web
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from ..appkeys import CONFIG
from ..db.url import redact
from ..errors import Unavailable

__all__ = ["REDIS", "SharedUnavailable", "guarded", "key_prefix", "open_client", "redis_ctx"]

log = logging.getLogger("telegate.shared")

#: The app's Redis client; present only when ``redis_url`` is set.
REDIS: web.AppKey[Redis] = web.AppKey("redis")

CONNECT_TIMEOUT = 0.5
OPERATION_TIMEOUT = 0.5
#: The most one Redis call may take, retry included, before the request gets its 503.
DEADLINE = 1.0
#: Connections each replica opens to Redis at most (its pub/sub listeners' apart). A call
#: that finds them all busy waits for one (within DEADLINE) instead of failing: redis-py's
#: default pool raises MaxConnectionsError past 100, which closed calls' sockets as if Redis
#: were down when 1,000 calls opened at once (bench/replicas.py).
MAX_CONNECTIONS = 64

T = TypeVar("T")


class SharedUnavailable(Unavailable):
    """Redis did not answer: a check that needs it cannot be made, so it fails closed."""

    title = "Shared state unavailable"

    def __init__(self, detail: str | None = None) -> None:
        # RFC 9110 10.2.3: a client may retry after a second.
        super().__init__(detail, headers={"Retry-After": "1"})


def key_prefix(log_origin: str) -> str:
    """``telegate:<origin>:``: two gateways (two logs) on one Redis never share a key."""
    return f"telegate:{log_origin}:"


def open_client(url: str) -> Redis:
    """A client that gives up quickly. One retry, at once: a pooled connection that a
    Redis restart closed fails on first use, and the retry reconnects."""
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=DEADLINE,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=OPERATION_TIMEOUT,
        retry=Retry(NoBackoff(), 1),
        health_check_interval=0,
    )
    client: Redis = Redis(connection_pool=pool)
    client.auto_close_connection_pool = True  # aclose() closes the pool too, as from_url's
    return client


async def guarded(call: Awaitable[T], what: str) -> T:
    """Await a Redis call within DEADLINE. Raises SharedUnavailable for any Redis failure
    (refused, reset, timed out, still loading its data, read-only)."""
    try:
        async with asyncio.timeout(DEADLINE):
            return await call
    except (RedisError, OSError, TimeoutError) as e:
        log.warning("redis unavailable", extra={"fields": {"op": what, "error": type(e).__name__}})
        raise SharedUnavailable(f"the shared state (Redis) did not answer: {what}") from e


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    """``app[REDIS]`` for the rest of the app's life, when ``redis_url`` is set. A Redis
    that does not answer at start-up is logged, not fatal: each check that needs it fails
    closed (503) until it answers."""
    url = app[CONFIG].redis_url
    if url is None:
        yield
        return
    client = open_client(url)
    try:
        await guarded(client.ping(), "ping")
        log.info("redis", extra={"fields": {"url": redact(url)}})
    except SharedUnavailable:
        log.warning("redis does not answer yet", extra={"fields": {"url": redact(url)}})
    app[REDIS] = client
    try:
        yield
    finally:
        await client.aclose()
