"""The incentives store's tables, defined once for both engines. The schema itself is owned
by the Alembic history (``gateway/db/migrations``, branch ``incentives``); these match its
head.

No reading and no aggregate value is kept here: an evaluation keeps the salt of its
commitment and the last vitals batch it read (``upto_seq``), so the aggregates can be
computed again from the encrypted vitals while they exist, and never once they are erased.
"""

from __future__ import annotations

import sqlalchemy as sa

from ..db.dialect import Seconds

__all__ = ["evaluations", "metadata", "programs", "rewards"]

metadata = sa.MetaData()

programs = sa.Table(
    "incentive_programs",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),  # SHA-256 hex of ``canonical``
    sa.Column("canonical", sa.Text, nullable=False),
    sa.Column("publisher", sa.Text, nullable=False),
    sa.Column("published", Seconds, nullable=False),
    sa.Column("ledger_index", sa.BigInteger, nullable=False),
    sa.Index("incentive_programs_publisher", "publisher"),
)

evaluations = sa.Table(
    "incentive_evaluations",
    metadata,
    sa.Column("patient", sa.Text, primary_key=True),
    sa.Column("program", sa.Text, primary_key=True),
    sa.Column("period", sa.Integer, primary_key=True),
    sa.Column("result", sa.Integer, nullable=False),  # a bool rule's result as 0/1
    sa.Column("is_bool", sa.Boolean, nullable=False),
    sa.Column("points", sa.Integer, nullable=False),
    sa.Column("salt", sa.LargeBinary, nullable=False),
    sa.Column("commitment", sa.Text, nullable=False),
    sa.Column("upto_seq", sa.BigInteger, nullable=False),
    sa.Column("evaluated", Seconds, nullable=False),
    sa.Column("ledger_index", sa.BigInteger),  # NULL: reserved, being appended
)

rewards = sa.Table(
    "incentive_rewards",
    metadata,
    sa.Column("status_idx", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.Text, nullable=False, unique=True),
    sa.Column("patient", sa.Text, nullable=False),
    sa.Column("program", sa.Text, nullable=False),
    sa.Column("period", sa.Integer, nullable=False),
    sa.Column("credential", sa.Text, nullable=False),
    sa.Column("issued", Seconds, nullable=False),
    sa.Column("revoked", Seconds),
    sa.Column("ledger_index", sa.BigInteger),
    sa.UniqueConstraint("patient", "program", "period", name="incentive_rewards_once"),
    sa.Index("incentive_rewards_patient", "patient"),
)
