"""The vitals store's tables, defined once for both engines. The schema itself is owned by
the Alembic history (``gateway/db/migrations``, branch ``vitals``); these match its head.

Key material and readings are only ever stored encrypted: ``patient_keys.wrapped`` is an RFC
3394 key wrap under the master key (which never enters the database), ``batches.ciphertext``
an AES-GCM ciphertext under the patient's key. Erasure deletes the key row and nulls the
ciphertexts; the rest of a batch row (its event, tag, ledger index) stays for idempotency and
recovery and says nothing about a reading.
"""

from __future__ import annotations

import sqlalchemy as sa

from ..db.dialect import Seconds

__all__ = ["Int64", "batches", "erased", "metadata", "patient_keys"]

#: A ledger index or sequence number: BIGINT on PostgreSQL, INTEGER (64-bit already, and
#: what the pre-Alembic file declared) on SQLite.
Int64 = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

metadata = sa.MetaData()

patient_keys = sa.Table(
    "patient_keys",
    metadata,
    sa.Column("patient", sa.Text, primary_key=True),
    sa.Column("wrapped", sa.LargeBinary, nullable=False),
    sa.Column("created", Seconds, nullable=False),
)

#: Tombstones: the erasure's ledger event, and its index once appended.
erased = sa.Table(
    "erased",
    metadata,
    sa.Column("patient", sa.Text, primary_key=True),
    sa.Column("time", Seconds, nullable=False),
    sa.Column("event", sa.LargeBinary, nullable=False),
    sa.Column("ledger_index", Int64),
    # The ledger's size before the event's append (vitals_0002): where recovery looks first.
    sa.Column("size_hint", Int64),
)

#: One row per batch; ``ledger_index`` NULL while its event is not known to be on the
#: ledger (pending). ``seq`` never reuses a value (SQLite AUTOINCREMENT, a PostgreSQL
#: identity), so it is a stable read cursor.
batches = sa.Table(
    "batches",
    metadata,
    sa.Column("seq", Int64, primary_key=True, autoincrement=True),
    sa.Column("device", sa.Text, nullable=False),
    sa.Column("batch_id", sa.Text, nullable=False),
    sa.Column("patient", sa.Text, nullable=False),
    sa.Column("received", Seconds, nullable=False),
    sa.Column("tag", sa.LargeBinary, nullable=False),
    sa.Column("nonce", sa.LargeBinary),
    sa.Column("ciphertext", sa.LargeBinary),
    sa.Column("event", sa.LargeBinary, nullable=False),
    sa.Column("size_hint", Int64, nullable=False),
    sa.Column("ledger_index", Int64),
    sa.UniqueConstraint("device", "batch_id"),
    sa.Index("batches_patient", "patient", "received"),
    sa.Index(
        "batches_pending",
        "ledger_index",
        sqlite_where=sa.text("ledger_index IS NULL"),
        postgresql_where=sa.text("ledger_index IS NULL"),
    ),
    sqlite_autoincrement=True,
)
