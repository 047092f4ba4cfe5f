"""Live vitals in a call: each accepted reading goes to the provider of an admitted call
with the patient, while the patient's ``vitals.stream`` consent allows it.

Consent is read again before every push, so a revocation stops the stream at the very next
reading; the provider's page is told (``vitals_stopped``). The start and the stop of a
stream are ledger events (``consent.used`` / ``consent.refused`` with the session), not
every push: one batch would otherwise mean one event per provider per reading.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ledger.events import EventType

from ..auth.tokens import Principal
from ..consent.guard import ConsentGuard
from ..sessions.signalling import Hub
from ..sessions.store import CallSession, State

__all__ = ["Streamer"]

LIVE = (State.ADMITTED, State.CONNECTED)
SCOPE = "vitals.stream"


class Streamer:
    def __init__(
        self,
        hub: Hub,
        guard: ConsentGuard,
        session: Callable[[str], Awaitable[CallSession | None]],
    ) -> None:
        self.hub = hub
        self.guard = guard
        self.session = session
        #: Sessions whose provider is being sent this patient's vitals right now.
        self.streaming: set[str] = set()

    async def _entitled(self, sid: str, s: CallSession, patient: str) -> bool:
        """Whether the session's provider may see the patient's live vitals now. Records
        the start of a stream (``consent.used``) and its stop (``consent.refused``, and a
        ``vitals_stopped`` message to the provider)."""
        if s.state not in LIVE:
            self.streaming.discard(sid)
            return False
        who = Principal(s.provider, "provider", frozenset(), "", "")
        decision = await self.guard.decide(who, patient, SCOPE)
        data: dict[str, object] = {"scope": SCOPE, "purpose": "treatment"}
        if decision is None:
            if sid in self.streaming:
                self.streaming.discard(sid)
                await self.guard.record(EventType.CONSENT_REFUSED, s.provider, patient, data, sid)
                stopped = {"type": "vitals_stopped", "reason": "consent"}
                await self.hub.send(sid, "provider", stopped)
            return False
        if sid not in self.streaming:
            self.streaming.add(sid)
            data["consent" if decision.basis == "consent" else "break_glass"] = decision.ref
            await self.guard.record(EventType.CONSENT_USED, s.provider, patient, data, sid)
        return True

    async def _live(self, patient: str) -> list[tuple[str, CallSession]]:
        out = []
        for sid in [s for s, room in self.hub.sessions.items() if "provider" in room]:
            s = await self.session(sid)
            if s is not None and s.patient == patient:
                out.append((sid, s))
        return out

    async def push(
        self, patient: str, device: str, batch_id: str, readings: list[dict[str, Any]]
    ) -> int:
        """Send the readings to every provider entitled to them now; returns how many."""
        sent = 0
        message = {
            "type": "vitals",
            "patient": patient,
            "device": device,
            "batch_id": batch_id,
            "readings": readings,
        }
        for sid, s in await self._live(patient):
            if await self._entitled(sid, s, patient) and await self.hub.send(
                sid, "provider", message
            ):
                sent += 1
        return sent

    async def recheck(self, patient: str) -> None:
        """After a revocation: stop, at once, every stream of the patient's vitals that is
        no longer allowed (without waiting for the next reading)."""
        for sid, s in await self._live(patient):
            if sid in self.streaming:
                await self._entitled(sid, s, patient)
