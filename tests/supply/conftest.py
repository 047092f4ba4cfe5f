"""The supply tests' fixtures: a real gateway (SQLite files, or a fresh PostgreSQL schema
when TELEGATE_TEST_DATABASE_URL is set), and the store on both engines."""

from __future__ import annotations

from tests.db.conftest import db, ledger, pg_base, pg_url  # noqa: F401 (fixtures)
from tests.gateway.conftest import (  # noqa: F401 (fixtures)
    _pg_schemas,
    client,
    config,
    live_gateway,
)
