"""cosignatures: ``checkpoints`` becomes ``cosigned_checkpoints``.

Revision ID: cosignatures_0002
Revises: cosignatures_0001
Create Date: 2026-12-03

On PostgreSQL every store shares one schema, and the federation store has a
``checkpoints`` table too. PostgreSQL got the new name from cosignatures_0001; this renames
an embedded file's (SQLite keeps the rows through ``ALTER TABLE ... RENAME``).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "cosignatures_0002"
down_revision: str | Sequence[str] | None = "cosignatures_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.rename_table("checkpoints", "cosigned_checkpoints")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.rename_table("cosigned_checkpoints", "checkpoints")
