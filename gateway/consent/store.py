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
            row = conn.execute(sa.select(consents).where(consents.c.id == cid)).first()
        return None if row is None else _consent(row)

    def revoke(self, cid: str, now: int) -> bool:
        """Revoke a live consent; False if there is none or it was revoked already."""
        with writing(self._engine) as conn:
            cur = conn.execute(
                consents.update()
                .where(consents.c.id == cid, consents.c.revoked.is_(None))
                .values(revoked=now)
            )
        return cur.rowcount == 1

    def of_patient(self, patient: str) -> list[Consent]:
        q = sa.select(consents).where(consents.c.patient == patient)
        with reading(self._engine) as conn:
            rows = conn.execute(q.order_by(consents.c.created, consents.c.id)).all()
        return [_consent(r) for r in rows]

    def naming(self, grantees: tuple[str, ...]) -> list[Consent]:
        q = sa.select(consents).where(consents.c.grantee.in_(grantees))
        with reading(self._engine) as conn:
            rows = conn.execute(q.order_by(consents.c.created, consents.c.id)).all()
        return [_consent(r) for r in rows]

    def matching(self, patient: str, grantees: tuple[str, ...]) -> list[Consent]:
        q = sa.select(consents).where(
            consents.c.patient == patient, consents.c.grantee.in_(grantees)
        )
        with reading(self._engine) as conn:
            rows = conn.execute(q).all()
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
        em = emergencies.c
        q = (
            sa.select(em.id, em.provider, em.patient, em.created, em.until)
            .where(em.provider == provider, em.patient == patient)
            .where(em.created <= now, em.until > now)
            .order_by(em.until.desc())
            .limit(1)
        )
        with reading(self._engine) as conn:
            row = conn.execute(q).first()
        if row is None:
            return None
        return Emergency(row.id, row.provider, row.patient, int(row.created), int(row.until))
