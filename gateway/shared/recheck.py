"""The safety net under Redis pub/sub: live sockets checked against the database's revocations.

Pub/sub delivers at most once: a replica whose subscription dropped misses what was
published meanwhile. Every revocation is also in the database, and each replica's
``Authority`` re-reads what was revoked within a second (``REFRESH_EVERY``). Once a
``period``, :class:`Recheck` compares every live signalling socket with those sets, in
memory: a socket whose holder is revoked, or whose attestation's status bit is set, is ended
as if the invalidation had been heard (the same :class:`~gateway.sessions.live.LiveAccess`
listener, reason ``seen_in_database``). Consents cost a database read per call, so they are
re-read for every live call only while the subscription is down and once when it comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from ..auth.tokens import Authority
from ..errors import GatewayError
from ..invalidation import Invalidation, Kind, Listener
from ..sessions.live import LiveAccess
from ..sessions.signalling import Hub

__all__ = ["REASON", "Recheck"]

log = logging.getLogger("telegate.invalidation.recheck")

REASON = "seen_in_database"


class Recheck:
    def __init__(
        self,
        *,
        hub: Hub,
        authority: Authority,
        live: LiveAccess,
        deliver: Listener,
        connected: Callable[[], bool],
        period: float = 1.0,
    ) -> None:
        self.hub, self.auth, self.live, self.deliver = hub, authority, live, deliver
        self.connected, self.period = connected, period
        #: Status-list index of each live socket's attestation (one read per attestation).
        self._index: dict[str, int | None] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.period)
            try:
                await self.revocations()
                if not self.connected():
                    await self.consents()
            except GatewayError as e:  # the database is away: the next round tries again
                log.warning("recheck failed", extra={"fields": {"error": str(e)}})
            except Exception:
                log.exception("recheck failed")

    async def revocations(self) -> None:
        """End the live sockets of revoked holders and attestations."""
        await self.auth.fresh()
        revoked = self.auth.revoked_subjects
        peers = self.hub.peers()
        live_jtis = {p.jti for _, _, p in peers if p.jti}
        for jti in [j for j in self._index if j not in live_jtis]:
            del self._index[jti]
        for jti in live_jtis - self._index.keys():
            rec = await asyncio.to_thread(self.auth.store.token, jti)
            self._index[jti] = None if rec is None else rec.status_idx
            if rec is not None and rec.revoked is not None:
                self.auth.status.set(rec.status_idx)
        done: set[tuple[str, str]] = set()
        for _sid, _party, peer in peers:
            if peer.closed is not None:
                continue
            if peer.sub in revoked and ("sub", peer.sub) not in done:
                done.add(("sub", peer.sub))
                await self.deliver(Invalidation(Kind.SUBJECT, sub=peer.sub, reason=REASON))
                continue
            idx = self._index.get(peer.jti)
            if idx is not None and self.auth.status.get(idx) and ("jti", peer.jti) not in done:
                done.add(("jti", peer.jti))
                await self.deliver(
                    Invalidation(Kind.TOKEN, sub=peer.sub, jti=peer.jti, reason=REASON)
                )

    async def consents(self) -> None:
        """Ask again, for every live call allowed by a consent, whether it still is."""
        for sid, (peer, _decision) in list(self.live.calls.items()):
            s = await self.live.session(sid)
            if s is not None:
                news = Invalidation(
                    Kind.CONSENT, patient=s.patient, grantee=peer.sub, reason=REASON
                )
                await self.deliver(news)
