"""A device's offline queue: signed batches on disk (SQLite) until the gateway has them.

The file survives restarts and power loss: every change is one transaction, fsynced
(``synchronous=FULL``, WAL). Batches leave in the order they were queued; one that the
gateway refuses for good (a 4xx other than a passing one) moves to ``rejected`` with the
problem, so that it neither blocks the others nor is lost silently.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from ..client import ClientError

__all__ = ["Item", "OfflineQueue", "QueueFull"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_id TEXT NOT NULL UNIQUE,
    jws TEXT NOT NULL,
    queued REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try REAL NOT NULL DEFAULT 0,
    last_error TEXT,
    unsigned TEXT,
    skew REAL NOT NULL DEFAULT 0,
    signings INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rejected (
    seq INTEGER PRIMARY KEY,
    batch_id TEXT NOT NULL,
    jws TEXT NOT NULL,
    status INTEGER NOT NULL,
    problem TEXT NOT NULL,
    at REAL NOT NULL
);
"""


class QueueFull(ClientError):
    """The queue holds its maximum of batches: the device must stop measuring, or drop
    data knowingly, until the gateway is reachable again."""


@dataclass(frozen=True, slots=True)
class Item:
    seq: int
    batch_id: str
    jws: str
    attempts: int
    next_try: float
    #: The payload before signing (JSON, reading times on the device's own clock) and the
    #: clock offset its signed times were corrected by: the batch can be signed again with
    #: a better offset. None for a batch queued already signed.
    unsigned: str | None = None
    skew: float = 0.0
    #: How many times it was signed (more than once: its times were corrected).
    signings: int = 1


_COLUMNS = "seq, batch_id, jws, attempts, next_try, unsigned, skew, signings"


class OfflineQueue:
    """``path`` (created 0600), at most ``max_items`` batches waiting."""

    def __init__(self, path: Path, max_items: int = 10_000) -> None:
        if not 1 <= max_items <= 10_000_000:
            raise ValueError("max_items must be 1..10000000")
        self.path = path
        self.max_items = max_items
        if not path.exists():
            # The batches are health data: the file is the device owner's alone.
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a queued batch survives power loss
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        have = {row[1] for row in self._db.execute("PRAGMA table_info(outbox)")}
        # A queue file from before clock-skew handling: its batches stay as they were signed.
        if "unsigned" not in have:
            self._db.execute("ALTER TABLE outbox ADD COLUMN unsigned TEXT")
            self._db.execute("ALTER TABLE outbox ADD COLUMN skew REAL NOT NULL DEFAULT 0")
            self._db.execute("ALTER TABLE outbox ADD COLUMN signings INTEGER NOT NULL DEFAULT 1")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def put(
        self, batch_id: str, jws: str, now: float, unsigned: str | None = None, skew: float = 0
    ) -> int:
        """Queue a signed batch (and what it was signed from, see :class:`Item`); its
        sequence number. Raises QueueFull, or ValueError for a batch id already queued."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                (n,) = self._db.execute("SELECT count(*) FROM outbox").fetchone()
                if n >= self.max_items:
                    raise QueueFull(
                        f"the offline queue holds {n} batches, its maximum: nothing more is "
                        "queued until the gateway takes some"
                    )
                cur = self._db.execute(
                    "INSERT INTO outbox (batch_id, jws, queued, unsigned, skew) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (batch_id, jws, now, unsigned, skew),
                )
                self._db.execute("COMMIT")
            except sqlite3.IntegrityError as e:
                self._db.execute("ROLLBACK")
                raise ValueError(f"batch {batch_id} is already queued") from e
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            assert cur.lastrowid is not None
            return cur.lastrowid

    def head(self) -> Item | None:
        """The oldest waiting batch (whether or not it is due)."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM outbox ORDER BY seq LIMIT 1"  # noqa: S608 - constant
            ).fetchone()
        return Item(*row) if row else None

    def pending(self) -> list[Item]:
        """Every waiting batch, oldest first."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM outbox ORDER BY seq"  # noqa: S608 - constant
            ).fetchall()
        return [Item(*row) for row in rows]

    def resigned(self, seq: int, jws: str, skew: float) -> None:
        """The batch signed again, its times corrected by ``skew``."""
        with self._lock:
            self._db.execute(
                "UPDATE outbox SET jws = ?, skew = ?, signings = signings + 1 WHERE seq = ?",
                (jws, skew, seq),
            )

    def get(self, name: str) -> str | None:
        """A value the device keeps beside its queue (its learned clock offset)."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def set(self, name: str, value: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO meta (name, value) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (name, value),
            )

    def delivered(self, seq: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))

    def retry_at(self, seq: int, when: float, error: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_try = ?, last_error = ? "
                "WHERE seq = ?",
                (when, error[:500], seq),
            )

    def reject(self, seq: int, status: int, problem: str, now: float) -> None:
        """Move a batch the gateway refused for good out of the way, with the reason."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO rejected (seq, batch_id, jws, status, problem, at) "
                    "SELECT seq, batch_id, jws, ?, ?, ? FROM outbox WHERE seq = ?",
                    (status, problem[:2000], now, seq),
                )
                self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def rejected(self) -> list[tuple[str, int, str]]:
        """(batch id, status, problem) of every batch refused for good."""
        with self._lock:
            rows = self._db.execute(
                "SELECT batch_id, status, problem FROM rejected ORDER BY seq"
            ).fetchall()
        return [(str(b), int(s), str(p)) for b, s, p in rows]
