"""What this gateway remembers of its peers, in ``<data_dir>/federation.db``.

Per peer log (by vkey): the largest checkpoint accepted from it, which every newer receipt
must extend, and the evidence once it was caught signing two histories. Per peer issuer:
the JWKS pinned on first use. Per token issued here by exchange, until it expires: the
peer's token and status list entry it was issued for, which are re-checked while it lives
(docs/federation.md). WAL with ``synchronous=FULL``: a checkpoint forgotten in a
crash would let the peer show a fork of the period it covered.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from .verify import StatusRef

__all__ = ["FederationState", "Link"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS checkpoints (
    log TEXT PRIMARY KEY,      -- the peer's log vkey
    size INTEGER NOT NULL,
    note BLOB NOT NULL          -- as accepted: log signature and cosignatures
);
CREATE TABLE IF NOT EXISTS forks (
    log TEXT PRIMARY KEY,
    seen INTEGER NOT NULL,
    a BLOB NOT NULL,            -- both signed notes, smaller tree first
    b BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS pins (
    issuer TEXT PRIMARY KEY,
    jwks TEXT NOT NULL,
    fetched INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS exchanged (
    jti TEXT PRIMARY KEY,       -- a token issued here by exchange
    sub TEXT NOT NULL,
    status_idx INTEGER NOT NULL, -- its bit in this gateway's status list
    exp INTEGER NOT NULL,
    peer TEXT NOT NULL,
    foreign_jti TEXT NOT NULL,
    status_uri TEXT NOT NULL,   -- the peer token's status list entry
    foreign_idx INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS exchanged_exp ON exchanged (exp);
"""


@dataclass(frozen=True, slots=True)
class Link:
    """A token this gateway issued by exchange, and the peer's token it was issued for: what
    a revocation at the peer is followed by while this gateway's token lives."""

    jti: str
    sub: str
    status_idx: int
    exp: int
    peer: str
    foreign_jti: str
    foreign: StatusRef


class FederationState:
    """Methods block (SQLite): call them from a thread."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout = 5000")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")
        self._db.executescript(_SCHEMA)

    def latest(self, log: str) -> bytes | None:
        """The largest checkpoint of ``log`` accepted so far."""
        with self._lock:
            row = self._db.execute("SELECT note FROM checkpoints WHERE log = ?", (log,)).fetchone()
        return None if row is None else bytes(row[0])

    def advance(self, log: str, size: int, note: bytes) -> None:
        """Keep ``note`` as the latest checkpoint of ``log`` if it is larger than the kept one."""
        with self._lock:
            self._db.execute(
                "INSERT INTO checkpoints (log, size, note) VALUES (?, ?, ?) ON CONFLICT (log)"
                " DO UPDATE SET size = excluded.size, note = excluded.note"
                " WHERE excluded.size > checkpoints.size",
                (log, size, note),
            )

    def fork(self, log: str) -> tuple[bytes, bytes] | None:
        """The evidence that ``log`` forked, if it was ever caught."""
        with self._lock:
            row = self._db.execute("SELECT a, b FROM forks WHERE log = ?", (log,)).fetchone()
        return None if row is None else (bytes(row[0]), bytes(row[1]))

    def record_fork(self, log: str, now: int, evidence: tuple[bytes, bytes]) -> None:
        """Keep the first evidence of a fork; the peer stays refused until an operator
        removes it (see docs/federation.md)."""
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO forks (log, seen, a, b) VALUES (?, ?, ?, ?)",
                (log, now, *evidence),
            )

    def pinned(self, issuer: str) -> tuple[str, int] | None:
        """The JWKS pinned for ``issuer`` and when it was fetched."""
        with self._lock:
            row = self._db.execute(
                "SELECT jwks, fetched FROM pins WHERE issuer = ?", (issuer,)
            ).fetchone()
        return None if row is None else (str(row[0]), int(row[1]))

    def pin(self, issuer: str, jwks: str, fetched: int) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO pins (issuer, jwks, fetched) VALUES (?, ?, ?)",
                (issuer, jwks, fetched),
            )

    def link(self, link: Link, expired: int) -> None:
        """Keep ``link``; forget those whose tokens expired before ``expired``."""
        row = (link.jti, link.sub, link.status_idx, link.exp, link.peer, link.foreign_jti)
        with self._lock:
            self._db.execute("DELETE FROM exchanged WHERE exp < ?", (expired,))
            self._db.execute(
                "INSERT OR REPLACE INTO exchanged VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (*row, link.foreign.uri, link.foreign.idx),
            )

    def links(self, expired: int) -> list[Link]:
        """The links whose tokens expire at ``expired`` or later."""
        with self._lock:
            rows = self._db.execute(
                "SELECT jti, sub, status_idx, exp, peer, foreign_jti, status_uri, foreign_idx"
                " FROM exchanged WHERE exp >= ?",
                (expired,),
            ).fetchall()
        return [
            Link(r[0], r[1], int(r[2]), int(r[3]), r[4], r[5], StatusRef(r[6], int(r[7])))
            for r in rows
        ]

    def close(self) -> None:
        with self._lock:
            self._db.close()
