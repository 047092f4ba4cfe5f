"""The one place consent is enforced. Every endpoint that touches a patient's data asks
``authorize``; every use and every refusal becomes a ledger event."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ledger.events import Event, EventType
from ledger.log import Receipt

from ..auth.tokens import Forbidden, Principal
from ..clock import stamped
from .store import ConsentStore

__all__ = ["SCOPES", "ConsentGuard", "Decision"]

#: What a patient can grant.
SCOPES = ("call", "vitals.read", "vitals.stream")
ROLE_GRANTEE = "role:provider"

Append = Callable[[Event], Awaitable[Receipt]]


@dataclass(frozen=True, slots=True)
class Decision:
    """Why access was allowed: the patient themself, a consent, or break-the-glass."""

    basis: str
    ref: str | None = None
    #: When the consent or the emergency access ends by itself (None: the patient themself).
    until: int | None = None

    @property
    def flagged(self) -> bool:
        return self.basis == "break_the_glass"


class ConsentGuard:
    def __init__(self, store: ConsentStore, clock: Callable[[], float], append: Append) -> None:
        self.store = store
        self.clock = clock
        self.append = append

    def _event(
        self,
        kind: EventType,
        actor: str,
        patient: str,
        data: dict[str, object],
        session: str | None = None,
    ) -> Event:
        return stamped(self.clock, kind, actor, subject=patient, session=session, data=data)

    async def record(
        self,
        kind: EventType,
        actor: str,
        patient: str,
        data: dict[str, object],
        session: str | None = None,
    ) -> Receipt:
        """Append a consent event decided elsewhere (the live vitals stream)."""
        return await self.append(self._event(kind, actor, patient, data, session))

    async def decide(self, who: Principal, patient: str, scope: str) -> Decision | None:
        """What would allow ``who`` to use ``scope`` on ``patient`` right now, if anything.
        Reads the store every time, so a revocation takes effect at once."""
        if who.sub == patient:
            return Decision("self")
        if who.role != "provider" or scope not in SCOPES:
            return None
        now = int(self.clock())
        consents = await asyncio.to_thread(self.store.matching, patient, (who.sub, ROLE_GRANTEE))
        for c in consents:
            if c.active(now) and scope in c.scopes:
                return Decision("consent", c.id, c.until)
        em = await asyncio.to_thread(self.store.emergency, who.sub, patient, now)
        return Decision("break_the_glass", em.id, em.until) if em else None

    async def authorize(
        self, who: Principal, patient: str, scope: str, purpose: str = "treatment"
    ) -> Decision:
        """Allow or refuse (Forbidden), recording either on the ledger."""
        decision = await self.decide(who, patient, scope)
        data: dict[str, object] = {"scope": scope, "purpose": purpose}
        if decision is None:
            await self.append(self._event(EventType.CONSENT_REFUSED, who.sub, patient, data))
            raise Forbidden(f"no consent from this patient for {scope!r}")
        if decision.basis != "self":
            if decision.basis == "consent":
                data["consent"] = decision.ref
            else:
                data["break_glass"] = decision.ref
            await self.append(self._event(EventType.CONSENT_USED, who.sub, patient, data))
        return decision
