"""cosignatures: submitted checkpoints, witnesses' cosignature lines and sizes, as the
pre-Alembic store (``ledger/cosignatures.py``) created them.

Revision ID: cosignatures_0001
Revises:
Create Date: 2026-12-03

A cosignatures.db written before Alembic (``CREATE TABLE IF NOT EXISTS``) has exactly these
tables and is stamped at this revision instead of being upgraded (``gateway.db.migrate``).
PostgreSQL never held them: there ``checkpoints`` is ``cosigned_checkpoints``
(cosignatures_0002) at once, since the federation store has a ``checkpoints`` table in the
same schema.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from gateway.db.dialect import Seconds

revision: str = "cosignatures_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("cosignatures",)
depends_on: str | Sequence[str] | None = None

Size = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    legacy = op.get_bind().dialect.name == "sqlite"
    op.create_table(
        "checkpoints" if legacy else "cosigned_checkpoints",
        sa.Column("size", Size, primary_key=True, autoincrement=False),
        sa.Column("note", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "cosignatures",
        sa.Column("size", Size, primary_key=True, autoincrement=False),
        sa.Column("witness", sa.Text, primary_key=True),
        sa.Column("timestamp", Seconds, nullable=False),
        sa.Column("line", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "witnesses",
        sa.Column("witness", sa.Text, primary_key=True),
        sa.Column("size", Size, nullable=False),
    )


def downgrade() -> None:
    legacy = op.get_bind().dialect.name == "sqlite"
    op.drop_table("witnesses")
    op.drop_table("cosignatures")
    op.drop_table("checkpoints" if legacy else "cosigned_checkpoints")
