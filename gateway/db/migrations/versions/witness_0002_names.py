"""witness: ``logs`` and ``forks`` become ``witness_logs`` and ``witness_forks``.

Revision ID: witness_0002
Revises: witness_0001
Create Date: 2026-12-03

On PostgreSQL every store shares one schema, and the federation store has a ``forks``
table too. PostgreSQL got the new names from witness_0001; this renames an embedded file's
(SQLite keeps the rows and the primary key through ``ALTER TABLE ... RENAME``).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "witness_0002"
down_revision: str | Sequence[str] | None = "witness_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RENAMED = (("logs", "witness_logs"), ("forks", "witness_forks"))


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for old, new in RENAMED:
            op.rename_table(old, new)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for old, new in RENAMED:
            op.rename_table(new, old)
