"""The identity store's tables, defined once for both engines. The schema itself is owned by
the Alembic history (``gateway/db/migrations``, branch ``identity``); these match its head.

``identity_0001`` is exactly what the pre-Alembic store (sqlite-utils) created, index names
included; ``identity_0002`` adds the status-index counter and the indexes that let each
replica read what others revoked since it last looked (docs/database.md); ``identity_0003``
publishes the attestation signing keys' public parts."""

from __future__ import annotations

import sqlalchemy as sa

from ..db.dialect import JSONColumn, Seconds

__all__ = [
    "client_jtis",
    "invites",
    "metadata",
    "signing_keys",
    "status_counter",
    "subjects",
    "tokens",
]

metadata = sa.MetaData()

#: A count that may pass 2^31 (status-list and ledger indexes): like ``Seconds``, BIGINT on
#: PostgreSQL and the INTEGER the pre-Alembic file declared on SQLite (64-bit there).
Count = Seconds

#: Names, device models and the like (PHI) live in ``attrs``, never on the ledger.
subjects = sa.Table(
    "subjects",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("jkt", sa.Text, nullable=False),
    sa.Column("jwk", JSONColumn, nullable=False),
    sa.Column("created", Seconds, nullable=False),
    sa.Column("revoked", Seconds),
    sa.Column("patient", sa.Text),
    sa.Column("attrs", JSONColumn),
    # One key, one identity: a holder key names exactly one subject.
    sa.Index("idx_subjects_jkt", "jkt", unique=True),
    sa.Index(
        "subjects_revoked",
        "revoked",
        sqlite_where=sa.text("revoked IS NOT NULL"),
        postgresql_where=sa.text("revoked IS NOT NULL"),
    ),
    sa.Index("subjects_patient", "patient"),
)

invites = sa.Table(
    "invites",
    metadata,
    sa.Column("code_hash", sa.Text, primary_key=True),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("created", Seconds, nullable=False),
    sa.Column("expires", Seconds, nullable=False),
    sa.Column("used", Seconds),
    sa.Column("attrs", JSONColumn),
)

tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("jti", sa.Text, primary_key=True),
    sa.Column("sub", sa.Text, nullable=False),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("exp", Seconds, nullable=False),
    sa.Column("status_idx", Count, nullable=False),
    sa.Column("ledger_index", Count, nullable=False),
    sa.Column("revoked", Seconds),
    sa.Index("idx_tokens_sub", "sub"),
    # A status-list bit names one token: the counter below hands each index out once.
    sa.Index("idx_tokens_status_idx", "status_idx", unique=True),
    # Only revoked rows: issuing a token (revoked NULL) does not touch it.
    sa.Index(
        "tokens_revoked",
        "revoked",
        sqlite_where=sa.text("revoked IS NOT NULL"),
        postgresql_where=sa.text("revoked IS NOT NULL"),
    ),
)

#: Spent client-assertion ids (``assertion_key``), kept until they could no longer be replayed.
client_jtis = sa.Table(
    "client_jtis",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("exp", Seconds),
    sa.Index("idx_client_jtis_exp", "exp"),
)

#: One row (id 1): the next status-list index no replica has reserved yet.
status_counter = sa.Table(
    "status_counter",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("next", Count, nullable=False),
)

#: The attestation signing keys' public parts (never a private key), published by every
#: replica so that a token signed on any host verifies on every other within a second, and
#: a retirement made on one host stops the others signing with that key. ``changed`` is the
#: publisher's clock when the row was inserted or retired: what each replica's once-a-second
#: look reads from (a key published late, long after its ``created``, is still seen).
signing_keys = sa.Table(
    "signing_keys",
    metadata,
    sa.Column("kid", sa.Text, primary_key=True),
    sa.Column("alg", sa.Text, nullable=False),
    sa.Column("jwk", JSONColumn, nullable=False),
    sa.Column("created", Seconds, nullable=False),
    sa.Column("retired", Seconds),
    sa.Column("changed", Seconds, nullable=False),
    sa.Index("signing_keys_changed", "changed"),
)
