"""The replicas' heartbeat table, defined once for both engines. The schema is owned by the
Alembic history (``gateway/db/migrations``, branch ``replicas``); this matches its head."""

from __future__ import annotations

import sqlalchemy as sa

from ..db.dialect import Seconds

__all__ = ["metadata", "replicas"]

metadata = sa.MetaData()

replicas = sa.Table(
    "replicas",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("started", Seconds, nullable=False),
    sa.Column("seen", Seconds, nullable=False),
    #: Whether the replica shares its in-process state through Redis (redis_url set).
    sa.Column("redis", sa.Boolean, nullable=False),
)
