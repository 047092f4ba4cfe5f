"""Wiring for several replicas: the resources ``create_app`` adds (issue 15).

- :func:`heartbeat_ctx`: on a shared database, this replica's heartbeat row, and the refusal
  to run beside another replica when either has no Redis (``gateway.replicas.heartbeat``).
- :func:`invalidations_ctx` (with ``redis_url``): :class:`RedisInvalidations` as the app's
  invalidations, hearing the other replicas from startup on.
- :func:`recheck_ctx` (with ``redis_url``, after the live access exists): the once-a-second
  check of live sockets against the database's revocations (``gateway.shared.recheck``).
- :func:`hub_ctx` (with ``redis_url``, before the sessions' hub is used):
  :class:`RedisHub` as the app's signalling hub, calls and live vitals across replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from aiohttp import web

from ..appkeys import AUTHORITY, CONFIG, DATABASE, HUB, INVALIDATIONS, LIVE
from ..limits import GUARD
from ..replicas.heartbeat import Heartbeat
from ..replicas.store import ReplicaStore
from .client import REDIS, key_prefix
from .hub import RedisHub
from .invalidation_redis import RedisInvalidations
from .rates import SharedRates
from .recheck import Recheck

__all__ = [
    "REPLICA_ID",
    "heartbeat_ctx",
    "hub_ctx",
    "invalidations_ctx",
    "recheck_ctx",
    "redis_url",
]

#: This process's id among the replicas: in its heartbeat row and its pub/sub messages.
REPLICA_ID: web.AppKey[str] = web.AppKey("replica_id", str)
REDIS_INVALIDATIONS: web.AppKey[RedisInvalidations] = web.AppKey(
    "redis_invalidations", RedisInvalidations
)


def redis_url(app: web.Application) -> str | None:
    url = app[CONFIG].redis_url
    return str(url) if url else None


def replica_id(app: web.Application) -> str:
    if REPLICA_ID not in app:
        app[REPLICA_ID] = secrets.token_hex(6)
    return app[REPLICA_ID]


async def heartbeat_ctx(app: web.Application) -> AsyncIterator[None]:
    db = app[DATABASE]
    if db.embedded:
        yield  # one gateway per data dir: the ledger file's lock sees to it
        return
    store = ReplicaStore(await asyncio.to_thread(db.open, "replicas"))
    beat = Heartbeat(store, redis=redis_url(app) is not None, replica_id=replica_id(app))
    await beat.start()  # raises NotAlone
    try:
        yield
    finally:
        await beat.close()


async def invalidations_ctx(app: web.Application) -> AsyncIterator[None]:
    url = redis_url(app)
    assert url is not None
    # A client of its own: a subscription waits for messages indefinitely, which the shared
    # command client's short socket timeouts (gateway/shared/client.py) are made to refuse.
    client = aioredis.Redis.from_url(url)
    bus = RedisInvalidations(client, app[CONFIG].log_origin, replica_id(app))
    app[INVALIDATIONS] = app[REDIS_INVALIDATIONS] = bus
    await bus.start()
    try:
        yield
    finally:
        await bus.close()
        await client.aclose()


async def recheck_ctx(app: web.Application) -> AsyncIterator[None]:
    bus = app[REDIS_INVALIDATIONS]
    recheck = Recheck(
        hub=app[HUB],
        authority=app[AUTHORITY],
        live=app[LIVE],
        deliver=bus.deliver,
        connected=lambda: bus.connected,
    )
    bus.on_reconnect = recheck.consents
    recheck.start()
    try:
        yield
    finally:
        bus.on_reconnect = None
        await recheck.close()


async def hub_ctx(app: web.Application) -> AsyncIterator[None]:
    url = redis_url(app)
    assert url is not None
    # The subscription waits for messages indefinitely: a client of its own, as above.
    listener = aioredis.Redis.from_url(url)
    hub = RedisHub(app[REDIS], listener, key_prefix(app[CONFIG].log_origin), replica_id(app))
    app[HUB] = hub
    await hub.start()
    try:
        yield
    finally:
        await hub.close()
        await listener.aclose()


async def rates_ctx(app: web.Application) -> AsyncIterator[None]:
    """The request limits' buckets shared by the replicas (gateway/shared/rates.py)."""
    guard = app.get(GUARD)
    if guard is None:
        yield
        return
    rates = SharedRates(
        app[REDIS],
        key_prefix(app[CONFIG].log_origin),
        replica_id(app),
        {"address": guard.addresses, "client": guard.clients},
        guard.clock,
    )
    guard.noted = rates.note
    task = asyncio.create_task(rates.run())
    try:
        yield
    finally:
        guard.noted = None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
