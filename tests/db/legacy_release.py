"""A data dir as the release before the database layer wrote it: the stores' own SQL,
copied from gateway/consent/store.py and gateway/sessions/store.py at 12e185b (and
gateway/vitals/store.py at 00d7832, with its key wrapping and AES-GCM sealing), run with the
stdlib driver. ``python -m tests.db.legacy_release DIR`` makes one by hand."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import aes_key_wrap

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

VITALS_SCHEMA = """
CREATE TABLE IF NOT EXISTS patient_keys (
    patient TEXT PRIMARY KEY, wrapped BLOB NOT NULL, created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS erased (
    patient TEXT PRIMARY KEY, time INTEGER NOT NULL, event BLOB NOT NULL,
    ledger_index INTEGER);
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    device TEXT NOT NULL, batch_id TEXT NOT NULL, patient TEXT NOT NULL,
    received INTEGER NOT NULL, tag BLOB NOT NULL, nonce BLOB, ciphertext BLOB,
    event BLOB NOT NULL, size_hint INTEGER NOT NULL, ledger_index INTEGER,
    UNIQUE (device, batch_id));
CREATE INDEX IF NOT EXISTS batches_patient ON batches (patient, received);
CREATE INDEX IF NOT EXISTS batches_pending ON batches (ledger_index) WHERE ledger_index IS NULL;
"""
#: keys/vitals-master.key of the old data dir.
VITALS_MASTER = bytes(range(32))
#: (device, batch_id, patient, received, content, ledger_index or None: pending)
VITALS = [
    ("dev:1", "b1", "pat:1", 1_700_000_010, {"readings": [{"code": "8867-4", "value": 61}]}, 4),
    ("dev:1", "b2", "pat:1", 1_700_000_020, {"readings": [{"code": "8867-4", "value": 62}]}, 5),
    ("dev:2", "b1", "pat:2", 1_700_000_030, {"readings": [{"code": "2708-6", "value": 97}]}, 6),
    ("dev:2", "b2", "pat:2", 1_700_000_040, {"readings": [{"code": "2708-6", "value": 98}]}, None),
]
#: (patient, time, event, ledger_index): an erased patient's tombstone.
ERASED = [("pat:3", 1_700_000_050, b'{"type":"patient.erased"}', 7)]

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
    """consent.db, sessions.db and vitals.db (with keys/vitals-master.key) holding the
    records above, as the old stores wrote them."""
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
    _vitals(data_dir / "vitals.db")


def _vitals(path: Path) -> None:
    """vitals.db as the old VitalsStore wrote it: keys wrapped by VITALS_MASTER, one AES-GCM
    ciphertext per batch bound to (patient, device, batch id)."""
    db = _db(path)
    db.execute("PRAGMA secure_delete = ON")
    db.executescript(VITALS_SCHEMA)
    keys: dict[str, bytes] = {}
    for device, batch_id, patient, received, content, index in VITALS:
        if patient not in keys:
            keys[patient] = AESGCM.generate_key(bit_length=256)
            wrapped = aes_key_wrap(VITALS_MASTER, keys[patient])
            db.execute("INSERT INTO patient_keys VALUES (?, ?, ?)", (patient, wrapped, received))
        nonce = os.urandom(12)
        aad = f"telegate-vitals/v1\n{patient}\n{device}\n{batch_id}".encode()
        ct = AESGCM(keys[patient]).encrypt(nonce, json.dumps(content).encode(), aad)
        event = json.dumps({"batch_id": batch_id}).encode()
        db.execute(
            "INSERT OR IGNORE INTO batches (device, batch_id, patient, received, "
            "tag, nonce, ciphertext, event, size_hint) VALUES (?,?,?,?,?,?,?,?,?)",
            (device, batch_id, patient, received, os.urandom(32), nonce, ct, event, 3),
        )
        db.execute(
            "UPDATE batches SET ledger_index = ? WHERE device = ? AND batch_id = ?",
            (index, device, batch_id),
        )
    for tomb in ERASED:
        db.execute("INSERT INTO erased VALUES (?, ?, ?, ?)", tomb)
    db.close()
    keyfile = path.parent / "keys" / "vitals-master.key"
    keyfile.parent.mkdir(mode=0o700, exist_ok=True)
    keyfile.write_bytes(VITALS_MASTER)
    keyfile.chmod(0o600)


if __name__ == "__main__":
    make_data_dir(Path(sys.argv[1]))
