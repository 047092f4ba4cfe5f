"""Call sessions and their state machine, in SQLite (``<data_dir>/sessions.db``).

``scheduled -> waiting -> admitted -> connected -> ended``, plus ``cancelled`` and
``no_show``; any other move is refused here, whatever the caller asked for.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

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
    """Blocking: call from a thread."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        db.execute(
            "CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, patient TEXT NOT NULL, "
            "provider TEXT NOT NULL, state TEXT NOT NULL, created INTEGER NOT NULL, "
            "updated INTEGER NOT NULL)"
        )
        db.execute("CREATE INDEX IF NOT EXISTS sessions_provider ON sessions (provider, state)")
        db.execute("CREATE INDEX IF NOT EXISTS sessions_patient ON sessions (patient, state)")
        self._db = db
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, s: CallSession) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?)",
                (s.id, s.patient, s.provider, str(s.state), s.created, s.updated),
            )

    def get(self, sid: str) -> CallSession | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM sessions WHERE id = ?", (sid,)).fetchone()
        return (
            None
            if row is None
            else CallSession(row[0], row[1], row[2], State(row[3]), row[4], row[5])
        )

    def of_provider(self, provider: str, state: State) -> list[CallSession]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM sessions WHERE provider = ? AND state = ? ORDER BY updated",
                (provider, str(state)),
            ).fetchall()
        return [CallSession(r[0], r[1], r[2], State(r[3]), r[4], r[5]) for r in rows]

    def of_party(self, sub: str, limit: int, active_only: bool) -> list[CallSession]:
        """The sessions ``sub`` takes part in, most recently changed first; with
        ``active_only``, those not over yet (not ended, cancelled or no-show)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM sessions WHERE (patient = ? OR provider = ?) "
                "AND (? = 0 OR state NOT IN ('ended', 'cancelled', 'no_show')) "
                "ORDER BY updated DESC, id LIMIT ?",
                (sub, sub, int(active_only), limit),
            ).fetchall()
        return [CallSession(r[0], r[1], r[2], State(r[3]), r[4], r[5]) for r in rows]

    def move(self, sid: str, to: State, now: int) -> CallSession:
        """Apply one transition atomically; raises BadTransition if it is not allowed from
        the session's current state."""
        with self._lock:
            row = self._db.execute("SELECT state FROM sessions WHERE id = ?", (sid,)).fetchone()
            if row is None:
                raise BadTransition("no such session")
            cur = State(row[0])
            if to not in ALLOWED.get(cur, frozenset()):
                raise BadTransition(f"a session that is {cur} cannot become {to}")
            self._db.execute(
                "UPDATE sessions SET state = ?, updated = ? WHERE id = ? AND state = ?",
                (str(to), now, sid, str(cur)),
            )
        moved = self.get(sid)
        assert moved is not None
        return moved
