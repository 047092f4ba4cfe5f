"""supply: which device key holds each enrolled device unit (one device per UDI).

Revision ID: supply_0002
Revises: supply_0001
Create Date: 2026-12-03

A device enrolling with a UDI reserves its unit for its key before its invite is spent; a
second device with the same UDI is refused while the first is enrolled (or its enrollment
is under way). Devices enrolled before this revision hold no reservation.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from gateway.db.dialect import Seconds

revision: str = "supply_0002"
down_revision: str | Sequence[str] | None = "supply_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "supply_devices",
        sa.Column("unit", sa.Text, primary_key=True),
        sa.Column("jkt", sa.Text, nullable=False),
        sa.Column("reserved", Seconds, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("supply_devices")
