"""Consents and emergency accesses in SQLite (``<data_dir>/consent.db``).

Grants and revocations are written with ``synchronous=FULL``: a revocation must hold after
a crash. Emergency reasons are free text (possibly PHI) and stay here; the ledger gets a
salted commitment to them.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

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


class ConsentStore:
    """Blocking: call from a thread."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        db.execute("PRAGMA busy_timeout = 5000")
        db.executescript(
            """
            CREATE TABLE IF NOT EXISTS consents (
                id TEXT PRIMARY KEY, patient TEXT NOT NULL, grantee TEXT NOT NULL,
                scopes TEXT NOT NULL, created INTEGER NOT NULL, until INTEGER NOT NULL,
                revoked INTEGER);
            CREATE INDEX IF NOT EXISTS consents_patient ON consents (patient);
            CREATE INDEX IF NOT EXISTS consents_grantee ON consents (grantee);
            CREATE TABLE IF NOT EXISTS emergencies (
                id TEXT PRIMARY KEY, provider TEXT NOT NULL, patient TEXT NOT NULL,
                reason TEXT NOT NULL, created INTEGER NOT NULL, until INTEGER NOT NULL);
            CREATE INDEX IF NOT EXISTS emergencies_pair ON emergencies (provider, patient);
            """
        )
        self._db = db
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @staticmethod
    def _consent(row: tuple[object, ...]) -> Consent:
        return Consent(
            str(row[0]),
            str(row[1]),
            str(row[2]),
            tuple(json.loads(str(row[3]))),
            int(str(row[4])),
            int(str(row[5])),
            None if row[6] is None else int(str(row[6])),
        )

    def add(self, c: Consent) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO consents VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    c.id,
                    c.patient,
                    c.grantee,
                    json.dumps(list(c.scopes)),
                    c.created,
                    c.until,
                    c.revoked,
                ),
            )

    def get(self, cid: str) -> Consent | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM consents WHERE id = ?", (cid,)).fetchone()
        return None if row is None else self._consent(row)

    def revoke(self, cid: str, now: int) -> bool:
        with self._lock:
            cur = self._db.execute(
                "UPDATE consents SET revoked = ? WHERE id = ? AND revoked IS NULL", (now, cid)
            )
        return cur.rowcount == 1

    def of_patient(self, patient: str) -> list[Consent]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM consents WHERE patient = ? ORDER BY created", (patient,)
            ).fetchall()
        return [self._consent(r) for r in rows]

    def naming(self, grantees: tuple[str, ...]) -> list[Consent]:
        marks = ",".join("?" * len(grantees))
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM consents WHERE grantee IN ({marks}) ORDER BY created",  # noqa: S608
                grantees,
            ).fetchall()
        return [self._consent(r) for r in rows]

    def matching(self, patient: str, grantees: tuple[str, ...]) -> list[Consent]:
        marks = ",".join("?" * len(grantees))
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM consents WHERE patient = ? AND grantee IN ({marks})",  # noqa: S608
                (patient, *grantees),
            ).fetchall()
        return [self._consent(r) for r in rows]

    def add_emergency(self, e: Emergency, reason: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO emergencies VALUES (?, ?, ?, ?, ?, ?)",
                (e.id, e.provider, e.patient, reason, e.created, e.until),
            )

    def emergency(self, provider: str, patient: str, now: int) -> Emergency | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, provider, patient, created, until FROM emergencies "
                "WHERE provider = ? AND patient = ? AND created <= ? AND until > ? "
                "ORDER BY until DESC LIMIT 1",
                (provider, patient, now, now),
            ).fetchone()
        return None if row is None else Emergency(row[0], row[1], row[2], row[3], row[4])
