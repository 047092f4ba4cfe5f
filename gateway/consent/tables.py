"""The consent store's tables, defined once for both engines. The schema itself is owned by
the Alembic history (``gateway/db/migrations``, branch ``consent``); these match its head."""

from __future__ import annotations

import sqlalchemy as sa

from ..db.dialect import JSONColumn, Seconds

__all__ = ["consents", "emergencies", "metadata"]

metadata = sa.MetaData()

consents = sa.Table(
    "consents",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("patient", sa.Text, nullable=False),
    sa.Column("grantee", sa.Text, nullable=False),
    sa.Column("scopes", JSONColumn, nullable=False),
    sa.Column("created", Seconds, nullable=False),
    sa.Column("until", Seconds, nullable=False),
    sa.Column("revoked", Seconds),
    sa.Index("consents_patient", "patient"),
    sa.Index("consents_grantee", "grantee"),
)

#: ``reason`` is free text (possibly PHI): it stays here, the ledger gets a commitment to it.
emergencies = sa.Table(
    "emergencies",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("provider", sa.Text, nullable=False),
    sa.Column("patient", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("created", Seconds, nullable=False),
    sa.Column("until", Seconds, nullable=False),
    sa.Index("emergencies_pair", "provider", "patient"),
)
