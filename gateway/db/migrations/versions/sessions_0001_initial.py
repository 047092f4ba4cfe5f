"""sessions: call sessions, as the pre-Alembic store created them.

Revision ID: sessions_0001
Revises:
Create Date: 2026-12-03

A sessions.db written before Alembic (``CREATE TABLE IF NOT EXISTS``) has exactly this
table and is stamped at this revision instead of being upgraded (``gateway.db.migrate``).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from gateway.db.dialect import Seconds

revision: str = "sessions_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("sessions",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("patient", sa.Text, nullable=False),
        sa.Column("provider", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("created", Seconds, nullable=False),
        sa.Column("updated", Seconds, nullable=False),
    )
    op.create_index("sessions_provider", "sessions", ["provider", "state"])
    op.create_index("sessions_patient", "sessions", ["patient", "state"])


def downgrade() -> None:
    op.drop_table("sessions")
