"""State that several replicas of one gateway share through Redis (docs/redis.md): the
client every such structure uses, and the Redis backings of the in-process structures'
protocols (replay cache, tickets, invalidations over pub/sub: ``fanout``). Unset
``redis_url``: none of this is used."""

from __future__ import annotations

from .client import REDIS, SharedUnavailable, key_prefix, redis_ctx
from .replay import RedisReplays
from .tickets import RedisTickets

__all__ = ["REDIS", "RedisReplays", "RedisTickets", "SharedUnavailable", "key_prefix", "redis_ctx"]
