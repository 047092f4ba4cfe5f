"""The few places SQLite and PostgreSQL differ, named once so stores never branch on the
dialect: a write transaction, ``FOR UPDATE``, upsert, JSON and time columns."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect, Engine

from .engine import WRITE
from .errors import reaching

__all__ = ["JSONColumn", "Seconds", "for_update", "reading", "upsert", "writing"]

#: Unix seconds: BIGINT on PostgreSQL (INTEGER there ends in 2038), INTEGER on SQLite (the
#: same 64-bit storage, and the type the pre-Alembic files declared).
Seconds = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class JSONColumn(sa.TypeDecorator[Any]):
    """A JSON value: ``jsonb`` on PostgreSQL, JSON text on SQLite (the pre-Alembic files
    stored ``json.dumps`` text in ``TEXT`` columns, which this reads and writes as is)."""

    impl = sa.Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.JSONB())
        return dialect.type_descriptor(sa.Text())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None or dialect.name == "postgresql":
            return value
        return json.dumps(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if value is None or dialect.name == "postgresql":
            return value
        return json.loads(value)


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A connection in a read transaction (a consistent snapshot on both engines). Raises
    DatabaseUnavailable (503) when the database cannot be used."""
    with reaching(engine.url), engine.connect() as conn, conn.begin():
        yield conn


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A connection in a write transaction, committed on exit, rolled back on an exception.
    On SQLite it holds the write lock from ``BEGIN``, so a read-then-write inside it is
    atomic against other processes, as ``FOR UPDATE`` makes it on PostgreSQL. Raises
    DatabaseUnavailable (503) when the database cannot be used or the commit fails."""
    with (
        reaching(engine.url),
        engine.connect().execution_options(**{WRITE: True}) as conn,
        conn.begin(),
    ):
        yield conn


def for_update(stmt: sa.Select[Any]) -> sa.Select[Any]:
    """Lock the selected rows until the transaction ends: ``FOR UPDATE`` on PostgreSQL.
    SQLite has no row locks and renders nothing; use it inside ``writing``, whose
    ``BEGIN IMMEDIATE`` already excludes every other writer."""
    return stmt.with_for_update()


def upsert(
    conn: Connection,
    table: sa.Table,
    rows: Sequence[Mapping[str, Any]],
    keys: Sequence[str],
    update: Sequence[str] | None = None,
) -> None:
    """Insert ``rows``; where one conflicts on ``keys``, set its ``update`` columns (every
    non-key column by default; none: keep the existing row)."""
    if not rows:
        return
    dialect = conn.dialect.name
    if dialect == "postgresql":
        ins: Any = postgresql.insert(table)
    elif dialect == "sqlite":
        ins = sqlite.insert(table)
    else:  # pragma: no cover - only the two engines exist
        raise NotImplementedError(dialect)
    cols = [c.name for c in table.columns if c.name not in keys] if update is None else update
    if cols:
        stmt = ins.on_conflict_do_update(
            index_elements=list(keys), set_={c: ins.excluded[c] for c in cols}
        )
    else:
        stmt = ins.on_conflict_do_nothing(index_elements=list(keys))
    conn.execute(stmt, list(rows))
