"""consent: consents and emergencies, as the pre-Alembic store created them.

Revision ID: consent_0001
Revises:
Create Date: 2026-12-03

A consent.db written before Alembic (``CREATE TABLE IF NOT EXISTS``) has exactly these
tables and is stamped at this revision instead of being upgraded (``gateway.db.migrate``).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from gateway.db.dialect import JSONColumn, Seconds

revision: str = "consent_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("consent",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "consents",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("patient", sa.Text, nullable=False),
        sa.Column("grantee", sa.Text, nullable=False),
        sa.Column("scopes", JSONColumn, nullable=False),
        sa.Column("created", Seconds, nullable=False),
        sa.Column("until", Seconds, nullable=False),
        sa.Column("revoked", Seconds),
    )
    op.create_index("consents_patient", "consents", ["patient"])
    op.create_index("consents_grantee", "consents", ["grantee"])
    op.create_table(
        "emergencies",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("provider", sa.Text, nullable=False),
        sa.Column("patient", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created", Seconds, nullable=False),
        sa.Column("until", Seconds, nullable=False),
    )
    op.create_index("emergencies_pair", "emergencies", ["provider", "patient"])


def downgrade() -> None:
    op.drop_table("emergencies")
    op.drop_table("consents")
