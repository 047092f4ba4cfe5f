"""Reading a Redis subscription that may die without a word: what the replicas' pub/sub
listeners (invalidations, the signalling hub) share."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["Silent", "listen"]


class Silent(ConnectionError):
    """Redis stopped answering on the subscription's connection."""


async def listen(
    pubsub: Any, ping_every: float, heard: Callable[[dict[str, Any]], Awaitable[None]]
) -> None:
    """Hand every message ``pubsub`` receives to ``heard`` until its link is lost (an
    exception). A frozen or partitioned server closes no socket, and a subscriber that only
    waited would wait for ever: so this PINGs Redis on the subscription every
    ``ping_every`` s and takes two unanswered PINGs for a lost link (raises Silent)."""
    loop = asyncio.get_running_loop()
    last = pinged = loop.time()
    while True:
        msg = await pubsub.get_message(timeout=min(1.0, ping_every))
        now = loop.time()
        if msg is not None:
            last = now
            await heard(msg)
        if now - last > 2 * ping_every:
            raise Silent("no answer from Redis")
        if now - pinged >= ping_every:
            pinged = now
            await pubsub.ping()
