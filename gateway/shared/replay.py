"""The DPoP replay cache in Redis: a proof's ``jti`` is spent once across every replica."""

from __future__ import annotations

from redis.asyncio import Redis

from .batch import SetNXBatcher
from .client import guarded

__all__ = ["RedisReplays"]


class RedisReplays:
    """:class:`gateway.auth.dpop.Replays` on one Redis shared by the replicas.

    ``SET <prefix>dpop:<key> 1 NX PX <ms>`` is one atomic command: of two replicas that
    see the same proof at once, exactly one sets the key (RFC 9449 11.1: a server must not
    accept a proof's ``jti`` twice within its acceptance window). The key expires with the
    window, so Redis holds no more than the proofs that could still be replayed. Spends of
    requests that arrive together share one pipelined round trip (:mod:`.batch`)."""

    def __init__(self, client: Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix + "dpop:"
        self.batch = SetNXBatcher(client)

    async def spend(self, key: str, expires: int, now: int) -> bool:
        """True the first time ``key`` is spent before ``expires`` (clock seconds), False
        for a replay. Raises SharedUnavailable when Redis does not answer: the caller
        refuses the request rather than accept a proof it could not check."""
        ms = max(1, (expires - now) * 1000)
        return await guarded(self.batch.set_nx(self.prefix + key, ms), "dpop replay check")
