"""incentives: programs, evaluations and reward credentials.

Revision ID: incentives_0001
Revises:
Create Date: 2026-12-03

``programs`` (content-addressed, never updated), ``evaluations`` (one per patient, program
and period: the result, the commitment's salt, the last vitals batch read; no aggregate
value) and ``rewards`` (SD-JWT VC credentials, whose row number is their status-list index).
A new store: nothing to adopt (gateway/incentives, docs/incentives.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from gateway.db.dialect import Seconds

revision: str = "incentives_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("incentives",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "incentive_programs",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("canonical", sa.Text, nullable=False),
        sa.Column("publisher", sa.Text, nullable=False),
        sa.Column("published", Seconds, nullable=False),
        sa.Column("ledger_index", sa.BigInteger, nullable=False),
    )
    op.create_index("incentive_programs_publisher", "incentive_programs", ["publisher"])
    op.create_table(
        "incentive_evaluations",
        sa.Column("patient", sa.Text, primary_key=True),
        sa.Column("program", sa.Text, primary_key=True),
        sa.Column("period", sa.Integer, primary_key=True),
        sa.Column("result", sa.Integer, nullable=False),
        sa.Column("is_bool", sa.Boolean, nullable=False),
        sa.Column("points", sa.Integer, nullable=False),
        sa.Column("salt", sa.LargeBinary, nullable=False),
        sa.Column("commitment", sa.Text, nullable=False),
        sa.Column("upto_seq", sa.BigInteger, nullable=False),
        sa.Column("evaluated", Seconds, nullable=False),
        sa.Column("ledger_index", sa.BigInteger),  # NULL: reserved, being appended
    )
    op.create_table(
        "incentive_rewards",
        sa.Column("status_idx", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("id", sa.Text, nullable=False, unique=True),
        sa.Column("patient", sa.Text, nullable=False),
        sa.Column("program", sa.Text, nullable=False),
        sa.Column("period", sa.Integer, nullable=False),
        sa.Column("credential", sa.Text, nullable=False),
        sa.Column("issued", Seconds, nullable=False),
        sa.Column("revoked", Seconds),
        sa.Column("ledger_index", sa.BigInteger),
        sa.UniqueConstraint("patient", "program", "period", name="incentive_rewards_once"),
    )
    op.create_index("incentive_rewards_patient", "incentive_rewards", ["patient"])


def downgrade() -> None:
    op.drop_table("incentive_rewards")
    op.drop_table("incentive_evaluations")
    op.drop_table("incentive_programs")
