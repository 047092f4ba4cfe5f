"""A data dir as the release before the database layer wrote it: the stores' own SQL,
copied from gateway/consent/store.py and gateway/sessions/store.py at 12e185b, run with the
stdlib driver. ``python -m tests.db.legacy_release DIR`` makes one by hand."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

CONSENT_SCHEMA = """
CREATE TABLE IF NOT EXISTS consents (
    id TEXT PRIMARY KEY, patient TEXT NOT NULL, grantee TEXT NOT NULL,
    scopes TEXT NOT NULL, created INTEGER NOT NULL, until INTEGER NOT NULL,
    revoked INTEGER);
CREATE INDEX IF NOT EXISTS consents_patient ON consents (patient);
CREATE INDEX IF NOT EXISTS consents_grantee ON consents (grantee);
CREATE TABLE IF NOT EXISTS emergencies (
    id TEXT PRIMARY KEY, provider TEXT NOT NULL, patient TEXT NOT NULL,
    reason TEXT NOT NULL, created INTEGER NOT NULL, until INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS emergencies_pair ON emergencies (provider, patient);
"""

SESSIONS_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, patient TEXT NOT NULL,
provider TEXT NOT NULL, state TEXT NOT NULL, created INTEGER NOT NULL,
updated INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS sessions_provider ON sessions (provider, state);
CREATE INDEX IF NOT EXISTS sessions_patient ON sessions (patient, state);
"""

#: (id, patient, grantee, scopes, created, until, revoked)
CONSENTS = [
    ("c1", "pat:1", "prov:1", ["call", "vitals.read"], 1_700_000_000, 1_800_000_000, None),
    ("c2", "pat:1", "role:provider", ["call"], 1_700_000_100, 1_800_000_000, 1_700_000_200),
    ("c3", "pat:2", "prov:1", ["devices", "vitals.stream"], 1_700_000_300, 1_700_100_000, None),
]
#: (id, provider, patient, reason, created, until)
EMERGENCIES = [("e1", "prov:1", "pat:3", "unresponsive in call", 1_700_000_400, 1_700_004_000)]
#: (id, patient, provider, state, created, updated)
SESSIONS = [
    ("s1", "pat:1", "prov:1", "ended", 1_700_000_000, 1_700_000_900),
    ("s2", "pat:1", "prov:1", "waiting", 1_700_001_000, 1_700_001_010),
    ("s3", "pat:2", "prov:2", "scheduled", 1_700_002_000, 1_700_002_000),
]


def _db(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    return db


def make_data_dir(data_dir: Path) -> None:
    """consent.db and sessions.db holding the records above, as the old stores wrote them."""
    data_dir.mkdir(parents=True, exist_ok=True)
    db = _db(data_dir / "consent.db")
    db.executescript(CONSENT_SCHEMA)
    for c in CONSENTS:
        db.execute(
            "INSERT INTO consents VALUES (?, ?, ?, ?, ?, ?, ?)", (*c[:3], json.dumps(c[3]), *c[4:])
        )
    for e in EMERGENCIES:
        db.execute("INSERT INTO emergencies VALUES (?, ?, ?, ?, ?, ?)", e)
    db.close()
    db = _db(data_dir / "sessions.db")
    for stmt in SESSIONS_SCHEMA.split(";"):
        if stmt.strip():
            db.execute(stmt)
    for s in SESSIONS:
        db.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?)", s)
    db.close()


if __name__ == "__main__":
    make_data_dir(Path(sys.argv[1]))
