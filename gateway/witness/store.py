"""The witness's durable state: per log, the latest cosigned size, root, time and note.

SQLite in WAL mode with ``synchronous=FULL``: tlog-witness requires the new checkpoint to be
persisted before the cosignature is returned, so a commit must survive power loss. Updates
are a compare-and-swap on the (size, root) the caller checked against, inside one
``BEGIN IMMEDIATE`` transaction, so neither two requests nor two processes sharing the file
can both advance from the same state.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

from ledger.witness import LogState, StaleOldSize

__all__ = ["WitnessStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS logs (
    origin TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    root BLOB NOT NULL,
    timestamp INTEGER NOT NULL,
    note BLOB NOT NULL
);
-- tlog-witness lets a witness keep requests that fail a consistency check as possible
-- proof of misbehaviour. Only forks are kept: two log-signed roots for one size prove it,
-- where a bad proof alone proves nothing (anyone can send garbage with a valid checkpoint).
CREATE TABLE IF NOT EXISTS forks (
    origin TEXT NOT NULL,
    size INTEGER NOT NULL,
    root BLOB NOT NULL,
    seen INTEGER NOT NULL,
    note BLOB NOT NULL,
    PRIMARY KEY (origin, size, root)
);
"""


class WitnessStore:
    """One SQLite file. Methods block: call them from a thread, not the event loop."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout = 5000")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")
        self._db.executescript(_SCHEMA)

    def latest(self, origin: str) -> LogState:
        """The latest cosigned state of ``origin``; ``LogState()`` if never cosigned."""
        with self._lock:
            return self._read(origin)

    def _read(self, origin: str) -> LogState:
        row = self._db.execute(
            "SELECT size, root, timestamp FROM logs WHERE origin = ?", (origin,)
        ).fetchone()
        return LogState() if row is None else LogState(int(row[0]), bytes(row[1]), int(row[2]))

    def checkpoint(self, origin: str) -> bytes | None:
        """The latest cosigned checkpoint with the log's and the witness's signatures."""
        with self._lock:
            row = self._db.execute("SELECT note FROM logs WHERE origin = ?", (origin,)).fetchone()
        return None if row is None else bytes(row[0])

    def advance(self, origin: str, expected: LogState, new: LogState, note: bytes) -> None:
        """Store ``new`` if the stored state still has ``expected``'s size and root.

        Raises StaleOldSize (409) with the stored size if another request got there first.
        The timestamp kept is the larger of the two, so it never goes backwards.
        """
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._read(origin)
                if (cur.size, cur.root) != (expected.size, expected.root):
                    raise StaleOldSize(cur.size)
                db.execute(
                    "INSERT INTO logs (origin, size, root, timestamp, note) VALUES (?,?,?,?,?)"
                    " ON CONFLICT (origin) DO UPDATE SET size = excluded.size,"
                    " root = excluded.root, timestamp = max(timestamp, excluded.timestamp),"
                    " note = excluded.note",
                    (origin, new.size, new.root, new.timestamp, note),
                )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    def record_fork(self, origin: str, size: int, root: bytes, seen: int, note: bytes) -> None:
        """Keep a refused checkpoint that forks the log (the first sighting of each root)."""
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO forks (origin, size, root, seen, note) VALUES (?,?,?,?,?)",
                (origin, size, root, seen, note),
            )

    def forks(self, origin: str) -> list[bytes]:
        """Signed checkpoints of ``origin`` refused as forks, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT note FROM forks WHERE origin = ? ORDER BY seen, size", (origin,)
            ).fetchall()
        return [bytes(r[0]) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
