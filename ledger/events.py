"""Ledger event envelopes: RFC 8785 canonical JSON, event types, salted commitments.

Pure: no I/O. ``data`` carries identifiers, hashes and salted commitments only, never PHI.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import rfc8785

from .errors import EntryTooLarge, LedgerError

__all__ = [
    "MAX_ENTRY_SIZE",
    "Event",
    "EventType",
    "commit",
    "format_time",
    "new_salt",
    "verify_commitment",
]

# C2SP tlog-tiles entry bundles prefix each entry with a big-endian uint16 length.
MAX_ENTRY_SIZE = 0xFFFF
SALT_SIZE = 32


class EventType(StrEnum):
    """Every kind of event the gateway writes. New features add members here."""

    GATEWAY_STARTED = "gateway.started"
    GATEWAY_STOPPED = "gateway.stopped"
    IDENTITY_ENROLLED = "identity.enrolled"
    INVITE_CREATED = "identity.invite_created"
    ATTESTATION_ISSUED = "attestation.issued"
    ATTESTATION_REVOKED = "attestation.revoked"
    CONSENT_GRANTED = "consent.granted"
    CONSENT_REVOKED = "consent.revoked"
    CONSENT_USED = "consent.used"
    CONSENT_REFUSED = "consent.refused"
    EMERGENCY_ACCESS = "consent.emergency_access"
    SESSION_SCHEDULED = "session.scheduled"
    SESSION_WAITING = "session.waiting"
    SESSION_ADMITTED = "session.admitted"
    SESSION_CONNECTED = "session.connected"
    SESSION_MEDIA_BOUND = "session.media_bound"
    SESSION_ENDED = "session.ended"
    SESSION_CANCELLED = "session.cancelled"
    SESSION_NO_SHOW = "session.no_show"
    #: The gateway closed a party's signalling socket because what allowed it ended (a
    #: revocation, a consent, a break-the-glass access); ``data.closed`` says which.
    SESSION_SOCKET_CLOSED = "session.socket_closed"
    VITALS_BATCH = "vitals.batch"
    PATIENT_ERASED = "patient.erased"
    AUDIT_QUERY = "audit.query"
    AUTH_REFUSED = "auth.refused"
    #: Refusals of callers nobody authenticated, counted per source and time window: one
    #: entry per source (a keyed pseudonym of its address) and window, with exact counts
    #: by route, method, status and problem (gateway.auth.refusals, docs/audit.md).
    AUTH_REFUSED_SUMMARY = "auth.refused_summary"
    #: A witness refused this log's checkpoint (a fork or rollback of the log, or a
    #: misconfigured witness), or answered with a cosignature that does not verify.
    WITNESS_ALARM = "witness.alarm"
    #: Another organization's attestation accepted by token exchange: that organization's
    #: name, its issuance receipt (leaf, inclusion proof, witnessed checkpoint) and the
    #: local id its subject acts under (docs/federation.md).
    FEDERATION_ACCEPTED = "federation.accepted"
    #: Another organization's attestation refused, with the reason; a fork of that
    #: organization's log carries both of its checkpoints as evidence.
    FEDERATION_REFUSED = "federation.refused"
    #: A supply-chain party's EPCIS event accepted: its hash, the party's GLN, the business
    #: step and the units it names; never a patient (docs/supply.md).
    SUPPLY_EVENT = "supply.event"
    #: A supply-chain event refused by a custody rule, with the rule and the unit.
    SUPPLY_REFUSED = "supply.refused"
    #: An incentive program published: its id (SHA-256 of its canonical text) and that text
    #: (docs/incentives.md). A program never changes.
    PROGRAM_PUBLISHED = "incentive.program_published"
    #: A program's rule evaluated for one patient and period: the program id, the period,
    #: a salted commitment to the aggregates and the result; never readings or aggregates.
    INCENTIVE_EVALUATED = "incentive.evaluated"
    #: A reward credential (SD-JWT VC) issued for a passed period, with its status index.
    REWARD_ISSUED = "incentive.reward_issued"
    #: A reward credential revoked (its status-list bit set).
    REWARD_REVOKED = "incentive.reward_revoked"


def format_time(t: dt.datetime) -> str:
    """RFC 3339 UTC with millisecond precision and a ``Z`` suffix."""
    t = t.astimezone(dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class Event:
    """One ledger leaf before encoding. ``encode()`` gives its RFC 8785 bytes."""

    type: EventType
    time: str
    actor: str
    subject: str | None = None
    session: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    v: int = 1

    @classmethod
    def now(
        cls,
        type: EventType,
        actor: str,
        *,
        clock: Callable[[], dt.datetime] | None = None,
        subject: str | None = None,
        session: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> Event:
        t = clock() if clock else dt.datetime.now(dt.UTC)
        return cls(type, format_time(t), actor, subject, session, dict(data or {}))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "v": self.v,
            "type": str(self.type),
            "time": self.time,
            "actor": self.actor,
            "data": dict(self.data),
        }
        if self.subject is not None:
            d["subject"] = self.subject
        if self.session is not None:
            d["session"] = self.session
        return d

    def encode(self) -> bytes:
        """Canonical JSON (RFC 8785). Raises EntryTooLarge above 65535 bytes."""
        out: bytes = rfc8785.dumps(self.to_dict())
        if len(out) > MAX_ENTRY_SIZE:
            raise EntryTooLarge(f"event is {len(out)} bytes; the limit is {MAX_ENTRY_SIZE}")
        return out

    @classmethod
    def decode(cls, data: bytes) -> Event:
        """Parse leaf bytes; raises LedgerError unless they are canonical event JSON."""
        try:
            d = json.loads(data)
            ev = cls(
                EventType(d["type"]),
                d["time"],
                d["actor"],
                d.get("subject"),
                d.get("session"),
                d.get("data", {}),
                d["v"],
            )
        except (ValueError, KeyError, TypeError) as e:
            raise LedgerError("not a telegate event") from e
        if ev.encode() != data:
            raise LedgerError("event is not in canonical form")
        return ev


def new_salt(random: Callable[[int], bytes] = os.urandom) -> bytes:
    """A fresh 32-byte per-record salt."""
    return random(SALT_SIZE)


def commit(salt: bytes, value: bytes | str) -> str:
    """Salted commitment ``hex(HMAC-SHA256(salt, value))``.

    The salt is stored off-ledger beside the value; without it the commitment reveals
    nothing, and erasing the salt (or the value) leaves the ledger verifiable.
    """
    if len(salt) < 16:
        raise ValueError("salt must be at least 16 bytes")
    raw = value.encode() if isinstance(value, str) else value
    return hmac.new(salt, raw, hashlib.sha256).hexdigest()


def verify_commitment(salt: bytes, value: bytes | str, commitment: str) -> None:
    """Raise LedgerError unless ``commitment`` commits to ``value`` under ``salt``."""
    if not hmac.compare_digest(commit(salt, value), commitment):
        raise LedgerError("commitment does not match")
