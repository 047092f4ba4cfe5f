"""One database layer, two engines (docs/database.md): SQLAlchemy Core tables and queries,
Alembic migrations, SQLite files by default and PostgreSQL (psycopg 3) at scale.

Stores take an ``Engine`` from ``Database.open``; they never choose a file or a URL.
"""

from __future__ import annotations

from .database import Database, DatabaseUnavailable
from .dialect import JSONColumn, Seconds, for_update, reading, upsert, writing
from .engine import redact
from .migrate import SCHEMAS, SchemaMismatch

__all__ = [
    "SCHEMAS",
    "Database",
    "DatabaseUnavailable",
    "JSONColumn",
    "SchemaMismatch",
    "Seconds",
    "for_update",
    "reading",
    "redact",
    "upsert",
    "writing",
]
