"""Invalidations: the news that ends live access, and the bus that carries it.

Refusing a revoked token at the next request is not enough: a signalling socket or a live
vitals stream opened with it would go on serving. So the endpoint that revokes a subject, a
token or a consent publishes one :class:`Invalidation`, and whoever holds live access
that depended on it (``gateway.sessions.live``) ends it and records that it did.

Feature code sees only the :class:`Invalidations` protocol (LiveKit's local vs Redis
router). :class:`LocalInvalidations` is the embedded default: one process, and
``publish`` returns only after every subscriber has done its part, so the revoking request
is answered after the sockets are closed. A Redis implementation publishes
:meth:`Invalidation.to_json` on a channel and delivers what each replica receives to that
replica's subscribers with :meth:`Invalidation.from_json` (DESIGN.md, "Scale-out": enforced
on every replica within a second; fail closed when Redis cannot be reached).

What ends by time (a break-the-glass access, a consent's ``until``, a token's ``exp``) needs
no message: each replica watches the deadlines of the access it holds
(:mod:`gateway.deadlines`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

__all__ = ["Invalidation", "Invalidations", "Kind", "Listener", "LocalInvalidations"]

log = logging.getLogger("telegate.invalidation")


class Kind(StrEnum):
    #: A subject (``sub``) is revoked, and with it every attestation it holds.
    SUBJECT = "subject"
    #: One attestation (``jti``, held by ``sub`` when known) is revoked.
    TOKEN = "token"  # noqa: S105 (a kind of news, not a secret)
    #: A consent of ``patient`` naming ``grantee`` (a ``prov:`` id or ``role:provider``)
    #: was revoked or narrowed: access it allowed may have no basis left.
    CONSENT = "consent"


@dataclass(frozen=True, slots=True)
class Invalidation:
    """One piece of news. Identifiers only: it may cross the network to other replicas."""

    kind: Kind
    sub: str | None = None
    jti: str | None = None
    patient: str | None = None
    grantee: str | None = None
    #: A short code for the ledger (``key_compromise``, ``revoked_at_peer``, ``consent``).
    reason: str = ""

    def __post_init__(self) -> None:
        if self.kind == Kind.SUBJECT and not self.sub:
            raise ValueError("a subject invalidation names the subject")
        if self.kind == Kind.TOKEN and not self.jti:
            raise ValueError("a token invalidation names the jti")
        if self.kind == Kind.CONSENT and not (self.patient and self.grantee):
            raise ValueError("a consent invalidation names the patient and the grantee")

    def to_json(self) -> dict[str, str]:
        fields = ("sub", "jti", "patient", "grantee", "reason")
        return {"kind": str(self.kind)} | {
            k: v for k in fields if isinstance(v := getattr(self, k), str) and v
        }

    @classmethod
    def from_json(cls, data: Any) -> Invalidation:
        """Raises ValueError for anything that is not an invalidation."""
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise ValueError("an invalidation is an object of strings")
        extra = set(data) - {"kind", "sub", "jti", "patient", "grantee", "reason"}
        if extra:
            raise ValueError(f"unknown fields {sorted(extra)}")
        kind = Kind(data.get("kind", ""))
        rest = {k: v for k, v in data.items() if k != "kind"}
        return cls(kind, **rest)


Listener = Callable[[Invalidation], Awaitable[None]]


class Invalidations(Protocol):
    """Where invalidations are published and heard."""

    async def publish(self, news: Invalidation) -> None:
        """Deliver ``news`` to every subscriber (of every replica). Raises when it cannot:
        the caller's request fails rather than pretend live access ended."""

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Hear every invalidation from now on; returns a function that stops it."""


class LocalInvalidations:
    """In-process delivery: ``publish`` awaits every subscriber, in subscription order."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)

        def stop() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return stop

    async def publish(self, news: Invalidation) -> None:
        # Every subscriber gets its chance even when one fails: one broken listener must
        # not leave the others' access open. The first failure is raised after.
        failure: BaseException | None = None
        for listener in list(self._listeners):
            try:
                await listener(news)
            except Exception as e:
                log.exception("an invalidation listener failed", extra={"fields": news.to_json()})
                failure = failure or e
        if failure is not None:
            raise failure
