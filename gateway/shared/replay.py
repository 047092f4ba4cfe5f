"""The DPoP replay cache in Redis: a proof's ``jti`` is spent once across every replica, and
a Redis that lost its data is noticed rather than trusted (docs/redis.md "Persistence").

The marker ``<prefix>epoch`` is set once, without expiry, to the time it was made and a
random suffix (``<time>.<hex>``: unlike any earlier marker, even one made the same second). A
replica remembers the marker it saw; finding it gone or changed means Redis restarted
without its data and forgot the proofs spent before. The replica then makes (or marks) the
marker ``"<time> lost"``, and every replica refuses, with 503 and ``Retry-After``, a proof
dated before ``<time> + clock_skew``: such a proof may have been spent before the loss (a
proof may be dated up to ``clock_skew`` ahead). A client's fresh proofs are accepted again
``clock_skew`` seconds after the loss."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
from collections.abc import AsyncIterator

from aiohttp import web
from redis.asyncio import Redis

from ..errors import Unavailable
from .batch import ScriptBatcher
from .client import SharedUnavailable, guarded

__all__ = ["Epoch", "RedisReplays", "ReplayCacheLost", "replay_watch_ctx"]

log = logging.getLogger("telegate.shared.replay")

#: KEYS: marker, proof key (or the marker again); ARGV: a new marker's value, PX of the proof
#: key ("0": no proof). Returns {marker, 1 if the proof key was set}. One round trip, and
#: the marker is made in the same step that trusts the cache.
_SPEND = """
local e = redis.call('GET', KEYS[1])
if not e then
  e = ARGV[1]
  redis.call('SET', KEYS[1], e)
end
local fresh = 0
if ARGV[2] ~= '0' then
  if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2]) then fresh = 1 end
end
return {e, fresh}
"""
#: Mark the marker as a loss, unless another replica changed it meanwhile.
_MARK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) end
return redis.call('GET', KEYS[1])
"""

LOST = " lost"
#: How often each replica looks at the marker even when no proof arrives (s).
WATCH_EVERY = 1.0


class ReplayCacheLost(Unavailable):
    """The proof is dated before Redis lost the spent proofs (plus the skew): it may be a
    replay. A fresh proof is accepted after ``Retry-After``."""

    title = "Replay cache lost"


class Epoch:
    """This replica's view of the marker."""

    def __init__(self) -> None:
        #: The marker as last seen; None before the first look.
        self.seen: str | None = None
        #: When Redis lost its data (the marker's time), if it did.
        self.lost_at: int | None = None

    def parse(self, value: str) -> None:
        if value.endswith(LOST):
            with contextlib.suppress(ValueError):
                self.lost_at = int(value.removesuffix(LOST).split(".")[0])
        self.seen = value


class RedisReplays:
    """:class:`gateway.auth.dpop.Replays` on one Redis shared by the replicas.

    ``SET <prefix>dpop:<key> 1 NX PX <ms>`` is atomic: of two replicas that see the same
    proof at once, exactly one sets the key (RFC 9449 11.1: a server must not accept a
    proof's ``jti`` twice within its acceptance window). The key expires with the window,
    so Redis holds no more than the proofs that could still be replayed. The same script
    reads the data-loss marker (module docstring). The scripts of requests that arrive
    together share one pipelined round trip (:mod:`.batch`)."""

    def __init__(self, client: Redis, prefix: str, skew: int = 0) -> None:
        self.client = client
        self.prefix = prefix + "dpop:"
        self.marker = prefix + "epoch"
        self.skew = skew
        self.epoch = Epoch()
        self._spend = ScriptBatcher(client, client.register_script(_SPEND))
        self._mark = client.register_script(_MARK)

    async def spend(self, key: str, expires: int, now: int, iat: int | None = None) -> bool:
        """True the first time ``key`` is spent before ``expires`` (clock seconds), False
        for a replay. Raises SharedUnavailable when Redis does not answer, ReplayCacheLost
        for a proof dated before a loss of Redis's data: the caller refuses the request
        rather than accept a proof it could not check."""
        ms = max(1, (expires - now) * 1000)
        marker, fresh = await self._run(now, self.prefix + key, ms, "dpop replay check")
        await self._settle(marker, now)
        lost = self.epoch.lost_at
        if lost is not None and (now if iat is None else iat) < lost + self.skew:
            wait = max(1, math.ceil(lost + self.skew - now))
            raise ReplayCacheLost(
                "the shared replay cache lost its data; this proof is dated before that and "
                "may have been spent: make a new one",
                headers={"Retry-After": str(wait)},
            )
        return bool(fresh)

    async def look(self, now: int) -> None:
        """Read (or make) the marker without spending a proof: the watch of every replica."""
        marker, _ = await self._run(now, self.marker, 0, "replay epoch")
        await self._settle(marker, now)

    async def _run(self, now: int, key: str, ms: int, what: str) -> tuple[str, int]:
        # A new marker is "<time>.<random>": a Redis emptied and refilled within one second
        # must still make a marker unlike the one the replicas saw.
        fresh = f"{now}.{secrets.token_hex(6)}"
        res = await guarded(self._spend.call([self.marker, key], [fresh, str(ms)]), what)
        marker, fresh = res
        text = marker.decode() if isinstance(marker, bytes) else str(marker)
        return text, int(fresh)

    async def _settle(self, marker: str, now: int) -> None:
        before = self.epoch.seen
        if before is not None and marker != before and not marker.endswith(LOST):
            # Redis came back empty and another replica, new or unaware, made a new marker
            # first: this replica knows better, and says so for every replica.
            marked = await guarded(
                self._mark(keys=[self.marker], args=[marker, marker + LOST]), "replay epoch"
            )
            marker = marked.decode() if isinstance(marked, bytes) else str(marked)
        self.epoch.parse(marker)
        if before is not None and marker != before:
            log.error(
                "Redis lost its data: proofs dated before the loss are refused",
                extra={"fields": {"marker": marker, "was": before}},
            )


async def replay_watch_ctx(app: web.Application) -> AsyncIterator[None]:
    """Look at the marker at start and once every WATCH_EVERY while the app runs, so every
    replica that saw it notices a loss even when it spends no proof."""
    from ..appkeys import AUTHORITY, CLOCK

    replay = app[AUTHORITY].replay
    if not isinstance(replay, RedisReplays):
        yield
        return
    clock = app[CLOCK]

    async def watch() -> None:
        while True:
            with contextlib.suppress(SharedUnavailable):
                await replay.look(int(clock()))
            await asyncio.sleep(WATCH_EVERY)

    task = asyncio.create_task(watch())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
