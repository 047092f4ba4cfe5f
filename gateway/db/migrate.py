"""Alembic, driven from code: upgrade a store's schema, read its revision, refuse a
mismatch. One history (``migrations/versions``) with a branch per store; on SQLite each
store's file carries only its branch, on PostgreSQL one version table carries them all."""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy.engine import Connection, Engine

from ..errors import GatewayError
from .dialect import writing

__all__ = ["SCHEMAS", "Schema", "SchemaMismatch", "check", "current", "head", "upgrade"]

log = logging.getLogger("telegate.db")
# Alembic says "Context impl SQLiteImpl" and the like at INFO for every store at every start;
# what changed is logged below, once, as telegate.db "migrated".
logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
#: Serializes ``db upgrade`` runs from several replicas on one PostgreSQL database.
PG_MIGRATION_LOCK = 0x7465_6C65_6761_7465  # "telegate"


class SchemaMismatch(GatewayError):
    """The database's schema is not the one this release's code reads and writes."""

    status = 503
    slug = "schema-mismatch"
    title = "Database schema mismatch"


@dataclass(frozen=True, slots=True)
class Schema:
    """A store's branch of the history. ``adopt`` is the revision that a file made before
    Alembic (by ``CREATE TABLE IF NOT EXISTS``) is at; ``legacy`` names its tables and their
    columns, checked before it is stamped there."""

    name: str
    adopt: str
    legacy: Mapping[str, frozenset[str]]
    #: False for a store that another process owns when embedded (the witness server keeps
    #: ``state.db`` in its own data dir): a gateway's data dir gets no file for it.
    in_data_dir: bool = True


SCHEMAS: dict[str, Schema] = {
    s.name: s
    for s in (
        Schema(
            "consent",
            "consent_0001",
            {
                "consents": frozenset(
                    {"id", "patient", "grantee", "scopes", "created", "until", "revoked"}
                ),
                "emergencies": frozenset(
                    {"id", "provider", "patient", "reason", "created", "until"}
                ),
            },
        ),
        Schema(
            "sessions",
            "sessions_0001",
            {"sessions": frozenset({"id", "patient", "provider", "state", "created", "updated"})},
        ),
        Schema(
            "identity",
            "identity_0001",
            {  # as sqlite-utils created them (gateway/auth/store.py before this layer)
                "subjects": frozenset(
                    {"id", "role", "jkt", "jwk", "created", "revoked", "patient", "attrs"}
                ),
                "invites": frozenset(
                    {"code_hash", "role", "created_by", "created", "expires", "used", "attrs"}
                ),
                "tokens": frozenset(
                    {"jti", "sub", "role", "exp", "status_idx", "ledger_index", "revoked"}
                ),
                "client_jtis": frozenset({"key", "exp"}),
            },
        ),
        Schema(
            "federation",
            "federation_0001",
            {
                "checkpoints": frozenset({"log", "size", "note"}),
                "forks": frozenset({"log", "seen", "a", "b"}),
                "pins": frozenset({"issuer", "jwks", "fetched"}),
                "exchanged": frozenset(
                    {
                        "jti",
                        "sub",
                        "status_idx",
                        "exp",
                        "peer",
                        "foreign_jti",
                        "status_uri",
                        "foreign_idx",
                    }
                ),
            },
        ),
        Schema(
            "cosignatures",
            "cosignatures_0001",
            {
                "checkpoints": frozenset({"size", "note"}),
                "cosignatures": frozenset({"size", "witness", "timestamp", "line"}),
                "witnesses": frozenset({"witness", "size"}),
            },
        ),
        Schema(
            "witness",
            "witness_0001",
            {
                "logs": frozenset({"origin", "size", "root", "timestamp", "note"}),
                "forks": frozenset({"origin", "size", "root", "seen", "note"}),
            },
            in_data_dir=False,
        ),
        # Replicas' heartbeats (gateway/replicas): only a shared database has several.
        Schema("replicas", "replicas_0001", {}, in_data_dir=False),
        Schema(
            "vitals",
            "vitals_0001",
            {
                "patient_keys": frozenset({"patient", "wrapped", "created"}),
                "erased": frozenset({"patient", "time", "event", "ledger_index"}),
                "batches": frozenset(
                    {
                        "seq",
                        "device",
                        "batch_id",
                        "patient",
                        "received",
                        "tag",
                        "nonce",
                        "ciphertext",
                        "event",
                        "size_hint",
                        "ledger_index",
                    }
                ),
            },
        ),
        # Supply-chain custody (gateway/supply): no file of it predates Alembic.
        Schema("supply", "supply_0001", {}),
        # Incentive programs, evaluations and rewards (gateway/incentives): no pre-Alembic file.
        Schema("incentives", "incentives_0001", {}),
    )
}


def _alembic(conn: Connection | None = None) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


@functools.lru_cache(maxsize=1)
def _script() -> ScriptDirectory:
    # Parsed once a process: each parse imports every revision file (about 70 ms), and a
    # fresh database runs one upgrade per store.
    return ScriptDirectory.from_config(_alembic())


def _upgrade_to(conn: Connection, dest: str) -> None:
    """What ``alembic upgrade dest`` does (alembic.command.upgrade), on the parsed history:
    env.py runs the migrations on ``conn``, in its transaction."""
    script = _script()

    def revs(rev: Any, context: Any) -> Any:
        return script._upgrade_revs(dest, rev)

    with EnvironmentContext(_alembic(conn), script, fn=revs, as_sql=False, destination_rev=dest):
        script.run_env()


def head(name: str) -> str:
    """The revision this release's code expects for store ``name``."""
    rev = _script().get_revision(f"{name}@head")
    assert rev is not None
    return rev.revision


def _branch(script: ScriptDirectory, name: str) -> set[str]:
    return {r.revision for r in script.walk_revisions("base", f"{name}@head")}


def _current(conn: Connection, name: str, script: ScriptDirectory) -> str | None:
    """The store's revision in the database; raises SchemaMismatch on a revision this code
    does not know (a newer release wrote it)."""
    ours = _branch(script, name)
    known = {r.revision for r in script.walk_revisions()}
    found = MigrationContext.configure(conn).get_current_heads()
    unknown = sorted(h for h in found if h not in known)
    if unknown:
        raise SchemaMismatch(
            f"the database is at revision {', '.join(unknown)}, newer than this telegate "
            "knows: run the release that wrote it (or newer)"
        )
    mine = [h for h in found if h in ours]
    return mine[0] if mine else None


def current(engine: Engine) -> dict[str, str | None]:
    """Every store's revision in ``engine``'s database (None: not created yet)."""
    script = _script()
    with engine.connect() as conn:
        return {name: _current(conn, name, script) for name in SCHEMAS}


def _adopt(conn: Connection, schema: Schema) -> bool:
    """Stamp a pre-Alembic database at ``schema.adopt`` if it has the store's tables."""
    inspector = sa.inspect(conn)
    present = [t for t in schema.legacy if inspector.has_table(t)]
    if not present:
        return False
    for table in schema.legacy:
        cols = {c["name"] for c in inspector.get_columns(table)} if table in present else set()
        if cols != schema.legacy[table]:
            raise SchemaMismatch(
                f"the {schema.name} store's table {table} is not the one telegate created "
                f"(columns {sorted(cols)}); refusing to adopt it"
            )
    command.stamp(_alembic(conn), schema.adopt)
    return True


def upgrade(engine: Engine, name: str) -> str:
    """Bring store ``name`` to this release's head, in one transaction, adopting a database
    made before Alembic; returns the revision. Raises SchemaMismatch."""
    script = _script()
    with writing(engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(PG_MIGRATION_LOCK)))
        before = _current(conn, name, script)
        # Only SQLite files predate Alembic: a PostgreSQL database never held the old tables.
        if before is None and conn.dialect.name == "sqlite" and _adopt(conn, SCHEMAS[name]):
            log.info("adopted a pre-Alembic store", extra={"fields": {"store": name}})
        try:
            _upgrade_to(conn, f"{name}@head")
        except CommandError as e:
            raise SchemaMismatch(f"{name}: {e}") from e
        after = _current(conn, name, script)
    assert after is not None
    if after != before:
        log.info("migrated", extra={"fields": {"store": name, "from": before, "to": after}})
    return after


def check(engine: Engine, name: str) -> None:
    """Refuse (SchemaMismatch) unless store ``name`` is at this release's head."""
    want = head(name)
    with engine.connect() as conn:
        have = _current(conn, name, _script())
    if have != want:
        at = f"revision {have}" if have else "no schema yet"
        raise SchemaMismatch(
            f"the {name} schema is at {at}, this release needs {want}: run `telegate db upgrade`"
        )
