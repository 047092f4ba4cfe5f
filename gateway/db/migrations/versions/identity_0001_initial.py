"""identity: subjects, invites, issued tokens and spent client assertions, as the
pre-Alembic store created them.

Revision ID: identity_0001
Revises:
Create Date: 2026-12-03

An identity.db written before Alembic (sqlite-utils ``create`` and ``create_index``) has
exactly these tables and indexes, with sqlite-utils' index names, and is stamped at this
revision instead of being upgraded (``gateway.db.migrate``).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from gateway.db.dialect import JSONColumn, Seconds

revision: str = "identity_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("identity",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "subjects",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("jkt", sa.Text, nullable=False),
        sa.Column("jwk", JSONColumn, nullable=False),
        sa.Column("created", Seconds, nullable=False),
        sa.Column("revoked", Seconds),
        sa.Column("patient", sa.Text),
        sa.Column("attrs", JSONColumn),
    )
    op.create_index("idx_subjects_jkt", "subjects", ["jkt"], unique=True)
    op.create_table(
        "invites",
        sa.Column("code_hash", sa.Text, primary_key=True),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("created", Seconds, nullable=False),
        sa.Column("expires", Seconds, nullable=False),
        sa.Column("used", Seconds),
        sa.Column("attrs", JSONColumn),
    )
    op.create_table(
        "tokens",
        sa.Column("jti", sa.Text, primary_key=True),
        sa.Column("sub", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("exp", Seconds, nullable=False),
        sa.Column("status_idx", Seconds, nullable=False),
        sa.Column("ledger_index", Seconds, nullable=False),
        sa.Column("revoked", Seconds),
    )
    op.create_index("idx_tokens_sub", "tokens", ["sub"])
    op.create_index("idx_tokens_status_idx", "tokens", ["status_idx"], unique=True)
    op.create_table(
        "client_jtis",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("exp", Seconds),
    )
    op.create_index("idx_client_jtis_exp", "client_jtis", ["exp"])


def downgrade() -> None:
    op.drop_table("client_jtis")
    op.drop_table("tokens")
    op.drop_table("invites")
    op.drop_table("subjects")
