"""Call sessions and their state machine, in the ``sessions`` store (``gateway.db``:
sessions.db by default, the shared PostgreSQL database at scale).

``scheduled -> waiting -> admitted -> connected -> ended``, plus ``cancelled`` and
``no_show``; any other move is refused here, whatever the caller asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ..db.dialect import for_update, reading, writing
from .tables import sessions

__all__ = ["BadTransition", "CallSession", "SessionStore", "State"]


class State(StrEnum):
    SCHEDULED = "scheduled"
    WAITING = "waiting"
    ADMITTED = "admitted"
    CONNECTED = "connected"
    ENDED = "ended"
    CANCELLED = "cancelled"
    NO_SHOW = "no_show"


FINAL = frozenset({State.ENDED, State.CANCELLED, State.NO_SHOW})
ALLOWED: dict[State, frozenset[State]] = {
    State.SCHEDULED: frozenset({State.WAITING, State.CANCELLED, State.NO_SHOW}),
    # A patient who leaves the waiting room goes back to scheduled.
    State.WAITING: frozenset({State.ADMITTED, State.SCHEDULED, State.CANCELLED, State.NO_SHOW}),
    State.ADMITTED: frozenset({State.CONNECTED, State.ENDED, State.CANCELLED}),
    State.CONNECTED: frozenset({State.ENDED}),
}


class BadTransition(Exception):
    pass


@dataclass(frozen=True, slots=True)
class CallSession:
    id: str
    patient: str
    provider: str
    state: State
    created: int
    updated: int

    def party(self, sub: str) -> str | None:
        return "patient" if sub == self.patient else "provider" if sub == self.provider else None


class SessionStore:
    """Blocking: call from a thread. ``engine`` comes from ``Database.open("sessions")``;
    ``close`` leaves it open (the database layer disposes of it)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def close(self) -> None:
        """Nothing to release: kept so callers' lifecycles need not change."""

    def add(self, s: CallSession) -> None:
        with writing(self._engine) as conn:
            conn.execute(
                sessions.insert().values(
                    id=s.id,
                    patient=s.patient,
                    provider=s.provider,
                    state=str(s.state),
                    created=s.created,
                    updated=s.updated,
                )
            )

    def get(self, sid: str) -> CallSession | None:
        with reading(self._engine) as conn:
            row = conn.execute(sa.select(sessions).where(sessions.c.id == sid)).first()
        return None if row is None else _session(row)

    def of_provider(self, provider: str, state: State) -> list[CallSession]:
        q = sa.select(sessions).where(
            sessions.c.provider == provider, sessions.c.state == str(state)
        )
        with reading(self._engine) as conn:
            rows = conn.execute(q.order_by(sessions.c.updated, sessions.c.id)).all()
        return [_session(r) for r in rows]

    def of_party(self, sub: str, limit: int, active_only: bool) -> list[CallSession]:
        """The sessions ``sub`` takes part in, most recently changed first; with
        ``active_only``, those not over yet (not ended, cancelled or no-show)."""
        q = sa.select(sessions).where(sa.or_(sessions.c.patient == sub, sessions.c.provider == sub))
        if active_only:
            q = q.where(sessions.c.state.not_in(sorted(FINAL)))
        q = q.order_by(sessions.c.updated.desc(), sessions.c.id).limit(limit)
        with reading(self._engine) as conn:
            rows = conn.execute(q).all()
        return [_session(r) for r in rows]

    def move(self, sid: str, to: State, now: int) -> CallSession:
        """Apply one transition atomically (the row is locked from read to write, so two
        replicas cannot both move it from the same state); raises BadTransition if it is not
        allowed from the session's current state."""
        with writing(self._engine) as conn:
            row = conn.execute(for_update(sa.select(sessions).where(sessions.c.id == sid))).first()
            if row is None:
                raise BadTransition("no such session")
            cur = State(row.state)
            if to not in ALLOWED.get(cur, frozenset()):
                raise BadTransition(f"a session that is {cur} cannot become {to}")
            conn.execute(
                sessions.update().where(sessions.c.id == sid).values(state=str(to), updated=now)
            )
        return CallSession(row.id, row.patient, row.provider, to, int(row.created), now)


def _session(row: sa.Row[Any]) -> CallSession:
    m = row._mapping
    return CallSession(
        m["id"],
        m["patient"],
        m["provider"],
        State(m["state"]),
        int(m["created"]),
        int(m["updated"]),
    )
