"""One database layer, two engines (docs/database.md): SQLAlchemy Core tables and queries,
Alembic migrations, SQLite files by default and PostgreSQL (psycopg 3) at scale.

Stores take an ``Engine`` from ``Database.open``; they never choose a file or a URL. The
names below load on first use, so reading the config (``gateway.db.url``) does not import
SQLAlchemy and Alembic.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .database import Database, DatabaseUnavailable
    from .dialect import JSONColumn, Seconds, for_update, reading, upsert, writing
    from .migrate import SCHEMAS, SchemaMismatch
    from .url import redact

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

_HOME = {
    "Database": "database",
    "DatabaseUnavailable": "database",
    "JSONColumn": "dialect",
    "Seconds": "dialect",
    "for_update": "dialect",
    "reading": "dialect",
    "upsert": "dialect",
    "writing": "dialect",
    "SCHEMAS": "migrate",
    "SchemaMismatch": "migrate",
    "redact": "url",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
