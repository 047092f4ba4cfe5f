"""The request limits' token buckets (gateway/limits) shared by the replicas through Redis.

Each replica keeps its own buckets and checks them on every request, with no Redis call on
the request's path. What it spends it also notes; every ``SYNC_EVERY`` seconds one
pipelined round trip adds its notes to one hash per key, ``<prefix>rate:<kind>:<key>``
(a field per replica, the replica's total spent), and reads back the other replicas'
totals. What the others spent since the last look is then charged to the local bucket. So a
client spreading its requests over N replicas is limited to about its rate, not N times it:
each replica lets through at most what arrives between two looks before it knows.

A key's hash expires ``KEEP`` seconds after its last note, so Redis holds only the keys
used lately. A replica that notes nothing for a key does not look at it: the first request
it sees for a key another replica has emptied goes through, the next look charges it.

Fail open: if Redis does not answer, each replica's own buckets still limit what reaches
it (a flood is still bounded per replica), and the notes of that round are dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ..limits.buckets import Buckets
from .client import DEADLINE

__all__ = ["SharedRates"]

log = logging.getLogger("telegate.shared.rates")

SYNC_EVERY = 0.25
KEEP = 120  # s: longer than any bucket takes to refill


class SharedRates:
    def __init__(
        self,
        client: Redis,
        prefix: str,
        replica: str,
        buckets: dict[str, Buckets],
        clock: Callable[[], float],
    ) -> None:
        self.client = client
        self.prefix = prefix + "rate:"
        self.replica = replica
        self.buckets = buckets
        self.clock = clock
        self._notes: defaultdict[tuple[str, str], float] = defaultdict(float)
        self._seen: dict[tuple[str, str], float] = {}  # the others' total at the last look
        self.looks = 0

    def note(self, kind: str, key: str, cost: float = 1.0) -> None:
        """This replica spent ``cost`` of ``key``'s bucket of ``kind``."""
        self._notes[(kind, key)] += cost

    async def sync(self) -> None:
        """Write this replica's notes, read the others' totals, charge what they spent."""
        notes, self._notes = self._notes, defaultdict(float)
        if not notes:
            return
        keys = list(notes)
        try:
            async with asyncio.timeout(DEADLINE):
                async with self.client.pipeline(transaction=False) as pipe:
                    for kind, key in keys:
                        name = f"{self.prefix}{kind}:{key}"
                        pipe.hincrbyfloat(name, self.replica, notes[(kind, key)])
                        pipe.expire(name, KEEP)
                        pipe.hgetall(name)
                    out = await pipe.execute()
        except (RedisError, OSError, TimeoutError) as e:
            log.warning("shared rates not synced", extra={"fields": {"error": type(e).__name__}})
            return
        self.looks += 1
        now = self.clock()
        for i, (kind, key) in enumerate(keys):
            fields = out[3 * i + 2] or {}
            others = sum(float(v) for r, v in fields.items() if _text(r) != self.replica)
            before = self._seen.get((kind, key), 0.0)
            if others < before:  # the hash expired and started again
                before = 0.0
            self._seen.pop((kind, key), None)
            self._seen[(kind, key)] = others  # last looked at: last in the order
            if others > before:
                self.buckets[kind].charge(key, now, others - before)
        # Bounded as the buckets are: the oldest looks go first.
        limit = 2 * max(b.max_keys for b in self.buckets.values())
        while len(self._seen) > limit:
            del self._seen[next(iter(self._seen))]

    async def run(self) -> None:
        while True:
            await asyncio.sleep(SYNC_EVERY)
            try:
                await self.sync()
            except Exception:
                log.exception("shared rates: sync failed")


def _text(b: bytes | str) -> str:
    return b.decode() if isinstance(b, bytes) else b
