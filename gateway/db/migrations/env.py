"""Alembic's environment for telegate. Never run by hand: ``gateway.db.migrate`` hands it an
open connection inside a transaction (``config.attributes["connection"]``), so the
migrations and the version row commit together, or not at all."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("run migrations with `telegate db upgrade`, not the alembic command")

context.configure(
    connection=connection,
    # One history for both engines: SQLite's ALTER TABLE is limited, batch mode rewrites
    # the table there and is a plain ALTER on PostgreSQL.
    render_as_batch=True,
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations()
