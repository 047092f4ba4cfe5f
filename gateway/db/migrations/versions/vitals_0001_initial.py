"""vitals: wrapped patient keys, tombstones and encrypted batches, as the pre-Alembic store
created them.

Revision ID: vitals_0001
Revises:
Create Date: 2026-12-03

A vitals.db written before Alembic (``CREATE TABLE IF NOT EXISTS``) has exactly these
tables and indexes and is stamped at this revision instead of being upgraded
(``gateway.db.migrate``). ``batches.seq`` is ``INTEGER PRIMARY KEY AUTOINCREMENT`` on SQLite
(a rowid that is never reused) and a ``BIGSERIAL`` on PostgreSQL; ``batches_pending`` is a
partial index on both.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from gateway.db.dialect import Seconds

revision: str = "vitals_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("vitals",)
depends_on: str | Sequence[str] | None = None

Int64 = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "patient_keys",
        sa.Column("patient", sa.Text, primary_key=True),
        sa.Column("wrapped", sa.LargeBinary, nullable=False),
        sa.Column("created", Seconds, nullable=False),
    )
    op.create_table(
        "erased",
        sa.Column("patient", sa.Text, primary_key=True),
        sa.Column("time", Seconds, nullable=False),
        sa.Column("event", sa.LargeBinary, nullable=False),
        sa.Column("ledger_index", Int64),
    )
    op.create_table(
        "batches",
        sa.Column("seq", Int64, primary_key=True, autoincrement=True),
        sa.Column("device", sa.Text, nullable=False),
        sa.Column("batch_id", sa.Text, nullable=False),
        sa.Column("patient", sa.Text, nullable=False),
        sa.Column("received", Seconds, nullable=False),
        sa.Column("tag", sa.LargeBinary, nullable=False),
        sa.Column("nonce", sa.LargeBinary),
        sa.Column("ciphertext", sa.LargeBinary),
        sa.Column("event", sa.LargeBinary, nullable=False),
        sa.Column("size_hint", Int64, nullable=False),
        sa.Column("ledger_index", Int64),
        sa.UniqueConstraint("device", "batch_id"),
        sqlite_autoincrement=True,
    )
    op.create_index("batches_patient", "batches", ["patient", "received"])
    op.create_index(
        "batches_pending",
        "batches",
        ["ledger_index"],
        sqlite_where=sa.text("ledger_index IS NULL"),
        postgresql_where=sa.text("ledger_index IS NULL"),
    )


def downgrade() -> None:
    op.drop_table("batches")
    op.drop_table("erased")
    op.drop_table("patient_keys")
