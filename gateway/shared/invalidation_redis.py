"""Invalidations across replicas: :class:`RedisInvalidations` over Redis pub/sub.

One channel per gateway log origin (``telegate:<origin>:invalidations``): the replicas of
one gateway share it, two gateways on one Redis do not hear each other. A message is
``{"replica": <id>, "news": Invalidation.to_json()}``.

``publish`` delivers to this replica's listeners at once (the revoking request waits on its
own sockets, never on Redis) while the message goes out; a replica drops its own messages
when they come back. A subscriber task hears the others' and hands them to the same
listeners.

Redis pub/sub is at most once: what is published while a subscriber is disconnected is
lost to it. So the subscriber reconnects with a capped backoff and, for the time it was
away, the replica leans on the database, which holds every revocation: identity's revoked
sets are re-read within a second (``Authority.refresh``), and :class:`gateway.shared.
recheck.Recheck` closes any live socket they condemn; consents are re-read for every live
call on reconnection and every second while disconnected.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ..errors import Unavailable
from ..invalidation import Invalidation, Listener, LocalInvalidations
from .subscription import listen

__all__ = ["RedisInvalidations", "channel_of"]

log = logging.getLogger("telegate.invalidation.redis")

BACKOFF_FIRST = 0.05
BACKOFF_MAX = 2.0
#: A PING on the subscription this often (s); no answer for two of them is a lost link: a
#: server that stopped answering (a partition, a frozen host) closes no socket.
PING_EVERY = 5.0


def channel_of(origin: str) -> str:
    return f"telegate:{origin}:invalidations"


class RedisInvalidations:
    """:class:`~gateway.invalidation.Invalidations` shared by every replica on one Redis.

    ``start()`` begins hearing the other replicas, ``close()`` stops; ``on_reconnect`` is
    awaited each time the subscription is made again after a loss (messages may have been
    missed meanwhile)."""

    def __init__(
        self,
        client: aioredis.Redis,
        origin: str,
        replica_id: str,
        *,
        backoff_max: float = BACKOFF_MAX,
        ping_every: float = PING_EVERY,
    ) -> None:
        self.client = client
        self.channel = channel_of(origin)
        self.replica_id = replica_id
        self.backoff_max = backoff_max
        self.ping_every = ping_every
        self._local = LocalInvalidations()
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        #: False from a loss of the subscription until it is made again.
        self.connected = False
        self.on_reconnect: Callable[[], Awaitable[None]] | None = None

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        return self._local.subscribe(listener)

    async def publish(self, news: Invalidation) -> None:
        """Deliver ``news`` here and send it to the other replicas. Raises Unavailable (503)
        when Redis cannot take it, after the local delivery: the revocation itself is in the
        database, where the other replicas read it within a second."""
        body = json.dumps({"replica": self.replica_id, "news": news.to_json()})
        sending = asyncio.ensure_future(self.client.publish(self.channel, body))
        try:
            await self._local.publish(news)
        finally:
            try:
                await sending
            except (RedisError, OSError) as e:
                log.warning(
                    "cannot publish an invalidation to Redis",
                    extra={"fields": {"error": type(e).__name__, **news.to_json()}},
                )
                raise Unavailable(
                    "the revocation is recorded; other replicas enforce it within a second",
                    headers={"Retry-After": "1"},
                ) from e

    async def deliver(self, news: Invalidation) -> None:
        """Deliver ``news`` to this replica's listeners only (what the database says was
        revoked, found by :mod:`gateway.shared.recheck`, is every replica's own finding)."""
        await self._local.publish(news)

    # -- hearing the other replicas ------------------------------------------------------
    async def start(self, wait: float = 5.0) -> None:
        """Start the subscriber; waits up to ``wait`` s for the first subscription (a
        replica whose Redis is down still starts: it reconnects in the background)."""
        self._task = asyncio.get_running_loop().create_task(self._run())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), wait)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def status(self) -> dict[str, Any]:
        return {"channel": self.channel, "connected": self.connected}

    async def _run(self) -> None:
        delay, lost = BACKOFF_FIRST, False
        while True:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self.connected = True
                self._subscribed.set()
                delay = BACKOFF_FIRST
                if lost:
                    lost = False
                    log.info("invalidations: Redis subscription restored")
                    if self.on_reconnect is not None:
                        await self._guarded(self.on_reconnect())
                await listen(pubsub, self.ping_every, self._message)
            except (RedisError, OSError) as e:
                if not lost:
                    log.warning(
                        "invalidations: Redis subscription lost; revocations are read from "
                        "the database meanwhile",
                        extra={"fields": {"error": type(e).__name__}},
                    )
                lost, self.connected = True, False
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            # Capped exponential backoff with jitter: replicas do not reconnect in step.
            await asyncio.sleep(delay * (0.5 + random.random() / 2))  # noqa: S311
            delay = min(delay * 2, self.backoff_max)

    async def _message(self, msg: dict[str, Any]) -> None:
        if msg.get("type") == "message":
            await self._heard(msg["data"])

    async def _heard(self, data: bytes | str) -> None:
        try:
            msg = json.loads(data)
            if not isinstance(msg, dict):
                raise ValueError("not an object")
            if msg.get("replica") == self.replica_id:
                return  # delivered here when it was published
            news = Invalidation.from_json(msg.get("news"))
        except ValueError:
            log.warning("invalidations: a malformed message on the channel was dropped")
            return
        await self._guarded(self._local.publish(news))

    async def _guarded(self, work: Awaitable[None]) -> None:
        # A listener's failure is logged by LocalInvalidations; the subscriber goes on.
        with contextlib.suppress(Exception):
            await work
