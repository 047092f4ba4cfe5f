"""PostgreSQL plumbing for :mod:`ledger.pgstore`: error mapping, idle reader connections,
and the ``COPY ... (FORMAT BINARY)`` framing of a batch's rows."""

from __future__ import annotations

import contextlib
import queue
import struct
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psycopg

from .errors import LedgerError, LedgerUnavailable

__all__ = ["COPY_SQL", "TRANSIENT", "Conn", "Readers", "copy_rows", "error", "unavailable"]

Conn = psycopg.Connection[tuple[Any, ...]]
# Errors that say "the server cannot be used now" (refused, reset, shut down, timed out):
# worth retrying later, never a sign of a bad log.
TRANSIENT = (psycopg.OperationalError, psycopg.InterfaceError)


# COPY ... (FORMAT BINARY) framing, written by hand: psycopg's write_row dumps each value
# through its adapters, which was most of the time the tree-state lock was held.
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_COPY_TRAILER = struct.pack(">h", -1)
COPY_SQL = "COPY ledger_nodes (id, hash, data) FROM STDIN (FORMAT BINARY)"
_ROW = struct.Struct(">hiqi32si")  # 3 fields: id int8, hash bytea(32), data length (-1: NULL)


def copy_rows(
    start: int, hashes: Sequence[bytes], leaves: Sequence[bytes], nodes: Sequence[tuple[int, bytes]]
) -> bytes:
    """``COPY ledger_nodes (id, hash, data)`` binary data: the leaves from index ``start``,
    then the inner ``(id, hash)`` nodes."""
    pack = _ROW.pack
    parts = [_COPY_HEADER]
    for i, (h, d) in enumerate(zip(hashes, leaves, strict=True), start):
        parts += (pack(3, 8, i, 32, h, len(d)), d)
    parts += [pack(3, 8, i, 32, h, -1) for i, h in nodes]
    parts.append(_COPY_TRAILER)
    return b"".join(parts)


# Messages name the error class only: a driver message may carry host and user names, and
# these errors reach HTTP problem details.
def unavailable(what: str, e: BaseException) -> LedgerUnavailable:
    return LedgerUnavailable(f"PostgreSQL unavailable ({what}: {type(e).__name__})")


def error(what: str, e: BaseException) -> LedgerError:
    return LedgerError(f"PostgreSQL error ({what}: {type(e).__name__})")


class Readers:
    """Idle reader connections, at most ``size`` kept; a new one is opened on demand.

    Not psycopg_pool: its reconnection backs off for up to minutes after an outage, and
    this store must read again as soon as the server is back. Here each read that finds no
    healthy idle connection connects at once (bounded by connect_timeout).
    """

    def __init__(self, connect: Callable[[], Conn], size: int) -> None:
        self._connect = connect
        self._idle: queue.LifoQueue[Conn] = queue.LifoQueue(size)
        self._closed = False

    @contextlib.contextmanager
    def connection(self) -> Iterator[Conn]:
        try:
            conn = self._idle.get_nowait()
        except queue.Empty:
            conn = self._connect()
        try:
            yield conn
        finally:
            if self._closed or conn.broken or conn.closed:
                conn.close()
            else:
                try:
                    self._idle.put_nowait(conn)
                except queue.Full:
                    conn.close()

    def close(self) -> None:
        self._closed = True
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return
