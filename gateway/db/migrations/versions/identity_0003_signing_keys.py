"""identity: the attestation signing keys' public parts, shared by every replica.

Revision ID: identity_0003
Revises: identity_0002
Create Date: 2026-12-03

``signing_keys`` (kid, alg, public jwk, created, retired, changed) with an index on
``changed``. Each replica publishes the public part of every key in its key dir when it
opens, rotates or re-reads it, and reads what changed since its last look once a second:
a token signed on one host then verifies on hosts holding only a copy of an older key dir,
and a key retired on one host is not used to sign on another (docs/postgresql.md,
"Rotating the attestation signing key"). Private keys never enter the database. A new
table only, so SQLite needs no batch copy.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from gateway.db.dialect import JSONColumn, Seconds

revision: str = "identity_0003"
down_revision: str | Sequence[str] | None = "identity_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "signing_keys",
        sa.Column("kid", sa.Text, primary_key=True),
        sa.Column("alg", sa.Text, nullable=False),
        sa.Column("jwk", JSONColumn, nullable=False),
        sa.Column("created", Seconds, nullable=False),
        sa.Column("retired", Seconds),
        sa.Column("changed", Seconds, nullable=False),
    )
    op.create_index("signing_keys_changed", "signing_keys", ["changed"])


def downgrade() -> None:
    op.drop_index("signing_keys_changed", "signing_keys")
    op.drop_table("signing_keys")
