"""The federation store's tables (``federation``), defined once for both engines. The
schema is owned by the Alembic history (``gateway/db/migrations``, branch ``federation``);
this matches its head. ``checkpoints`` and ``forks`` became ``federation_*`` there, so
that one PostgreSQL database can hold the cosignature and witness stores beside them."""

from __future__ import annotations

import sqlalchemy as sa

from ..db.dialect import Seconds

__all__ = ["checkpoints", "exchanged", "forks", "metadata", "pins"]

metadata = sa.MetaData()

#: A tree size: BIGINT on PostgreSQL, INTEGER (64-bit) on SQLite as the old file declared.
Size = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

checkpoints = sa.Table(
    "federation_checkpoints",
    metadata,
    sa.Column("log", sa.Text, primary_key=True),  # the peer's log vkey
    sa.Column("size", Size, nullable=False),
    sa.Column("note", sa.LargeBinary, nullable=False),  # log signature and cosignatures
)

forks = sa.Table(
    "federation_forks",
    metadata,
    sa.Column("log", sa.Text, primary_key=True),
    sa.Column("seen", Seconds, nullable=False),
    sa.Column("a", sa.LargeBinary, nullable=False),  # both signed notes, smaller tree first
    sa.Column("b", sa.LargeBinary, nullable=False),
)

pins = sa.Table(
    "pins",
    metadata,
    sa.Column("issuer", sa.Text, primary_key=True),
    sa.Column("jwks", sa.Text, nullable=False),
    sa.Column("fetched", Seconds, nullable=False),
)

exchanged = sa.Table(
    "exchanged",
    metadata,
    sa.Column("jti", sa.Text, primary_key=True),  # a token issued here by exchange
    sa.Column("sub", sa.Text, nullable=False),
    sa.Column("status_idx", sa.Integer, nullable=False, autoincrement=False),
    sa.Column("exp", Seconds, nullable=False),
    sa.Column("peer", sa.Text, nullable=False),
    sa.Column("foreign_jti", sa.Text, nullable=False),
    sa.Column("status_uri", sa.Text, nullable=False),  # the peer token's status list entry
    sa.Column("foreign_idx", sa.Integer, nullable=False, autoincrement=False),
    sa.Index("exchanged_exp", "exp"),
)
