"""PostgreSQL backend: several writer processes (gateway replicas) append to one log.

Integration follows Trillian Tessera's MySQL design. Every replica batches its own appends
(the :class:`~ledger.log.Log` sequencer); each batch is one transaction that locks the
single tree-state row (``SELECT ... FOR UPDATE``), learns from it how the other replicas
grew the tree (size and frontier), appends after that, writes leaves, nodes, the newly
signed checkpoint and the new tree state, and commits with ``synchronous_commit = on``.
No leader, and no hole: a writer killed mid-batch leaves its transaction uncommitted.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg import pq

from ._pgio import (
    COPY_SQL,
    STATE_ID,
    TRANSIENT,
    Conn,
    LeafFrames,
    Readers,
    copy_rows,
    copy_transaction,
    error,
    unavailable,
)
from ._pgschema import check_schema, ensure_schema
from .errors import LedgerError, NotFound
from .merkle import leaf_hash
from .store import _UPPER_CACHE_MAX, _UPPER_MIN_ID, Commit, Frontier, _node_id
from .tiles import TILE_HEIGHT, TILE_WIDTH, Tile

__all__ = ["COPY_SQL", "PGStore", "copy_rows"]

T = TypeVar("T")


# One commit, one query string, two round trips: the lock's answer (the tree as the other
# writers left it), then the batch's rows and the COMMIT's answer after the WAL flush. The
# client's part under the lock is one wake-up: the COPY carries the leaves, the new nodes
# and a state row (id STATE_ID: new size + frontier, and the signed checkpoint) that the
# statements after it move into ledger_checkpoints and ledger_tree, deleting it again, so
# the transaction commits without waiting for the client once the COPY ends.
# Why not psycopg's cursor.copy() and pipelines (bench/ledger.py postgres, 2 writer
# processes, busy 2-core machine): with BEGIN+lock, COPY and checkpoint+tree+COMMIT as
# separate exchanges (four round trips, each a wait for the writer thread to get the GIL
# back from the event loop) the lock was held 23.7 ms per 337-append batch; as one string,
# 12-17 ms per ~460-append batch on the same machine (see bench/RESULTS.md, 2026-12-03).
# ledger_check verifies, inside the transaction, that the leaves end where the tree does
# (a division by zero aborts it otherwise): a bug can fail a commit, never commit a tree
# that disagrees with its rows.
_PREPARE_SQL = (
    b"PREPARE ledger_lock AS SELECT size, frontier FROM ledger_tree WHERE id = 0 FOR UPDATE;"
    b" PREPARE ledger_finish AS WITH s AS (DELETE FROM ledger_nodes WHERE id = %d RETURNING"
    b" ('x' || encode(substring(hash FOR 8), 'hex'))::bit(64)::bigint AS size,"
    b" substring(hash FROM 9) AS frontier, data AS note),"
    b" c AS (INSERT INTO ledger_checkpoints (size, note) SELECT size, note FROM s"
    b" ON CONFLICT (size) DO NOTHING)"
    b" UPDATE ledger_tree t SET size = s.size, frontier = s.frontier, note = s.note"
    b" FROM s WHERE t.id = 0;"
    b" PREPARE ledger_check AS SELECT 1 / (t.size = coalesce((SELECT max(id) + 1"
    b" FROM ledger_nodes WHERE id >= 0 AND id < 281474976710656), 0)"
    b" AND t.note IS NOT NULL)::int FROM ledger_tree t WHERE t.id = 0"
) % STATE_ID
# Prepared once per connection: parsing and planning the statements in every commit cost
# the server about a third of a commit's fixed 0.9 ms of CPU, all of it under the lock.
_COMMIT_SQL = (
    b"BEGIN; EXECUTE ledger_lock;"
    b" COPY ledger_nodes (id, hash, data) FROM STDIN (FORMAT BINARY);"
    b" EXECUTE ledger_finish; EXECUTE ledger_check; COMMIT"
)


def _text(res: pq.abc.PGresult, col: int = 0) -> str:
    v = res.get_value(0, col) if res.ntuples == 1 else None
    if v is None:
        raise LedgerError("the ledger's tree-state row is missing")
    return bytes(v).decode()


def _split(blob: bytes) -> list[bytes]:
    return [blob[i : i + 32] for i in range(0, len(blob), 32)]


class PGStore:
    """A LogStore on PostgreSQL, shared by any number of writer processes.

    ``conninfo`` is a libpq URL or key/value string; it is kept only to connect and never
    appears in messages. ``writer=False`` opens an existing ledger for reading without
    creating tables (NotFound if there is none). Reads use a small connection pool; commits
    a dedicated connection, reopened after an outage. Raises LedgerUnavailable when the
    server cannot be reached within ``connect_timeout`` seconds.
    """

    shared = True

    def __init__(
        self,
        conninfo: str,
        *,
        writer: bool = True,
        connect_timeout: float = 5.0,
        lock_timeout: float = 10.0,
        pool_size: int = 4,
    ) -> None:
        self._conninfo = conninfo
        self._writer = writer
        self._lock_timeout_ms = int(lock_timeout * 1000)
        self._connect_kwargs: dict[str, Any] = {
            "connect_timeout": max(2, round(connect_timeout)),
            # Bound every wait on a silent network (no RST): unacknowledged data for 10 s
            # or an idle socket whose keepalives go unanswered fails the connection.
            "tcp_user_timeout": 10_000,
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 3,
            "application_name": "telegate-ledger",
        }
        self._upper: dict[int, bytes] = {}
        self._wconn: Conn | None = None
        self._wlock = threading.Lock()
        self._pool = Readers(self._connect_reader, pool_size)
        try:
            with self._pool.connection() as conn:
                if writer:
                    ensure_schema(conn)
                else:
                    check_schema(conn)
                self._check_consistent(conn)
        except TRANSIENT as e:
            self._pool.close()
            raise unavailable("open", e) from e
        except psycopg.Error as e:
            self._pool.close()
            raise error("open", e) from e
        except BaseException:
            self._pool.close()
            raise

    def __repr__(self) -> str:
        return f"PGStore(writer={self._writer})"  # never the conninfo: it may hold a password

    def _connect_reader(self) -> Conn:
        conn = psycopg.connect(self._conninfo, autocommit=True, **self._connect_kwargs)
        conn.execute("SET statement_timeout = '30s'")
        return conn

    @staticmethod
    def _check_consistent(conn: Conn) -> None:
        # Leaves, nodes and tree state commit together, so the leaves end where the tree does.
        row = conn.execute(
            "SELECT t.size, (SELECT coalesce(max(id) + 1, 0) FROM ledger_nodes"
            " WHERE id < 281474976710656) FROM ledger_tree t WHERE t.id = 0"
        ).fetchone()
        if row is None or row[0] != row[1]:
            raise LedgerError(
                f"store holds leaves up to {row and row[1]} but its tree says {row and row[0]}"
            )

    def _read(self, what: str, fn: Callable[[Conn], T]) -> T:
        """Run ``fn`` on an idle connection; once more on a new one if the idle one died
        with a server restart (broken connections are never kept)."""
        for attempt in (0, 1):
            try:
                with self._pool.connection() as conn:
                    return fn(conn)
            except TRANSIENT as e:
                if attempt:
                    raise unavailable(what, e) from e
            except psycopg.Error as e:
                raise error(what, e) from e
        raise AssertionError("unreachable")

    # -- reads -------------------------------------------------------------------
    def size(self) -> int:
        return self._read("size", lambda c: int(_one(c, "SELECT size FROM ledger_tree")[0]))

    def checkpoint(self) -> bytes | None:
        note = self._read("checkpoint", lambda c: _one(c, "SELECT note FROM ledger_tree")[0])
        return None if note is None else bytes(note)

    def checkpoint_at(self, size: int) -> bytes | None:
        row = self._read(
            "checkpoint",
            lambda c: c.execute(
                "SELECT note FROM ledger_checkpoints WHERE size = %s", (size,)
            ).fetchone(),
        )
        return None if row is None else bytes(row[0])

    def head(self) -> tuple[Frontier, bytes | None]:
        size, blob, note = self._read(
            "head", lambda c: _one(c, "SELECT size, frontier, note FROM ledger_tree")
        )
        return Frontier(size, _split(blob)), None if note is None else bytes(note)

    def frontier(self) -> Frontier:
        return self.head()[0]

    def read_nodes(self, nodes: Sequence[tuple[int, int]]) -> list[bytes]:
        ids = [_node_id(lvl, idx) for lvl, idx in nodes]
        cache = self._upper
        found: dict[int, bytes] = {i: cache[i] for i in ids if i in cache}
        missing = [i for i in ids if i not in found]
        if missing:
            rows = self._read(
                "read nodes",
                lambda c: c.execute(
                    "SELECT id, hash FROM ledger_nodes WHERE id = ANY(%s::int8[])", (missing,)
                ).fetchall(),
            )
            for i, h in rows:
                found[i] = h
                # Nodes never change once stored; upper ones appear in nearly every proof.
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
        sql = "SELECT hash FROM ledger_nodes WHERE id >= %s AND id < %s ORDER BY id"
        rows = self._read("read tile", lambda c: c.execute(sql, (lo, lo + tile.width)).fetchall())
        if len(rows) != tile.width:
            raise NotFound("tile is beyond the tree")
        return b"".join([r[0] for r in rows])

    def read_entries(self, start: int, end: int) -> list[bytes]:
        rows = self._read(
            "read entries",
            lambda c: c.execute(
                "SELECT data FROM ledger_nodes WHERE id >= %s AND id < %s ORDER BY id",
                (start, end),
            ).fetchall(),
        )
        if len(rows) != end - start:
            raise NotFound("entries beyond the tree")
        return [bytes(r[0]) for r in rows]

    # -- the writer --------------------------------------------------------------
    def _writer_conn(self) -> Conn:
        conn = self._wconn
        if conn is None or conn.closed or conn.broken:
            self._drop_writer()
            conn = psycopg.connect(self._conninfo, autocommit=True, **self._connect_kwargs)
            # on: the commit returns only once the WAL record is flushed (and, with
            # synchronous standbys configured, replicated) - an acknowledged append is
            # durable. lock_timeout bounds the wait behind a stuck writer; the server ends
            # a session left idle inside a transaction, releasing the tree-state lock.
            # While it holds the lock this session is inside a COPY, waiting for the rows
            # (see _COMMIT_SQL), where neither that timeout nor statement_timeout acts
            # (measured on PostgreSQL 15: the lock stays held until the client sends or its
            # connection ends): the server's own keepalives end it when the writer's host
            # stops answering (a crash, a partition, a paused VM) in ~11 s, not the
            # system's default 2 hours. A writer process that is stopped (SIGSTOP) while
            # its host lives holds the lock until it resumes or dies.
            conn.execute(
                f"SET synchronous_commit = on; SET lock_timeout = {self._lock_timeout_ms};"
                " SET idle_in_transaction_session_timeout = 30000;"
                " SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2;"
                " SET tcp_keepalives_count = 3".encode()
            )
            conn.execute(_PREPARE_SQL)
            self._wconn = conn
        return conn

    def commit(
        self,
        leaves: Sequence[bytes],
        frontier: Frontier,
        sign: Callable[[int, bytes], bytes],
    ) -> Commit:
        if not self._writer:
            raise LedgerError("store is read-only")
        # Position-free, so done before taking the lock: leaf hashes and their COPY rows.
        hashes = [leaf_hash(d) for d in leaves]
        frames = LeafFrames(hashes, leaves)
        done: list[tuple[Commit, Frontier]] = []

        def feed(row: pq.abc.PGresult) -> bytes:
            # The lock is granted: everything from here to the COPY's end is time the
            # other writers wait.
            state = (int(_text(row)), bytes.fromhex(_text(row, 1)[2:]))
            c, tree, data = self._integrate(state, frames, leaves, hashes, sign)
            done.append((c, tree))
            return data

        with self._wlock:
            for attempt in (0, 1):
                done.clear()
                try:
                    conn = self._writer_conn()
                    copy_transaction(conn, _COMMIT_SQL, feed)
                    ((c, tree),) = done
                    frontier.size, frontier.nodes = tree.size, tree.nodes
                    return c
                except TRANSIENT as e:
                    self._drop_writer()
                    # Failing before the lock was granted, on a connection the server had
                    # closed (a restart), wrote nothing: one retry on a new connection.
                    locked = bool(done)
                    stale = not locked and not isinstance(e, psycopg.errors.LockNotAvailable)
                    if attempt == 0 and stale:
                        continue
                    raise unavailable("commit", e) from e
                except psycopg.Error as e:
                    self._drop_writer()
                    raise error("commit", e) from e
                except BaseException:
                    self._drop_writer()  # closing the connection rolls the transaction back
                    raise
        raise AssertionError("unreachable")

    @staticmethod
    def _integrate(
        state: tuple[int, bytes],
        frames: LeafFrames,
        leaves: Sequence[bytes],
        hashes: Sequence[bytes],
        sign: Callable[[int, bytes], bytes],
    ) -> tuple[Commit, Frontier, bytes]:
        """Inside the lock: append after the tree as stored; the COPY data of it all."""
        tree = Frontier(state[0], _split(state[1]))
        start = tree.size
        base = tree.hashes()
        new = tree.append(leaves, hashes)
        note = sign(tree.size, tree.root())
        inner = [(_node_id(lvl, idx), h) for (lvl, idx), h in new.items() if lvl]
        frontier_blob = b"".join(h for _, _, h in tree.nodes)
        data = frames.copy_data(start, inner, (tree.size, frontier_blob, note))
        return Commit(start, new, base, note), tree, data

    def _drop_writer(self) -> None:
        conn, self._wconn = self._wconn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def close(self) -> None:
        with self._wlock:
            self._drop_writer()
        self._pool.close()


def _one(conn: Conn, sql: str) -> tuple[Any, ...]:
    row = conn.execute(sql.encode()).fetchone()
    if row is None:
        raise LedgerError("the ledger's tree-state row is missing")
    return row
