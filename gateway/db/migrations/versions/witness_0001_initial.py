"""witness: per log the latest cosigned checkpoint, and refused forks, as the pre-Alembic
witness store created them.

Revision ID: witness_0001
Revises:
Create Date: 2026-12-03

A witness's state.db written before Alembic (``CREATE TABLE IF NOT EXISTS``) has exactly
these tables and is stamped at this revision instead of being upgraded
(``gateway.db.migrate``). PostgreSQL never held them: there they take their ``witness_*``
names (witness_0002) at once, since the federation store has a ``forks`` table in the same
schema.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from gateway.db.dialect import Seconds

revision: str = "witness_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("witness",)
depends_on: str | Sequence[str] | None = None

Size = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    legacy = op.get_bind().dialect.name == "sqlite"
    op.create_table(
        "logs" if legacy else "witness_logs",
        sa.Column("origin", sa.Text, primary_key=True),
        sa.Column("size", Size, nullable=False),
        sa.Column("root", sa.LargeBinary, nullable=False),
        sa.Column("timestamp", Seconds, nullable=False),
        sa.Column("note", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "forks" if legacy else "witness_forks",
        sa.Column("origin", sa.Text, primary_key=True),
        sa.Column("size", Size, primary_key=True, autoincrement=False),
        sa.Column("root", sa.LargeBinary, primary_key=True),
        sa.Column("seen", Seconds, nullable=False),
        sa.Column("note", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    legacy = op.get_bind().dialect.name == "sqlite"
    op.drop_table("forks" if legacy else "witness_forks")
    op.drop_table("logs" if legacy else "witness_logs")
