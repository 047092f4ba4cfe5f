"""supply: signed EPCIS documents, accepted events, units and their histories.

Revision ID: supply_0001
Revises:
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from gateway.db.dialect import JSONColumn, Seconds

revision: str = "supply_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("supply",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "supply_documents",
        sa.Column("hash", sa.Text, primary_key=True),
        sa.Column("party", sa.Text, nullable=False),
        sa.Column("jws", sa.Text, nullable=False),
        sa.Column("received", Seconds, nullable=False),
    )
    op.create_table(
        "supply_events",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("event_hash", sa.Text, nullable=False),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("party", sa.Text, nullable=False),
        sa.Column("gln", sa.Text, nullable=False),
        sa.Column("biz_step", sa.Text, nullable=False),
        sa.Column("event_time", sa.Text, nullable=False),
        sa.Column("received", Seconds, nullable=False),
        sa.Column("entry", sa.LargeBinary, nullable=False),
        sa.Column("ledger_index", Seconds),
        sa.Column("size_hint", Seconds, nullable=False),
    )
    op.create_index("supply_events_event_id", "supply_events", ["event_id"], unique=True)
    op.create_index(
        "supply_events_pending",
        "supply_events",
        ["received"],
        sqlite_where=sa.text("ledger_index IS NULL"),
        postgresql_where=sa.text("ledger_index IS NULL"),
    )
    op.create_table(
        "supply_items",
        sa.Column("uri", sa.Text, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("custodian", sa.Text, nullable=False),
        sa.Column("commissioned_by", sa.Text, nullable=False),
        sa.Column("in_transit_to", sa.Text),
        sa.Column("parent", sa.Text),
        sa.Column("lot", sa.Text),
        sa.Column("expiry", sa.Text),
        sa.Column("suspect", JSONColumn, nullable=False),
        sa.Column("updated", Seconds, nullable=False),
    )
    op.create_index("supply_items_parent", "supply_items", ["parent"])
    op.create_index("supply_items_lot", "supply_items", ["key", "lot"])
    op.create_table(
        "supply_item_events",
        sa.Column("item", sa.Text, primary_key=True),
        sa.Column("event_id", sa.Text, primary_key=True),
    )
    op.create_index("supply_item_events_event", "supply_item_events", ["event_id"])


def downgrade() -> None:
    op.drop_table("supply_item_events")
    op.drop_table("supply_items")
    op.drop_table("supply_events")
    op.drop_table("supply_documents")
