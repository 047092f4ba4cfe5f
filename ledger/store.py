"""Log storage: the interface every backend implements, and the embedded SQLite backend.

Each commit is one transaction holding the new leaves, every complete subtree hash they
create (all levels, so proofs and tiles are lookups, never a rehash), and the checkpoint
signed over the new root. A crash therefore leaves either the whole batch or none of it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .errors import LedgerError, LedgerUnavailable, NotFound, StoreLocked
from .merkle import EMPTY_ROOT, fold_right, leaf_hash, node_hash, subtree_nodes
from .tiles import TILE_HEIGHT, TILE_WIDTH, Tile

__all__ = ["Commit", "Frontier", "LogStore", "SQLiteStore", "sqlite_transient"]

_LEVEL_SHIFT = 48  # node id = level << 48 | index: 2**48 leaves is beyond any real log.


# Cache nodes of level 8 and up (each covers 256+ leaves): 1/256 of the tree at most.
_UPPER_MIN_ID = 8 << _LEVEL_SHIFT
_LEVEL1_MIN_ID = 1 << _LEVEL_SHIFT
_UPPER_CACHE_MAX = 1 << 18


def _node_id(level: int, index: int) -> int:
    return (level << _LEVEL_SHIFT) | index


# SQLite's primary result codes for a commit that may succeed if simply tried again: the
# file system is full (SQLITE_FULL), another process holds the database's lock past the
# busy timeout (SQLITE_BUSY, SQLITE_LOCKED), or a write or fsync failed (SQLITE_IOERR).
# SQLite rolls the transaction back on each (https://sqlite.org/rescode.html), and a WAL
# frame without a valid commit frame after it is never read back (https://sqlite.org/
# fileformat2.html#the_write_ahead_log), so nothing of the batch is acknowledged or kept.
_TRANSIENT = frozenset(
    {sqlite3.SQLITE_FULL, sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_IOERR}
)


def sqlite_transient(e: BaseException) -> bool:
    """True when ``e`` is a SQLite error that a later retry of the same commit may not meet
    (disk full, database locked by another process, an I/O or fsync error)."""
    code = getattr(e, "sqlite_errorcode", None)
    return (
        isinstance(e, sqlite3.OperationalError) and code is not None and code & 0xFF in _TRANSIENT
    )


class Frontier:
    """The maximal complete subtrees of the tree: enough to append and compute roots."""

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        self.size = size
        self.nodes: list[tuple[int, int, bytes]] = [
            (lvl, idx, h) for (lvl, idx), h in zip(subtree_nodes(0, size), hashes, strict=True)
        ]

    def append(
        self, leaves: Sequence[bytes], hashes: Sequence[bytes] | None = None
    ) -> dict[tuple[int, int], bytes]:
        """Append leaf data; return every newly complete node ``(level, index) -> hash``.

        ``hashes`` are the leaves' hashes when the caller has them already (a leaf hash does
        not depend on the leaf's position, so a shared store hashes before taking its lock).
        """
        new: dict[tuple[int, int], bytes] = {}
        nodes = self.nodes
        index = self.size
        if hashes is None:
            hashes = [leaf_hash(d) for d in leaves]
        for h in hashes:
            level, idx = 0, index
            new[(0, idx)] = h
            while nodes and nodes[-1][0] == level:
                h = node_hash(nodes.pop()[2], h)
                level += 1
                idx >>= 1
                new[(level, idx)] = h
            nodes.append((level, idx, h))
            index += 1
        self.size = index
        return new

    def root(self) -> bytes:
        return fold_right([h for _, _, h in self.nodes]) if self.nodes else EMPTY_ROOT

    def hashes(self) -> dict[tuple[int, int], bytes]:
        return {(lvl, idx): h for lvl, idx, h in self.nodes}


@dataclass(frozen=True, slots=True)
class Commit:
    """What one durable commit appended: leaves from ``start``, every node the batch
    completed (``nodes``), the frontier of the tree it grew (``base``: with ``nodes``, all an
    inclusion proof of a new leaf needs) and the checkpoint signed over the new tree."""

    start: int
    nodes: dict[tuple[int, int], bytes]
    base: dict[tuple[int, int], bytes]
    note: bytes


class LogStore(Protocol):
    """What the sequencer and the read API need from a backend.

    ``shared`` is True when other processes may append to the same log: the sequencer then
    learns the tree from each commit (which reads it under the store's lock) and refreshes
    its view of size and checkpoint when idle.
    """

    shared: bool

    def size(self) -> int: ...

    def head(self) -> tuple[Frontier, bytes | None]:
        """The tree's frontier and its newest checkpoint, read together."""

    def checkpoint(self) -> bytes | None:
        """The newest signed checkpoint, or None for a log never signed."""

    def read_nodes(self, nodes: Sequence[tuple[int, int]]) -> list[bytes]: ...

    def read_tile(self, tile: Tile) -> bytes: ...

    def read_entries(self, start: int, end: int) -> list[bytes]: ...

    def commit(
        self,
        leaves: Sequence[bytes],
        frontier: Frontier,
        sign: Callable[[int, bytes], bytes],
    ) -> Commit:
        """Durably append ``leaves`` and the checkpoint ``sign(size, root)`` returns.

        ``frontier`` is the caller's view of the tree, advanced in place; a shared store
        first replaces it with the tree as the other writers left it. Raises
        LedgerUnavailable when the backend cannot be reached (nothing acknowledged; the
        batch may or may not have been written if the connection broke during COMMIT).
        """

    def frontier(self) -> Frontier: ...

    def close(self) -> None: ...


class SQLiteStore:
    """Embedded backend: WAL, ``synchronous=FULL``, one writer process per file.

    Open with ``writer=True`` to append (takes an exclusive ``flock`` on ``<path>.lock``,
    raising StoreLocked if another process holds it); readers need no lock.
    """

    shared = False

    def __init__(self, path: str | os.PathLike[str], *, writer: bool = True) -> None:
        self.path = Path(path)
        self._lock_fd: int | None = None
        if writer:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as e:
                os.close(self._lock_fd)
                self._lock_fd = None
                raise StoreLocked(f"another process is writing {self.path}") from e
        elif not self.path.exists():
            raise NotFound(f"no log at {self.path}")
        self._local = threading.local()
        self._upper: dict[int, bytes] = {}
        self._writer = writer
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        if writer:
            db = self._db()
            db.executescript(
                """
                -- Leaf hashes live beside their leaves (one row per append, hash first so
                -- reading it never touches the data); nodes holds levels 1 and up.
                CREATE TABLE IF NOT EXISTS leaves (
                    idx INTEGER PRIMARY KEY, hash BLOB NOT NULL, data BLOB NOT NULL);
                CREATE TABLE IF NOT EXISTS nodes (id INTEGER PRIMARY KEY, hash BLOB NOT NULL);
                CREATE TABLE IF NOT EXISTS checkpoints (
                    size INTEGER PRIMARY KEY, note BLOB NOT NULL);
                """
            )
            self._check_consistent()

    def _db(self) -> sqlite3.Connection:
        # One connection per thread: the writer thread commits, readers read concurrently
        # from WAL snapshots.
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            if self._writer:
                db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            else:
                uri = f"file:{self.path}?mode=ro"
                db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA busy_timeout = 5000")
            if self._writer:
                db.execute("PRAGMA journal_mode = WAL")
                db.execute("PRAGMA synchronous = FULL")
            self._local.db = db
            with self._conns_lock:
                self._conns.append(db)
        return db

    def _check_consistent(self) -> None:
        # Leaves, nodes and checkpoint are written in one transaction, so after any crash
        # the leaf count must equal the newest checkpoint's size.
        size = self.size()
        (count,) = self._db().execute("SELECT count(*) FROM leaves").fetchone()
        if count != size:
            raise LedgerError(f"store holds {count} leaves but its checkpoint says {size}")

    def size(self) -> int:
        row = self._db().execute("SELECT max(size) FROM checkpoints").fetchone()
        return int(row[0] or 0)

    def checkpoint(self) -> bytes | None:
        row = (
            self._db().execute("SELECT note FROM checkpoints ORDER BY size DESC LIMIT 1").fetchone()
        )
        return None if row is None else bytes(row[0])

    def checkpoint_at(self, size: int) -> bytes | None:
        row = self._db().execute("SELECT note FROM checkpoints WHERE size = ?", (size,)).fetchone()
        return None if row is None else bytes(row[0])

    def read_nodes(self, nodes: Sequence[tuple[int, int]]) -> list[bytes]:
        ids = [_node_id(lvl, idx) for lvl, idx in nodes]
        cache = self._upper
        found: dict[int, bytes] = {i: cache[i] for i in ids if i in cache}
        leaves = [i for i in ids if i < _LEVEL1_MIN_ID and i not in found]
        inner = [i for i in ids if i >= _LEVEL1_MIN_ID and i not in found]
        db = self._db()
        for table, key, missing in (("leaves", "idx", leaves), ("nodes", "id", inner)):
            for k in range(0, len(missing), 500):
                chunk = missing[k : k + 500]
                marks = ",".join("?" * len(chunk))
                sql = f"SELECT {key}, hash FROM {table} WHERE {key} IN ({marks})"  # noqa: S608
                for i, h in db.execute(sql, chunk):
                    found[i] = h
                    # Nodes never change once stored, and upper ones appear in nearly every
                    # proof: keep those (bounded) in memory.
                    if i >= _UPPER_MIN_ID and len(cache) < _UPPER_CACHE_MAX:
                        cache[i] = h
        try:
            return [found[i] for i in ids]
        except KeyError as e:
            raise NotFound("node is not in the tree") from e

    def read_tile(self, tile: Tile) -> bytes:
        if tile.level is None:
            raise NotFound("not a hash tile")
        lo = _node_id(tile.level * TILE_HEIGHT, tile.index * TILE_WIDTH)
        sql = "SELECT hash FROM nodes WHERE id >= ? AND id < ? ORDER BY id"
        if tile.level == 0:
            sql = "SELECT hash FROM leaves WHERE idx >= ? AND idx < ? ORDER BY idx"
        rows = self._db().execute(sql, (lo, lo + tile.width)).fetchall()
        if len(rows) != tile.width:
            raise NotFound("tile is beyond the tree")
        return b"".join([r[0] for r in rows])

    def read_entries(self, start: int, end: int) -> list[bytes]:
        rows = (
            self._db()
            .execute(
                "SELECT data FROM leaves WHERE idx >= ? AND idx < ? ORDER BY idx", (start, end)
            )
            .fetchall()
        )
        if len(rows) != end - start:
            raise NotFound("entries beyond the tree")
        return [bytes(r[0]) for r in rows]

    def frontier(self) -> Frontier:
        size = self.size()
        nodes = subtree_nodes(0, size)
        return Frontier(size, self.read_nodes(nodes) if nodes else [])

    def head(self) -> tuple[Frontier, bytes | None]:
        # One writer, and it is the caller: nothing moves between the two reads.
        return self.frontier(), self.checkpoint()

    def commit(
        self,
        leaves: Sequence[bytes],
        frontier: Frontier,
        sign: Callable[[int, bytes], bytes],
    ) -> Commit:
        if self._lock_fd is None:
            raise LedgerError("store is read-only")
        start = frontier.size
        saved = (frontier.size, list(frontier.nodes))
        base = frontier.hashes()
        new = frontier.append(leaves)
        note = sign(frontier.size, frontier.root())
        db = self._db()
        try:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "INSERT INTO leaves (idx, hash, data) VALUES (?, ?, ?)",
                [(i, new[(0, i)], d) for i, d in enumerate(leaves, start)],
            )
            db.executemany(
                "INSERT INTO nodes (id, hash) VALUES (?, ?)",
                [(_node_id(lvl, idx), h) for (lvl, idx), h in new.items() if lvl],
            )
            db.execute(
                "INSERT OR REPLACE INTO checkpoints (size, note) VALUES (?, ?)",
                (frontier.size, note),
            )
            db.execute("COMMIT")
        except BaseException as e:
            frontier.size, frontier.nodes = saved
            # An OSError is I/O that failed under the commit (an fsync, a write) as Python
            # code in the commit path meets it: transient like SQLite's own SQLITE_IOERR.
            if not (sqlite_transient(e) or isinstance(e, OSError)):
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            # The writer goes on (ledger.log treats LedgerUnavailable as one failed batch):
            # appends resume by themselves once space returns or the lock is released. The
            # connection is dropped, so the next commit starts on a fresh one whatever state
            # a failed write or fsync left this one in.
            self._drop(db)
            raise LedgerUnavailable(f"the log's database takes no commit now: {e}") from e
        return Commit(start, new, base, note)

    def _drop(self, db: sqlite3.Connection) -> None:
        """Roll back (if SQLite has not already) and close this thread's connection."""
        with contextlib.suppress(sqlite3.Error):
            if db.in_transaction:
                db.execute("ROLLBACK")
        with contextlib.suppress(sqlite3.Error):
            db.close()
        with self._conns_lock:
            if db in self._conns:
                self._conns.remove(db)
        self._local.db = None

    def probe(self) -> None:
        """Raise LedgerUnavailable unless the log's file system takes a synced write now (a
        disk that was full has room again): 64 KiB written, fsynced and removed beside the
        log. The writer calls it while idle after a failed commit, so readiness returns when
        the fault ends rather than only after an append succeeds."""
        probe = self.path.with_name(self.path.name + ".probe")
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, bytes(1 << 16))
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            raise LedgerUnavailable(f"the log's file system takes no writes: {e.strerror}") from e
        finally:
            with contextlib.suppress(OSError):
                os.unlink(probe)

    def close(self) -> None:
        with self._conns_lock:
            for db in self._conns:
                db.close()
            self._conns.clear()
        self._local = threading.local()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
