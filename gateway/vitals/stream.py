"""Live vitals in a call: each accepted reading goes to the provider of an admitted call
with the patient, while the patient's ``vitals.stream`` consent allows it.

Consent is read again before every push, and a revocation stops the stream at once
(:meth:`Streamer.recheck`, run by ``gateway.sessions.live`` when it hears the revocation). A
stream allowed until a time (a break-the-glass access, a consent's ``until``) stops at that
time, not at the next reading: the basis's end is a deadline (:mod:`gateway.deadlines`). The
provider's page is told (``vitals_stopped``, with the reason ``consent`` or ``expired``).
The start and the stop of a stream are ledger events (``consent.used`` /
``consent.refused`` with the session), not every push: one batch would otherwise mean one
event per provider per reading.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ledger.events import EventType

from ..auth.tokens import Principal
from ..consent.guard import ConsentGuard, Decision
from ..deadlines import Deadlines
from ..errors import Unavailable
from ..sessions.signalling import Hub
from ..sessions.store import CallSession, State

__all__ = ["Streamer"]

log = logging.getLogger("telegate.vitals.stream")

#: What the relay key is derived for (HMAC-SHA256 of the vitals master key): its own key,
#: never the one that seals stored batches.
RELAY_INFO = b"telegate-vitals-relay/v1"


def _aad(patient: str, device: str, batch_id: str) -> bytes:
    return f"{RELAY_INFO.decode()}\n{patient}\n{device}\n{batch_id}".encode()


LIVE = (State.ADMITTED, State.CONNECTED)
SCOPE = "vitals.stream"


class Streamer:
    def __init__(
        self,
        hub: Hub,
        guard: ConsentGuard,
        session: Callable[[str], Awaitable[CallSession | None]],
        deadlines: Deadlines | None = None,
        relay_key: bytes | None = None,
    ) -> None:
        self.hub = hub
        self.guard = guard
        self.session = session
        self.deadlines = deadlines
        #: Sessions whose provider is being sent this patient's vitals right now, and what
        #: allows it.
        self.streaming: dict[str, Decision] = {}
        # Readings relayed by the other replicas (gateway.shared.hub): pushed to the
        # providers here after this replica's own consent check, as if posted here. They
        # cross Redis sealed (AES-GCM) under a key derived from ``relay_key`` (the vitals
        # master key every replica has): Redis sees identifiers, never a reading.
        self._relay = (
            AESGCM(hmac.new(relay_key, RELAY_INFO, hashlib.sha256).digest())
            if relay_key is not None
            else None
        )
        hub.vitals_listener = self._heard

    async def _entitled(self, sid: str, s: CallSession, patient: str) -> bool:
        """Whether the session's provider may see the patient's live vitals now. Records
        the start of a stream (``consent.used``) and its stop (``consent.refused``, and a
        ``vitals_stopped`` message to the provider)."""
        if s.state not in LIVE:
            self.stop(sid)
            return False
        who = Principal(s.provider, "provider", frozenset(), "", "")
        decision = await self.guard.decide(who, patient, SCOPE)
        data: dict[str, object] = {"scope": SCOPE, "purpose": "treatment"}
        if decision is None:
            was = self.streaming.get(sid)
            if was is not None:
                self.stop(sid)
                now = self.guard.clock()
                why = "expired" if was.until is not None and was.until <= now else "consent"
                data["ended"] = why
                await self.guard.record(EventType.CONSENT_REFUSED, s.provider, patient, data, sid)
                await self.hub.send(sid, "provider", {"type": "vitals_stopped", "reason": why})
            return False
        if sid not in self.streaming:
            data["consent" if decision.basis == "consent" else "break_glass"] = decision.ref
            await self.guard.record(EventType.CONSENT_USED, s.provider, patient, data, sid)
        self.streaming[sid] = decision
        if self.deadlines is not None and decision.until is not None:
            self.deadlines.set(("vitals", sid), decision.until, lambda: self._due(sid))
        return True

    async def _due(self, sid: str) -> None:
        """The basis of a stream ends now: stop it unless another one allows it."""
        s = await self.session(sid)
        if s is None or "provider" not in self.hub.sessions.get(sid, {}):
            self.stop(sid)
        elif sid in self.streaming:
            await self._entitled(sid, s, s.patient)

    def stop(self, sid: str) -> None:
        """Forget a stream (its socket is gone, or its basis): nothing more is sent."""
        self.streaming.pop(sid, None)
        if self.deadlines is not None:
            self.deadlines.cancel(("vitals", sid))

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
        """Send the readings to every provider entitled to them now: here, and through the
        other replicas (with ``redis_url``), each of which checks consent itself; returns
        how many were sent here."""
        sent = await self._push_here(patient, device, batch_id, readings)
        message = {"patient": patient, "device": device, "batch_id": batch_id}
        if self._relay is None:
            return sent  # one replica: nobody else to tell
        nonce = os.urandom(12)
        plain = json.dumps(readings, separators=(",", ":")).encode()
        sealed = self._relay.encrypt(nonce, plain, _aad(patient, device, batch_id))
        relayed = {**message, "nonce": nonce.hex(), "sealed": base64.b64encode(sealed).decode()}
        try:
            await self.hub.publish_vitals(patient, relayed)
        except Unavailable:
            # Stored and on the ledger; the providers on other replicas miss it live (their
            # replicas, without Redis, close their sockets: the pages reconnect).
            log.warning("vitals: not relayed to the other replicas", extra={"fields": message})
        return sent

    async def _heard(self, m: dict[str, Any]) -> None:
        """A batch another replica relayed: opened, then pushed here as if posted here."""
        if self._relay is None:
            return
        try:
            patient, device, batch_id = str(m["patient"]), str(m["device"]), str(m["batch_id"])
            plain = self._relay.decrypt(
                bytes.fromhex(m["nonce"]),
                base64.b64decode(m["sealed"]),
                _aad(patient, device, batch_id),
            )
            readings = json.loads(plain)
        except (KeyError, TypeError, ValueError, InvalidTag):
            log.warning("vitals: a relayed batch that does not open was dropped")
            return
        await self._push_here(patient, device, batch_id, readings)

    async def _push_here(
        self, patient: str, device: str, batch_id: str, readings: list[dict[str, Any]]
    ) -> int:
        message = {
            "type": "vitals",
            "patient": patient,
            "device": device,
            "batch_id": batch_id,
            "readings": readings,
        }
        return await self.tell(patient, message)

    async def tell(self, patient: str, message: dict[str, Any]) -> int:
        """Send ``message`` to every provider here entitled to ``patient``'s live vitals
        now (readings, or a notice about the patient's device); returns how many."""
        sent = 0
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
