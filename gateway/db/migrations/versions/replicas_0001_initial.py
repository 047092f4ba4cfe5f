"""replicas: a heartbeat row per replica serving the database.

Revision ID: replicas_0001
Revises:
Create Date: 2026-12-03

``replicas`` (id, started, seen, redis): each replica upserts its row every few seconds and
deletes it at a clean shutdown; ``serve`` without Redis refuses to start beside another
replica seen recently (docs/redis.md, "Invalidations across replicas"). A new store: nothing
to adopt. Only on PostgreSQL: an embedded data dir has one gateway by its ledger's file lock.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from gateway.db.dialect import Seconds

revision: str = "replicas_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("replicas",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "replicas",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("started", Seconds, nullable=False),
        sa.Column("seen", Seconds, nullable=False),
        sa.Column("redis", sa.Boolean, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("replicas")
