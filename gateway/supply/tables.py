"""The supply-chain store's tables, defined once for both engines. The schema itself is
owned by the Alembic history (``gateway/db/migrations``, branch ``supply``); these match its
head.

The full signed documents live here, off the ledger: the ledger holds, per accepted event,
its hash, the party, the business step and the units it names."""

from __future__ import annotations

import sqlalchemy as sa

from ..db.dialect import JSONColumn, Seconds

__all__ = ["devices", "documents", "events", "item_events", "items", "metadata"]

metadata = sa.MetaData()

#: Each accepted signed document, exactly as the party sent it (a compact JWS).
documents = sa.Table(
    "supply_documents",
    metadata,
    sa.Column("hash", sa.Text, primary_key=True),
    sa.Column("party", sa.Text, nullable=False),
    sa.Column("jws", sa.Text, nullable=False),
    sa.Column("received", Seconds, nullable=False),
)

#: One row per accepted event; ``entry`` is its ledger leaf, ``ledger_index`` set once the
#: ledger has it (NULL: stored, its append not answered yet: settled from ``size_hint``).
events = sa.Table(
    "supply_events",
    metadata,
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
    #: The ledger's size before the append was tried: where a crash's lost answer is found.
    sa.Column("size_hint", Seconds, nullable=False),
    sa.Index("supply_events_event_id", "event_id", unique=True),
    # Only the rows whose append was not answered: what a start or a retry settles.
    sa.Index(
        "supply_events_pending",
        "received",
        sqlite_where=sa.text("ledger_index IS NULL"),
        postgresql_where=sa.text("ledger_index IS NULL"),
    ),
)

#: The current state of every unit ever commissioned or packed into.
items = sa.Table(
    "supply_items",
    metadata,
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
    sa.Index("supply_items_parent", "parent"),
    sa.Index("supply_items_lot", "key", "lot"),
)

#: Which events concern which unit, including the moves of the parents it was packed in.
item_events = sa.Table(
    "supply_item_events",
    metadata,
    sa.Column("item", sa.Text, primary_key=True),
    sa.Column("event_id", sa.Text, primary_key=True),
    sa.Index("supply_item_events_event", "event_id"),
)

#: The device key each enrolled device unit (its UDI) is held by: one device per unit.
devices = sa.Table(
    "supply_devices",
    metadata,
    sa.Column("unit", sa.Text, primary_key=True),
    sa.Column("jkt", sa.Text, nullable=False),
    sa.Column("reserved", Seconds, nullable=False),
)
