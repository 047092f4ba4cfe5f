"""The witness store's tables (``witness``), defined once for both engines. The schema is
owned by the Alembic history (``gateway/db/migrations``, branch ``witness``); this matches
its head. ``logs`` and ``forks`` became ``witness_*`` there, so that one PostgreSQL
database can hold the federation store beside them."""

from __future__ import annotations

import sqlalchemy as sa

from ..db.dialect import Seconds

__all__ = ["forks", "logs", "metadata"]

metadata = sa.MetaData()

#: A tree size: BIGINT on PostgreSQL, INTEGER (64-bit) on SQLite as the old file declared.
Size = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

logs = sa.Table(
    "witness_logs",
    metadata,
    sa.Column("origin", sa.Text, primary_key=True),
    sa.Column("size", Size, nullable=False),
    sa.Column("root", sa.LargeBinary, nullable=False),
    sa.Column("timestamp", Seconds, nullable=False),
    sa.Column("note", sa.LargeBinary, nullable=False),
)

# tlog-witness lets a witness keep requests that fail a consistency check as possible proof
# of misbehaviour. Only forks are kept: two log-signed roots for one size prove it, where a
# bad proof alone proves nothing (anyone can send garbage with a valid checkpoint).
forks = sa.Table(
    "witness_forks",
    metadata,
    sa.Column("origin", sa.Text, primary_key=True),
    sa.Column("size", Size, primary_key=True, autoincrement=False),
    sa.Column("root", sa.LargeBinary, primary_key=True),
    sa.Column("seen", Seconds, nullable=False),
    sa.Column("note", sa.LargeBinary, nullable=False),
)
