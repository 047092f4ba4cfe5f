"""Cosignatures the log has collected from its witnesses, kept durably beside the log.

One small SQLite file (``cosignatures.db`` next to ``ledger.db``), apart from the log so
that storing a cosignature never waits on, or delays, a group commit. Per checkpoint size:
the log-signed note that was submitted and each witness's tlog-cosignature line; per
witness: the largest size it has cosigned, where the next submission starts from. WAL with
``synchronous=FULL``: a witness will not cosign that checkpoint again (it has moved on), so
a line, once answered, must survive a crash.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from .cosigning import with_cosignatures

__all__ = ["CosignatureStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS checkpoints (size INTEGER PRIMARY KEY, note BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS cosignatures (
    size INTEGER NOT NULL,
    witness TEXT NOT NULL,   -- the witness's vkey: a new key is a new witness
    timestamp INTEGER NOT NULL,
    line BLOB NOT NULL,
    PRIMARY KEY (size, witness)
);
CREATE TABLE IF NOT EXISTS witnesses (witness TEXT PRIMARY KEY, size INTEGER NOT NULL);
"""


class CosignatureStore:
    """Methods block (SQLite): call them from a thread, not the event loop."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout = 5000")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")
        self._db.executescript(_SCHEMA)

    def add(self, witness: str, size: int, note: bytes, line: bytes, timestamp: int) -> None:
        """Keep ``witness``'s verified cosignature ``line`` on the log-signed ``note`` of
        ``size``, and that the witness has now cosigned ``size``. One transaction."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(
                    "INSERT OR IGNORE INTO checkpoints (size, note) VALUES (?, ?)", (size, note)
                )
                db.execute(
                    "INSERT OR REPLACE INTO cosignatures (size, witness, timestamp, line)"
                    " VALUES (?, ?, ?, ?)",
                    (size, witness, timestamp, line),
                )
                db.execute(
                    "INSERT INTO witnesses (witness, size) VALUES (?, ?) ON CONFLICT (witness)"
                    " DO UPDATE SET size = max(size, excluded.size)",
                    (witness, size),
                )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    def witnessed_size(self, witness: str) -> int:
        """The largest size ``witness`` has cosigned for this log; 0 if none."""
        with self._lock:
            row = self._db.execute(
                "SELECT size FROM witnesses WHERE witness = ?", (witness,)
            ).fetchone()
        return 0 if row is None else int(row[0])

    def newest(self, witnesses: Sequence[str], quorum: int) -> tuple[int, bytes] | None:
        """The largest size cosigned by at least ``quorum`` (>= 1) of ``witnesses``, and its
        note with every collected line of those witnesses appended; None if there is none."""
        if quorum < 1 or not witnesses:
            raise ValueError("a quorum of at least one configured witness is needed")
        marks = ",".join("?" * len(witnesses))
        with self._lock:
            row = self._db.execute(
                f"SELECT size FROM cosignatures WHERE witness IN ({marks})"  # noqa: S608
                " GROUP BY size HAVING count(*) >= ? ORDER BY size DESC LIMIT 1",
                (*witnesses, quorum),
            ).fetchone()
            if row is None:
                return None
            size = int(row[0])
            (note,) = self._db.execute(
                "SELECT note FROM checkpoints WHERE size = ?", (size,)
            ).fetchone()
            lines = self._db.execute(
                f"SELECT line FROM cosignatures WHERE size = ? AND witness IN ({marks})"  # noqa: S608
                " ORDER BY witness",
                (size, *witnesses),
            ).fetchall()
        return size, with_cosignatures(bytes(note), [bytes(r[0]) for r in lines])

    def prune(self, below: int) -> None:
        """Forget checkpoints and lines of sizes below ``below`` (older than the one served:
        a receipt is proved against the newest witnessed checkpoint only)."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("DELETE FROM cosignatures WHERE size < ?", (below,))
                db.execute("DELETE FROM checkpoints WHERE size < ?", (below,))
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            self._db.close()
