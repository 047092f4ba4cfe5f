"""federation: ``checkpoints`` and ``forks`` become ``federation_checkpoints`` and
``federation_forks``.

Revision ID: federation_0002
Revises: federation_0001
Create Date: 2026-12-03

On PostgreSQL every store shares one schema, and the cosignature store has a
``checkpoints`` table and the witness store a ``forks`` table too. PostgreSQL got the new
names from federation_0001; this renames an embedded file's (SQLite keeps its indexes and
rows through ``ALTER TABLE ... RENAME``).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "federation_0002"
down_revision: str | Sequence[str] | None = "federation_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RENAMED = (("checkpoints", "federation_checkpoints"), ("forks", "federation_forks"))


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for old, new in RENAMED:
            op.rename_table(old, new)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for old, new in RENAMED:
            op.rename_table(new, old)
