"""identity: a shared status-index counter, and indexes for reading recent revocations.

Revision ID: identity_0002
Revises: identity_0001
Create Date: 2026-12-03

Several replicas on one database (docs/database.md, "Caches and several replicas"):

- ``status_counter`` (one row) hands out status-list indexes, so two replicas never give
  two tokens the same bit. It starts after the highest index already used.
- ``subjects_revoked`` and ``tokens_revoked`` (partial: revoked rows only, so issuing a
  token does not write them) let each replica read, once a second, what any replica
  revoked since it last looked; ``subjects_patient`` finds a revoked patient's devices.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from gateway.db.dialect import Seconds

revision: str = "identity_0002"
down_revision: str | Sequence[str] | None = "identity_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_REVOKED = sa.text("revoked IS NOT NULL")


def upgrade() -> None:
    op.create_table(
        "status_counter",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("next", Seconds, nullable=False),
    )
    op.execute(
        "INSERT INTO status_counter (id, next) "
        "SELECT 1, coalesce(max(status_idx) + 1, 0) FROM tokens"
    )
    op.create_index(
        "subjects_revoked",
        "subjects",
        ["revoked"],
        sqlite_where=_REVOKED,
        postgresql_where=_REVOKED,
    )
    op.create_index("subjects_patient", "subjects", ["patient"])
    op.create_index(
        "tokens_revoked", "tokens", ["revoked"], sqlite_where=_REVOKED, postgresql_where=_REVOKED
    )


def downgrade() -> None:
    op.drop_index("tokens_revoked", "tokens")
    op.drop_index("subjects_patient", "subjects")
    op.drop_index("subjects_revoked", "subjects")
    op.drop_table("status_counter")
