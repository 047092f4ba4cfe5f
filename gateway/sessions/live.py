"""Live access ends when what allowed it ends, at once, and the ledger says so.

The hub knows, per live signalling socket, its holder (``sub``) and the attestation its
ticket was bound to (``jti``). :class:`LiveAccess` hears the invalidations
(:mod:`gateway.invalidation`) and watches the deadlines (:mod:`gateway.deadlines`) of the
access it holds, and ends what depended on them (close code and reason in brackets):

- a subject revoked: every socket of the subject [4403 ``revoked``];
- an attestation (jti) revoked, here or at a peer: every socket opened with it [4403
  ``revoked``];
- a consent revoked (patient, grantee): the patient's live vitals streams left without a
  ``vitals.stream`` basis (``vitals_stopped``), and the provider's socket of each call of the
  patient whose ``call`` basis is gone [4403 ``consent``], and that call;
- a break-the-glass access or a consent's ``until`` running out: the same, at that time
  [4403 ``emergency_ended`` or ``consent_expired``];
- the attestation a socket was opened with expiring: that socket [4401 ``expired``]; the
  page reconnects with a fresh ticket.

A closed party's page gets ``bye`` from ``gateway`` with the reason first, and the other
party's page ``bye`` from the closed party: WebRTC media flows between the browsers, so only
the pages can end it. A closed provider's vitals stream stops with its socket.

Every close but the routine expiry of an attestation is one ``session.socket_closed`` event
by ``gw:self``: ``{"closed", "party", "holder", "jti", "code"}`` and what caused it,
identifiers only. A call that loses its ``call`` basis is also ended (``session.ended`` or
``session.cancelled`` by ``gw:self``), so that the provider cannot come back with a fresh
ticket; so is a call the provider scheduled on a revoked consent and has not joined yet
(``cancel_unfounded``: it would otherwise wait for the patient or the provider to connect).
A call the patient asked for needs no consent (its provider's socket has no ``call`` basis
to lose): the patient ends it with End call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ledger.events import Event, EventType

from ..auth.tokens import Principal
from ..clock import stamped
from ..consent.guard import ROLE_GRANTEE, ConsentGuard, Decision
from ..deadlines import Deadlines
from ..invalidation import Invalidation, Kind
from ..vitals.stream import Streamer
from .signalling import Hub, Peer
from .store import CallSession

__all__ = ["CLOSE_EXPIRED", "CLOSE_FORBIDDEN", "LiveAccess"]

#: The attestation the socket was opened with is no longer valid: reconnect with a new one.
CLOSE_EXPIRED = 4401
#: What allowed the socket is gone (revocation, consent): reconnecting will be refused.
CLOSE_FORBIDDEN = 4403
GATEWAY_ACTOR = "gw:self"

SessionOf = Callable[[str], Awaitable[CallSession | None]]
#: End a call whose provider lost the right to it: (session id, reason).
EndCall = Callable[[str, str], Awaitable[None]]
Append = Callable[[Event], Awaitable[Any]]
#: Cancel the patient's calls not begun yet that a revoked consent was the basis of:
#: (patient, grantee).
CancelUnfounded = Callable[[str, str], Awaitable[None]]


class LiveAccess:
    def __init__(
        self,
        *,
        hub: Hub,
        streamer: Streamer,
        guard: ConsentGuard,
        session: SessionOf,
        end_call: EndCall,
        append: Append,
        deadlines: Deadlines,
        cancel_unfounded: CancelUnfounded | None = None,
    ) -> None:
        self.hub, self.streamer, self.guard = hub, streamer, guard
        self.session, self.end_call, self.append = session, end_call, append
        self.deadlines = deadlines
        self.cancel_unfounded = cancel_unfounded
        #: Provider sockets of calls allowed by a consent or break-the-glass, by session.
        self.calls: dict[str, tuple[Peer, Decision]] = {}
        #: Consent invalidations heard so far: one that arrives while a socket's basis is
        #: being read would not find the socket in ``calls`` yet.
        self._consent_news = 0

    # -- sockets opening and closing ----------------------------------------------------
    async def opened(self, s: CallSession, party: str, peer: Peer, expires: float) -> None:
        """Watch a socket just joined: its attestation's expiry, and for the provider, what
        allows the call."""
        self.deadlines.set(
            ("token", s.id, party), expires, lambda: self._expired(s.id, party, peer)
        )
        if party != "provider":
            return
        self.calls.pop(s.id, None)
        while True:
            heard = self._consent_news
            decision = await self._call_basis(s)
            if heard == self._consent_news:
                break  # else read it again: it may predate a revocation heard meanwhile
        if decision is not None and decision.basis != "self":
            self._watch_call(s.id, peer, decision)

    def closed(self, sid: str, party: str) -> None:
        """A socket left; forget what watched it unless a newer socket of the party lives."""
        if party in self.hub.sessions.get(sid, {}):
            return
        self.deadlines.cancel(("token", sid, party))
        if party == "provider":
            self.calls.pop(sid, None)
            self.deadlines.cancel(("call", sid))
            self.streamer.stop(sid)

    # -- what ends access ----------------------------------------------------------------
    async def hear(self, news: Invalidation) -> None:
        """The listener of :class:`~gateway.invalidation.Invalidations`."""
        if news.kind == Kind.CONSENT:
            assert news.patient is not None and news.grantee is not None
            self._consent_news += 1
            await self.streamer.recheck(news.patient)
            await self._recheck_calls(news.patient, news.grantee, news.reason)
            if self.cancel_unfounded is not None:
                await self.cancel_unfounded(news.patient, news.grantee)
            return
        for sid, party, peer in self.hub.peers():
            if (news.kind == Kind.SUBJECT and peer.sub == news.sub) or (
                news.kind == Kind.TOKEN and peer.jti == news.jti
            ):
                cause = {"target": str(news.kind), "reason": news.reason}
                await self.close(sid, party, peer, CLOSE_FORBIDDEN, "revoked", cause)

    async def _recheck_calls(self, patient: str, grantee: str, reason: str) -> None:
        for sid, (peer, _) in list(self.calls.items()):
            if grantee not in (peer.sub, ROLE_GRANTEE):
                continue
            s = await self.session(sid)
            if s is not None and s.patient == patient:
                await self._recheck_call(s, peer, "consent", {"reason": reason})

    async def _recheck_call(
        self, s: CallSession, peer: Peer, why: str | None, cause: dict[str, Any]
    ) -> None:
        """Close the provider's socket and end the call if nothing allows the call now.
        ``why``: ``consent`` (a revocation), or None when a basis ran out (then
        ``emergency_ended`` or ``consent_expired``)."""
        if self.calls.get(s.id, (None,))[0] is not peer:
            return  # the socket left, or a newer one replaced it
        decision = await self._call_basis(s)
        if decision is not None:
            self._watch_call(s.id, peer, decision)  # another consent still allows the call
            return
        was = self.calls.pop(s.id)[1]
        self.deadlines.cancel(("call", s.id))
        if why is None:
            why = "emergency_ended" if was.basis == "break_the_glass" else "consent_expired"
            # The same end may stop the vitals stream: told and recorded first, as ever.
            await self.streamer.recheck(s.patient)
        cause = {**cause, "scope": "call", "basis": was.basis, "ref": was.ref}
        await self.close(s.id, "provider", peer, CLOSE_FORBIDDEN, why, cause)
        await self.end_call(s.id, why)

    def _watch_call(self, sid: str, peer: Peer, decision: Decision) -> None:
        self.calls[sid] = (peer, decision)
        if decision.until is None:
            self.deadlines.cancel(("call", sid))
            return

        async def due() -> None:
            s = await self.session(sid)
            if s is not None:
                await self._recheck_call(s, peer, None, {})

        self.deadlines.set(("call", sid), decision.until, due)

    async def _call_basis(self, s: CallSession) -> Decision | None:
        who = Principal(s.provider, "provider", frozenset(), "", "")
        return await self.guard.decide(who, s.patient, "call")

    async def _expired(self, sid: str, party: str, peer: Peer) -> None:
        # Routine (every token lifetime): not recorded; the issuance event states the exp.
        await self.hub.drop(sid, party, peer, CLOSE_EXPIRED, "expired")

    # -- closing ----------------------------------------------------------------------------
    async def close(
        self, sid: str, party: str, peer: Peer, code: int, why: str, cause: dict[str, Any]
    ) -> bool:
        """Close one socket for ``why`` and record it; False if it was already gone."""
        s = await self.session(sid)
        state = str(s.state) if s is not None else "ended"
        farewell = {"type": "bye", "from": "gateway", "state": state, "reason": why}
        if not await self.hub.drop(sid, party, peer, code, why, farewell):
            return False
        self.closed(sid, party)
        other = "patient" if party == "provider" else "provider"
        await self.hub.tell(
            sid, other, {"type": "bye", "from": party, "state": state, "reason": why}
        )
        data = {"closed": why, "party": party, "holder": peer.sub, "jti": peer.jti, "code": code}
        patient = s.patient if s is not None else None
        ev = stamped(
            self.guard.clock,
            EventType.SESSION_SOCKET_CLOSED,
            GATEWAY_ACTOR,
            subject=patient,
            session=sid,
            data={**data, **cause},
        )
        await self.append(ev)
        return True
