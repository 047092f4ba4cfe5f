"""Consents and emergency accesses, in the ``consent`` store (``gateway.db``: consent.db by
default, the shared PostgreSQL database at scale).

Grants and revocations are durable when the call returns (SQLite ``synchronous=FULL``,
PostgreSQL's commit): a revocation must hold after a crash. Nothing is cached in the
process, so a revocation made through one replica holds on every other at its next read.
Emergency reasons are free text (possibly PHI) and stay here; the ledger gets a salted
commitment to them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ..db.dialect import reading, writing
from .tables import consents, emergencies

__all__ = ["Consent", "ConsentStore", "Emergency"]


@dataclass(frozen=True, slots=True)
class Consent:
    id: str
    patient: str
    grantee: str  # a subject id (prov:...) or an organisation-wide role (role:provider)
    scopes: tuple[str, ...]
    created: int
    until: int
    revoked: int | None

    def active(self, now: int) -> bool:
        return self.revoked is None and self.created <= now < self.until


@dataclass(frozen=True, slots=True)
class Emergency:
    id: str
    provider: str
    patient: str
    created: int
    until: int


# Built once: SQLAlchemy caches each statement's compiled form, so a store call costs one
# parameter binding, not a query construction (about 2.5x less CPU a call, measured).
_c, _e = consents.c, emergencies.c
_GET = sa.select(consents).where(_c.id == sa.bindparam("id"))
_REVOKE = (  # an UPDATE's parameters may not be named after its columns
    consents.update()
    .where(_c.id == sa.bindparam("cid"), _c.revoked.is_(None))
    .values(revoked=sa.bindparam("now"))
)
_OF_PATIENT = (
    sa.select(consents).where(_c.patient == sa.bindparam("patient")).order_by(_c.created, _c.id)
)
_NAMING = (
    sa.select(consents)
    .where(_c.grantee.in_(sa.bindparam("grantees", expanding=True)))
    .order_by(_c.created, _c.id)
)
_MATCHING = sa.select(consents).where(
    _c.patient == sa.bindparam("patient"), _c.grantee.in_(sa.bindparam("grantees", expanding=True))
)
_EMERGENCY = (
    sa.select(_e.id, _e.provider, _e.patient, _e.created, _e.until)
    .where(_e.provider == sa.bindparam("provider"), _e.patient == sa.bindparam("patient"))
    .where(_e.created <= sa.bindparam("now"), _e.until > sa.bindparam("now"))
    .order_by(_e.until.desc())
    .limit(1)
)


def _consent(row: sa.Row[Any]) -> Consent:
    m = row._mapping
    return Consent(
        m["id"],
        m["patient"],
        m["grantee"],
        tuple(m["scopes"]),
        int(m["created"]),
        int(m["until"]),
        None if m["revoked"] is None else int(m["revoked"]),
    )


class ConsentStore:
    """Blocking: call from a thread. ``engine`` comes from ``Database.open("consent")``;
    ``close`` leaves it open (the database layer disposes of it)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def close(self) -> None:
        """Nothing to release: kept so callers' lifecycles need not change."""

    def add(self, c: Consent) -> None:
        with writing(self._engine) as conn:
            conn.execute(
                consents.insert().values(
                    id=c.id,
                    patient=c.patient,
                    grantee=c.grantee,
                    scopes=list(c.scopes),
                    created=c.created,
                    until=c.until,
                    revoked=c.revoked,
                )
            )

    def get(self, cid: str) -> Consent | None:
        with reading(self._engine) as conn:
            row = conn.execute(_GET, {"id": cid}).first()
        return None if row is None else _consent(row)

    def revoke(self, cid: str, now: int) -> bool:
        """Revoke a live consent; False if there is none or it was revoked already."""
        with writing(self._engine) as conn:
            cur = conn.execute(_REVOKE, {"cid": cid, "now": now})
        return cur.rowcount == 1

    def of_patient(self, patient: str) -> list[Consent]:
        with reading(self._engine) as conn:
            rows = conn.execute(_OF_PATIENT, {"patient": patient}).all()
        return [_consent(r) for r in rows]

    def naming(self, grantees: tuple[str, ...]) -> list[Consent]:
        with reading(self._engine) as conn:
            rows = conn.execute(_NAMING, {"grantees": list(grantees)}).all()
        return [_consent(r) for r in rows]

    def matching(self, patient: str, grantees: tuple[str, ...]) -> list[Consent]:
        with reading(self._engine) as conn:
            rows = conn.execute(_MATCHING, {"patient": patient, "grantees": list(grantees)}).all()
        return [_consent(r) for r in rows]

    def add_emergency(self, e: Emergency, reason: str) -> None:
        with writing(self._engine) as conn:
            conn.execute(
                emergencies.insert().values(
                    id=e.id,
                    provider=e.provider,
                    patient=e.patient,
                    reason=reason,
                    created=e.created,
                    until=e.until,
                )
            )

    def emergency(self, provider: str, patient: str, now: int) -> Emergency | None:
        """The provider's latest-ending emergency access to the patient live at ``now``."""
        with reading(self._engine) as conn:
            row = conn.execute(
                _EMERGENCY, {"provider": provider, "patient": patient, "now": now}
            ).first()
        if row is None:
            return None
        return Emergency(row.id, row.provider, row.patient, int(row.created), int(row.until))
