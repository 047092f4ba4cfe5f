"""The PostgreSQL ledger's schema: one versioned, idempotent definition.

Every statement that shapes the ledger's tables lives here, so that it can move into a
migration unchanged when the other stores bring Alembic. :func:`ensure_schema` is safe to
run from several replicas at once (an advisory lock serializes them).
"""

from __future__ import annotations

import psycopg

from .errors import LedgerError, NotFound

__all__ = ["SCHEMA_VERSION", "check_schema", "ensure_schema"]

SCHEMA_VERSION = 1

# pg_advisory_xact_lock key: "tglg" in ASCII, so that it never collides with another
# feature's key by accident.
_LOCK_KEY = 0x74676C67

_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS ledger_schema (
    id smallint PRIMARY KEY CHECK (id = 0),
    version integer NOT NULL
)"""

# Version 1. ledger_nodes holds every complete subtree, keyed as in SQLiteStore
# (level << 48 | index); a leaf's row (level 0, id = its index) also carries the leaf, so one
# COPY writes a whole batch. ledger_tree is the single tree-state row whose FOR UPDATE lock
# serializes integration (Tessera's MySQL design): the size, the frontier (the hashes of the
# maximal complete subtrees, concatenated: enough to append and to prove the new leaves) and
# the newest checkpoint, all written in the transaction that appends.
_V1 = (
    """CREATE TABLE ledger_nodes (
        id bigint PRIMARY KEY,
        hash bytea NOT NULL,
        data bytea CHECK ((data IS NULL) = (id >= 281474976710656)))""",
    "CREATE TABLE ledger_checkpoints (size bigint PRIMARY KEY, note bytea NOT NULL)",
    """CREATE TABLE ledger_tree (
        id smallint PRIMARY KEY CHECK (id = 0),
        size bigint NOT NULL,
        frontier bytea NOT NULL,
        note bytea)""",
    "INSERT INTO ledger_tree (id, size, frontier, note) VALUES (0, 0, '', NULL)",
)

_MIGRATIONS: dict[int, tuple[str, ...]] = {1: _V1}


def ensure_schema(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """Create or upgrade the ledger's tables to :data:`SCHEMA_VERSION` in one transaction.

    Raises LedgerError for a database written by a newer version of this code.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute(_VERSION_TABLE)
        row = conn.execute("SELECT version FROM ledger_schema WHERE id = 0").fetchone()
        have = 0 if row is None else int(str(row[0]))
        if have > SCHEMA_VERSION:
            raise LedgerError(
                f"the ledger schema is version {have}; this code knows up to {SCHEMA_VERSION}"
            )
        for version in range(have + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[version]:
                conn.execute(statement.encode())
        conn.execute(
            "INSERT INTO ledger_schema (id, version) VALUES (0, %s)"
            " ON CONFLICT (id) DO UPDATE SET version = excluded.version",
            (SCHEMA_VERSION,),
        )


def check_schema(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """For readers, who never create tables: raise NotFound when there is no ledger here
    and LedgerError when its schema is not :data:`SCHEMA_VERSION`."""
    exists = conn.execute("SELECT to_regclass('ledger_schema') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        raise NotFound("no ledger in this database")
    row = conn.execute("SELECT version FROM ledger_schema WHERE id = 0").fetchone()
    if row is None or row[0] != SCHEMA_VERSION:
        raise LedgerError(f"the ledger schema is not version {SCHEMA_VERSION}")
