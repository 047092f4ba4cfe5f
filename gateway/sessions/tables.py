"""The call sessions table, defined once for both engines. The schema itself is owned by the
Alembic history (``gateway/db/migrations``, branch ``sessions``); this matches its head."""

from __future__ import annotations

import sqlalchemy as sa

from ..db.dialect import Seconds

__all__ = ["metadata", "sessions"]

metadata = sa.MetaData()

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("patient", sa.Text, nullable=False),
    sa.Column("provider", sa.Text, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("created", Seconds, nullable=False),
    sa.Column("updated", Seconds, nullable=False),
    sa.Index("sessions_provider", "provider", "state"),
    sa.Index("sessions_patient", "patient", "state"),
)
