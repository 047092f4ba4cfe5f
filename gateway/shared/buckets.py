"""The per-source limit of anonymous refusals (``refusal_rate``/``refusal_burst``), shared by
the replicas through Redis: a source refused on one replica has spent its bucket on all.

One hash per source, ``<prefix>refusals:<pseudonym>`` with ``t`` (tokens) and ``seen`` (the
last refill), updated by one script: refill at ``rate`` a second up to ``burst``, spend one.
It expires once the bucket would be full again, so Redis holds only the sources refused
lately. A replica learns a source is empty from the answer to its own spend and refuses it
locally until the bucket refills: no Redis call on the path of an ordinary request.

Fail open: if Redis does not answer, the replica's own bucket (``Tally``) still limits the
source on that replica. The limit guards the gateway against floods of refused requests; a
request it lets through is still checked in full, and DPoP-protected calls fail closed on a
Redis outage anyway (docs/redis.md)."""

from __future__ import annotations

import logging

from redis.asyncio import Redis

from .client import guarded

__all__ = ["SharedBuckets"]

log = logging.getLogger("telegate.shared.buckets")

_SPEND = """
local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local v = redis.call('HMGET', KEYS[1], 't', 'seen')
local t = tonumber(v[1]) or burst
local seen = tonumber(v[2]) or now
if now > seen then
  t = math.min(burst, t + (now - seen) * rate)
  seen = now
end
t = math.max(0, t - 1)
redis.call('HSET', KEYS[1], 't', tostring(t), 'seen', tostring(seen))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - t) / rate * 1000) + 1000)
return tostring(t)
"""


class SharedBuckets:
    def __init__(self, client: Redis, prefix: str, rate: float, burst: int) -> None:
        self.client = client
        self.prefix = prefix + "refusals:"
        self.rate = rate
        self.burst = burst
        self._spend = client.register_script(_SPEND)

    async def spend(self, source: str, now: float) -> float | None:
        """Spend one token of ``source``'s shared bucket. The seconds until it has a token
        again if it is empty now, else None. Raises SharedUnavailable."""
        args = [repr(self.rate), str(self.burst), repr(now)]
        left = await guarded(self._spend(keys=[self.prefix + source], args=args), "refusal limit")
        tokens = float(left.decode() if isinstance(left, bytes) else left)
        if tokens >= 1:
            return None
        return max(1e-3, (1 - tokens) / self.rate)
