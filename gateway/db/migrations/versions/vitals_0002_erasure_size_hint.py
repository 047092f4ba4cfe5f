"""vitals: the ledger's size when an erasure was decided, beside its tombstone.

Revision ID: vitals_0002
Revises: vitals_0001
Create Date: 2026-12-03

An erasure's event is appended after its tombstone commits. A crash between the append and
the note of its index left the event on the ledger with nothing here to say so, and the
restart appended it a second time. With the size the ledger had before the append, recovery
looks for the event from there first, as it does for vitals batches. Nullable: tombstones
made before this revision have none and are looked for from the start of the log.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "vitals_0002"
down_revision: str | Sequence[str] | None = "vitals_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Int64 = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # A nullable column with no default: a plain ALTER TABLE ADD COLUMN on both engines.
    op.add_column("erased", sa.Column("size_hint", Int64))


def downgrade() -> None:
    with op.batch_alter_table("erased") as batch:
        batch.drop_column("size_hint")
