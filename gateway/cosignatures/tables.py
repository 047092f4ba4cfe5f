"""The cosignature store's tables (``cosignatures``), defined once for both engines. The
schema is owned by the Alembic history (``gateway/db/migrations``, branch
``cosignatures``); this matches its head. ``checkpoints`` became ``cosigned_checkpoints``
there, so that one PostgreSQL database can hold the federation store beside it."""

from __future__ import annotations

import sqlalchemy as sa

from ..db.dialect import Seconds

__all__ = ["checkpoints", "cosignatures", "metadata", "witnesses"]

metadata = sa.MetaData()

#: A tree size: BIGINT on PostgreSQL, INTEGER (64-bit) on SQLite as the old file declared.
Size = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

#: Per size, the log-signed note that was submitted.
checkpoints = sa.Table(
    "cosigned_checkpoints",
    metadata,
    sa.Column("size", Size, primary_key=True, autoincrement=False),
    sa.Column("note", sa.LargeBinary, nullable=False),
)

#: Each witness's tlog-cosignature line on a size; the witness is its vkey (a new key is a
#: new witness).
cosignatures = sa.Table(
    "cosignatures",
    metadata,
    sa.Column("size", Size, primary_key=True, autoincrement=False),
    sa.Column("witness", sa.Text, primary_key=True),
    sa.Column("timestamp", Seconds, nullable=False),
    sa.Column("line", sa.LargeBinary, nullable=False),
)

#: Per witness, the largest size it has cosigned: where the next submission starts from.
witnesses = sa.Table(
    "witnesses",
    metadata,
    sa.Column("witness", sa.Text, primary_key=True),
    sa.Column("size", Size, nullable=False),
)
