"""An off-ledger index of ledger events, so auditors can filter without scanning the log.

The index is derived data: it follows the ledger (``catch_up`` indexes every entry up to the
current size before any query), can be rebuilt from it at any time (``telegate ledger
reindex``), and records the tree size and root it covers so a stale or foreign index is
detected. Query answers are always read back from the ledger itself and re-checked against
the filter, so a corrupted index can drop rows from an answer only in ways ``reindex``
reports, never put a wrong event into it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import fcntl
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ledger.atomic import replace_durably
from ledger.merkle import tree_hash
from ledger.store import LogStore

from ..errors import GatewayError

__all__ = ["EventIndex", "Filters", "IndexBusy", "IndexMismatch", "rebuild_index"]

_CHUNK = 1024
T = TypeVar("T")
_FIELDS = ("type", "actor", "subject", "session")


class IndexMismatch(Exception):
    """The index does not describe this ledger (another log, or the log was rolled back)."""


class IndexBusy(GatewayError):
    """A gateway has the index open (a rebuild needs it alone), or a rebuild runs."""


def _hold(path: Path, exclusive: bool) -> int:
    """``flock`` ``<path>.lock``: shared by every gateway process with the index open (two
    replicas may share a data dir), exclusive for a rebuild. Returns the fd to close.
    Raises IndexBusy instead of waiting. The ledger's writer lock cannot say "stopped" on
    PostgreSQL, where every replica writes; this lock says it on both backends."""
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError as e:
        os.close(fd)
        held = "the gateway is running" if exclusive else "the audit index is being rebuilt"
        raise IndexBusy(f"{held} ({path})") from e
    return fd


def epoch_ms(stamp: str) -> int:
    """Milliseconds since the epoch of an RFC 3339 time (``Z`` or an offset)."""
    t = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    if t.tzinfo is None:
        raise ValueError("time needs a zone")
    return int(t.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class Filters:
    type: str | None = None
    actor: str | None = None
    subject: str | None = None
    session: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None

    def matches(self, event: dict[str, Any]) -> bool:
        """The same filter, applied to an event read back from the ledger."""
        for f in _FIELDS:
            want = getattr(self, f)
            if want is not None and event.get(f) != want:
                return False
        try:
            t = epoch_ms(str(event.get("time", "")))
        except ValueError:
            return self.since_ms is None and self.until_ms is None
        if self.since_ms is not None and t < self.since_ms:
            return False
        return not (self.until_ms is not None and t >= self.until_ms)

    def describe(self) -> dict[str, Any]:
        """The filters that are set, for the audit.query event."""
        names = (*_FIELDS, "since_ms", "until_ms")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}


def _row(index: int, raw: bytes) -> tuple[Any, ...]:
    try:
        ev = json.loads(raw)
        t = epoch_ms(ev["time"])
        return (index, ev.get("type"), ev.get("actor"), ev.get("subject"), ev.get("session"), t)
    except (ValueError, KeyError, TypeError):
        return (index, None, None, None, None, None)  # not an event we know: indexed, unfiltered


class EventIndex:
    """SQLite index at ``path``, one per data dir (docs/database.md). Blocking: call from a
    thread. Holds the index's shared lock while open (``locked=False``: the caller holds
    the exclusive one); raises IndexBusy while a rebuild runs."""

    def __init__(self, path: Path, *, locked: bool = True) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock_fd = _hold(path, exclusive=False) if locked else None
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode = WAL")
        # Derived data: rebuilt from the ledger if lost, so no fsync per batch.
        db.execute("PRAGMA synchronous = NORMAL")
        db.executescript(
            """
            CREATE TABLE IF NOT EXISTS events (
                idx INTEGER PRIMARY KEY, type TEXT, actor TEXT, subject TEXT, session TEXT,
                time_ms INTEGER);
            CREATE INDEX IF NOT EXISTS events_type ON events (type, idx);
            CREATE INDEX IF NOT EXISTS events_actor ON events (actor, idx);
            CREATE INDEX IF NOT EXISTS events_subject ON events (subject, idx);
            CREATE INDEX IF NOT EXISTS events_session ON events (session, idx);
            CREATE INDEX IF NOT EXISTS events_time ON events (time_ms, idx);
            CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v);
            """
        )
        self._db = db
        self._lock = threading.Lock()
        # All index work runs on this one thread: a long catch-up (minutes for millions of
        # entries) then queues audit requests behind it instead of parking the event loop's
        # shared default executor threads, which token issuance and enrollment also need.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-index")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run an index method on the index's own thread."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def close(self) -> None:
        self.executor.shutdown(wait=True)
        self._db.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def size(self) -> int:
        row = self._db.execute("SELECT v FROM meta WHERE k = 'size'").fetchone()
        return int(row[0]) if row else 0

    def catch_up(
        self, store: LogStore, size: int, progress: Callable[[int, int], None] | None = None
    ) -> int:
        """Index entries up to ``size``. First checks that the part already indexed is a
        prefix of this ledger (same root at the indexed size). Returns entries added."""
        with self._lock:
            have = self.size()
            # Another gateway sharing this data dir (and index) may have indexed more of a
            # shared log than the caller's view holds: fine while the log is that long.
            if have > size and have > store.size():
                raise IndexMismatch(f"the index covers {have} entries; the ledger has {size}")
            row = self._db.execute("SELECT v FROM meta WHERE k = 'root'").fetchone()
            if have and (row is None or bytes(row[0]) != tree_hash(have, store.read_nodes)):
                raise IndexMismatch("the index was built from another ledger; reindex")
            for lo in range(have, size, _CHUNK):
                hi = min(size, lo + _CHUNK)
                rows = [_row(i, e) for i, e in enumerate(store.read_entries(lo, hi), lo)]
                self._db.execute("BEGIN")
                self._db.executemany("INSERT OR REPLACE INTO events VALUES (?,?,?,?,?,?)", rows)
                self._db.execute("INSERT OR REPLACE INTO meta VALUES ('size', ?)", (hi,))
                self._db.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('root', ?)",
                    (tree_hash(hi, store.read_nodes),),
                )
                self._db.execute("COMMIT")
                if progress is not None:
                    progress(hi, size)
            return max(0, size - have)

    def query(self, f: Filters, after: int, below: int, limit: int) -> list[int]:
        """Indexes of matching entries in ``(after, below)``, ascending, at most ``limit``."""
        where = ["idx > ?", "idx < ?"]
        args: list[Any] = [after, below]
        for field in _FIELDS:
            value = getattr(f, field)
            if value is not None:
                where.append(f"{field} = ?")
                args.append(value)
        if f.since_ms is not None:
            where.append("time_ms >= ?")
            args.append(f.since_ms)
        if f.until_ms is not None:
            where.append("time_ms < ?")
            args.append(f.until_ms)
        sql = f"SELECT idx FROM events WHERE {' AND '.join(where)} ORDER BY idx LIMIT ?"  # noqa: S608
        args.append(limit)
        with self._lock:
            return [int(r[0]) for r in self._db.execute(sql, args)]

    def rows(self, lo: int, hi: int) -> Iterable[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(
                "SELECT * FROM events WHERE idx >= ? AND idx < ? ORDER BY idx", (lo, hi)
            ).fetchall()


def rebuild_index(
    store: LogStore, path: Path, progress: Callable[[int, int], None] | None = None
) -> tuple[int, list[int]]:
    """Rebuild the index at ``path`` from the ledger and compare it with the old one.

    Returns the ledger size and the entry indexes, within the part the old index covered,
    whose old rows were missing or different (each one an event it could have hidden from
    a query). Raises IndexBusy while a gateway has the index open.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = _hold(path, exclusive=True)  # raises IndexBusy while a gateway has it open
    try:
        size = store.size()
        fresh_path = path.with_name(path.name + ".rebuild")
        for p in (fresh_path, Path(f"{fresh_path}-wal"), Path(f"{fresh_path}-shm")):
            p.unlink(missing_ok=True)
        fresh = EventIndex(fresh_path, locked=False)
        fresh.catch_up(store, size, progress)
        differing: list[int] = []
        if path.exists():
            old = EventIndex(path, locked=False)
            try:
                # Entries past the old index's size were not indexed yet, not hidden: a
                # gateway indexes them (from that size on) before its next answer.
                covered = min(size, old.size())
                for lo in range(0, covered, _CHUNK):
                    hi = min(covered, lo + _CHUNK)
                    want = {r[0]: tuple(r) for r in fresh.rows(lo, hi)}
                    got = {r[0]: tuple(r) for r in old.rows(lo, hi)}
                    differing += [i for i in range(lo, hi) if want.get(i) != got.get(i)]
            finally:
                old.close()
        fresh.close()
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        replace_durably(fresh_path, path)
    finally:
        os.close(lock)
    return size, differing
