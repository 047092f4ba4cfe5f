"""The one place consent is enforced. Every endpoint that touches a patient's data asks
``authorize``; every use and every refusal becomes a ledger event."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from ledger.events import Event, EventType
from ledger.log import Receipt

from ..auth.tokens import Forbidden
from ..clock import stamped
from .store import ConsentStore

__all__ = [
    "INCENTIVES",
    "SCOPES",
    "Actor",
    "ConsentGuard",
    "Decision",
    "Party",
    "program_grantee",
]

#: What a patient can grant. ``devices``: register a monitoring device that reports into
#: the patient's record (docs/compliance.md, "Consent scopes").
SCOPES = ("call", "vitals.read", "vitals.stream", "devices")
ROLE_GRANTEE = "role:provider"
#: Scopes break-the-glass does not reach: a device registered in an emergency would go on
#: writing into the record long after the emergency window closed.
NOT_IN_EMERGENCY = frozenset({"devices"})

#: Enrollment into an incentive program (gateway/incentives, docs/incentives.md): a consent
#: whose grantee is ``program:<program id>`` and whose only scope is this one, made by
#: ``POST /v1/programs/{id}/enroll`` (not ``POST /v1/consents``) and revoked like any other.
#: It lets the gateway evaluate that program over the patient's vitals; no person is named,
#: so ``decide`` never grants anyone access through it.
INCENTIVES = "incentives"
PROGRAM_GRANTEE = "program:"

Append = Callable[[Event], Awaitable[Receipt]]


def program_grantee(program_id: str) -> str:
    """The grantee an enrollment into ``program_id`` names."""
    return PROGRAM_GRANTEE + program_id


class Actor(Protocol):
    """Whoever asks: the authenticated caller (``Principal``), or a ``Party`` acting
    through something it left behind (the inviter of a device invite being redeemed)."""

    @property
    def sub(self) -> str: ...

    @property
    def role(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Party:
    """An actor who is not this request's caller, as the identity store knows them."""

    sub: str
    role: str


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

    async def decide(self, who: Actor, patient: str, scope: str) -> Decision | None:
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
        if scope in NOT_IN_EMERGENCY:
            return None
        em = await asyncio.to_thread(self.store.emergency, who.sub, patient, now)
        return Decision("break_the_glass", em.id, em.until) if em else None

    async def authorize(
        self,
        who: Actor,
        patient: str,
        scope: str,
        purpose: str = "treatment",
        *,
        record_use: bool = True,
    ) -> Decision:
        """Allow or refuse (Forbidden), recording either on the ledger. ``record_use=False``
        re-checks an access whose use is already recorded (a device invite being redeemed):
        only a refusal is recorded."""
        decision = await self.decide(who, patient, scope)
        data: dict[str, object] = {"scope": scope, "purpose": purpose}
        if decision is None:
            await self.append(self._event(EventType.CONSENT_REFUSED, who.sub, patient, data))
            raise Forbidden(f"no consent from this patient for {scope!r}")
        if decision.basis != "self" and record_use:
            if decision.basis == "consent":
                data["consent"] = decision.ref
            else:
                data["break_glass"] = decision.ref
            await self.append(self._event(EventType.CONSENT_USED, who.sub, patient, data))
        return decision
