"""A replica's heartbeat, and the refusal of a second replica that would be silently unsafe.

Without Redis, a replica keeps in process what several replicas must share (DPoP replay
cache, signalling tickets and hub, invalidations: issue 15), so a second replica on the same
PostgreSQL database is refused with one line naming TELEGATE_REDIS_URL. With Redis on every
replica, any number may run. A replica's row is written before it looks for others, so of
two starting at once each sees the other and both refuse: safe, and a restart settles it (no
tie-break by start time, which clock skew between hosts could turn against the replica
already serving).
An embedded data dir needs no row: its ledger file lock already admits one gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable

from ..errors import ConfigError, GatewayError
from .store import Replica, ReplicaStore

__all__ = ["FRESH_INTERVALS", "INTERVAL", "Heartbeat", "NotAlone", "refuse_unshared"]

log = logging.getLogger("telegate.replicas")

#: Seconds between two heartbeats of a replica.
INTERVAL = 2
#: A replica not seen for this many intervals is taken for dead (kill -9, lost host).
FRESH_INTERVALS = 3
#: Rows older than this many intervals are deleted by whichever replica beats next.
SWEEP_INTERVALS = 30


class NotAlone(ConfigError):
    """Another replica serves this database and the two cannot share their state."""


def refuse_unshared(store: ReplicaStore, me: Replica, now: int, interval: int = INTERVAL) -> None:
    """Raise NotAlone if another replica was seen in the last few intervals and either of
    the two runs without Redis."""
    others = store.others(me.id, now - FRESH_INTERVALS * interval)
    clash = [o for o in others if not (o.redis and me.redis)]
    if not clash:
        return
    o = clash[0]
    raise NotAlone(
        f"another replica ({o.id}, seen {max(0, now - o.seen)} s ago) serves this database "
        f"{'with' if o.redis else 'without'} Redis: several replicas must share their state, "
        "set TELEGATE_REDIS_URL (--redis-url) on every replica"
    )


class Heartbeat:
    """This replica's row, written at ``start`` and every ``interval`` s, removed at
    ``close``. ``start`` raises NotAlone (having removed its row) when it must not run."""

    def __init__(
        self,
        store: ReplicaStore,
        *,
        redis: bool,
        replica_id: str | None = None,
        clock: Callable[[], float] = time.time,
        interval: int = INTERVAL,
    ) -> None:
        self.store, self.clock, self.interval = store, clock, interval
        now = int(clock())
        self.me = Replica(replica_id or secrets.token_hex(6), now, now, redis)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await asyncio.to_thread(self.store.beat, self.me, self.me.started)
        try:
            await asyncio.to_thread(refuse_unshared, self.store, self.me, int(self.clock()))
        except NotAlone:
            await asyncio.to_thread(self.store.remove, self.me.id)
            raise
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            now = int(self.clock())
            try:
                await asyncio.to_thread(self.store.beat, self.me, now)
                await asyncio.to_thread(self.store.sweep, now - SWEEP_INTERVALS * self.interval)
            except GatewayError as e:  # the database is away: the next beat tries again
                log.warning("heartbeat not written", extra={"fields": {"error": str(e)}})

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(GatewayError):
            await asyncio.to_thread(self.store.remove, self.me.id)
