"""Engines: one SQLite file per store under the data dir (embedded), or one PostgreSQL
database shared by every store and every replica.

A SQLite connection gets WAL, ``synchronous=FULL`` (a revocation must survive a crash) and a
busy timeout as it opens, and transactions that SQLAlchemy begins are real ``BEGIN``s (the
stdlib driver otherwise defers them, which breaks read-then-write atomicity).
"""

from __future__ import annotations

import select
import sqlite3
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine, make_url

from .url import check_url, redact

__all__ = ["WRITE", "pg_url", "postgres_engine", "redact", "sqlite_engine"]

#: Execution option: this connection's transactions will write, so take SQLite's write lock
#: at ``BEGIN`` (``BEGIN IMMEDIATE``) rather than failing to upgrade a read lock later.
WRITE = "telegate_write"

#: How long a SQLite writer waits for another's lock before ``database is locked``, ms.
SQLITE_BUSY_MS = 5000
#: Connections each replica holds to PostgreSQL: enough for the thread pool's blocking store
#: calls, few enough that a dozen replicas stay under the server's default 100.
PG_POOL_SIZE = 5
PG_MAX_OVERFLOW = 5
PG_POOL_TIMEOUT = 10.0
PG_CONNECT_TIMEOUT = 5


def pg_url(url: str) -> URL:
    """``postgresql://...`` as an SQLAlchemy URL with the psycopg 3 driver. Raises
    ConfigError on anything else."""
    check_url(url)
    return make_url(url).set(drivername="postgresql+psycopg")


def _sqlite_connect(dbapi: Any, _record: Any) -> None:
    assert isinstance(dbapi, sqlite3.Connection)
    dbapi.isolation_level = None  # SQLAlchemy's begin event below issues BEGIN itself
    dbapi.execute("PRAGMA journal_mode = WAL")
    dbapi.execute("PRAGMA synchronous = FULL")
    dbapi.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_MS}")


def _sqlite_begin(conn: Connection) -> None:
    write = conn.get_execution_options().get(WRITE, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def sqlite_engine(path: Path) -> Engine:
    """An engine on the SQLite file ``path`` (created with its folder if missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(f"sqlite:///{path}")
    sa.event.listen(engine, "connect", _sqlite_connect)
    sa.event.listen(engine, "begin", _sqlite_begin)
    return engine


def _still_open(dbapi: Any, _record: Any, _proxy: Any) -> None:
    """Checkout: replace a pooled connection the server has closed, without a round trip.

    A connection resting in the pool has nothing to read. When the server goes away (a
    restart, ``pg_terminate_backend``, an idle timeout) it sends its FATAL message and
    closes the socket, so the socket polls readable (or in error). Raising
    ``DisconnectionError`` here makes the pool discard it and check out another, a fresh
    one if need be (SQLAlchemy's "custom pessimistic ping"). ``pool_pre_ping`` did the
    same with a ``SELECT 1`` round trip per checkout: 8% of the CPU of a token request
    here (py-spy, bench.auth --sections issue). A peer that vanished without closing (a
    cut cable) is found by neither; its query fails at the TCP timeout and answers 503.
    """
    pgconn = dbapi.pgconn
    if dbapi.closed or pgconn.status != 0:  # libpq CONNECTION_OK
        raise sa.exc.DisconnectionError("the connection is closed")
    poller = select.poll()
    poller.register(pgconn.socket, select.POLLIN | select.POLLERR | select.POLLHUP)
    if poller.poll(0):
        raise sa.exc.DisconnectionError("the server closed this connection")


def postgres_engine(
    url: str | URL, pool_size: int = PG_POOL_SIZE, max_overflow: int = PG_MAX_OVERFLOW
) -> Engine:
    """A pooled psycopg 3 engine. A connection the server closed while it rested in the
    pool is replaced at checkout (``_still_open``), so a restarted server costs no
    request."""
    engine = sa.create_engine(
        url if isinstance(url, URL) else pg_url(url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=PG_POOL_TIMEOUT,
        connect_args={"connect_timeout": PG_CONNECT_TIMEOUT},
    )
    sa.event.listen(engine, "checkout", _still_open)
    return engine
