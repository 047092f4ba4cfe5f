"""federation: peer checkpoints and forks, pinned JWKS, exchanged tokens, as the
pre-Alembic store created them.

Revision ID: federation_0001
Revises:
Create Date: 2026-12-03

A federation.db written before Alembic (``CREATE TABLE IF NOT EXISTS``) has exactly these
tables and is stamped at this revision instead of being upgraded (``gateway.db.migrate``).
PostgreSQL never held them: there ``checkpoints`` and ``forks`` take their
``federation_*`` names (federation_0002) at once, since the cosignature and witness stores
have tables of those names in the same schema.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from gateway.db.dialect import Seconds

revision: str = "federation_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("federation",)
depends_on: str | Sequence[str] | None = None

Size = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    legacy = op.get_bind().dialect.name == "sqlite"
    op.create_table(
        "checkpoints" if legacy else "federation_checkpoints",
        sa.Column("log", sa.Text, primary_key=True),
        sa.Column("size", Size, nullable=False),
        sa.Column("note", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "forks" if legacy else "federation_forks",
        sa.Column("log", sa.Text, primary_key=True),
        sa.Column("seen", Seconds, nullable=False),
        sa.Column("a", sa.LargeBinary, nullable=False),
        sa.Column("b", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "pins",
        sa.Column("issuer", sa.Text, primary_key=True),
        sa.Column("jwks", sa.Text, nullable=False),
        sa.Column("fetched", Seconds, nullable=False),
    )
    op.create_table(
        "exchanged",
        sa.Column("jti", sa.Text, primary_key=True),
        sa.Column("sub", sa.Text, nullable=False),
        sa.Column("status_idx", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("exp", Seconds, nullable=False),
        sa.Column("peer", sa.Text, nullable=False),
        sa.Column("foreign_jti", sa.Text, nullable=False),
        sa.Column("status_uri", sa.Text, nullable=False),
        sa.Column("foreign_idx", sa.Integer, nullable=False, autoincrement=False),
    )
    op.create_index("exchanged_exp", "exchanged", ["exp"])


def downgrade() -> None:
    legacy = op.get_bind().dialect.name == "sqlite"
    op.drop_table("exchanged")
    op.drop_table("pins")
    op.drop_table("forks" if legacy else "federation_forks")
    op.drop_table("checkpoints" if legacy else "federation_checkpoints")
