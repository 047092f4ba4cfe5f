"""Single-use signalling tickets in Redis: issued on one replica, taken once on any."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable

from redis.asyncio import Redis

from ..sessions.signalling import Ticket
from .client import guarded

__all__ = ["RedisTickets"]


class RedisTickets:
    """:class:`gateway.sessions.signalling.Tickets` on one Redis shared by the replicas.

    A ticket is ``SET <prefix>ticket:<code> <json> PX <ttl>`` and is taken with ``GETDEL``
    (Redis 6.2+): one atomic read-and-delete, so of two replicas redeeming one code at once
    only one gets it."""

    def __init__(
        self, client: Redis, prefix: str, clock: Callable[[], float], ttl: int = 60
    ) -> None:
        self.client = client
        self.prefix = prefix + "ticket:"
        self.clock = clock
        self.ttl = ttl

    async def issue(self, session: str, sub: str, jti: str, jkt: str) -> tuple[str, float]:
        """A fresh code and when it expires. Raises SharedUnavailable."""
        code = secrets.token_urlsafe(24)
        expires = self.clock() + self.ttl
        value = json.dumps(
            {"session": session, "sub": sub, "jti": jti, "jkt": jkt, "expires": expires}
        )
        await guarded(
            self.client.set(self.prefix + code, value, px=self.ttl * 1000), "ticket issue"
        )
        return code, expires

    async def redeem(self, code: str, session: str) -> Ticket | None:
        """Spend a ticket; None if unknown, spent, expired or for another session. Raises
        SharedUnavailable (a 503: the socket is refused, never admitted unchecked)."""
        raw = await guarded(self.client.getdel(self.prefix + code), "ticket redeem")
        if raw is None:
            return None
        d = json.loads(raw)
        t = Ticket(str(d["session"]), str(d["sub"]), str(d["jti"]), str(d["jkt"]), d["expires"])
        # Expiry by the injected clock as well as Redis's own PX: tests move the clock.
        if t.session != session or t.expires <= self.clock():
            return None
        return t
