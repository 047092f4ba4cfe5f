"""A data dir as the release before the database layer wrote it: the stores' own SQL,
copied from gateway/consent/store.py and gateway/sessions/store.py at 12e185b (and the
identity store's, gateway/auth/store.py at 00d7832: the DDL sqlite-utils issued for it;
gateway/vitals/store.py at 00d7832, with its key wrapping and AES-GCM sealing), run with the
stdlib driver. ``python -m tests.db.legacy_release DIR`` makes one by hand."""

from __future__ import annotations

import base64
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


# What sqlite-utils 4 issued for IdentityStore._migrate (read back from sqlite_master).
IDENTITY_SCHEMA = """
CREATE TABLE "subjects" (
   "id" TEXT PRIMARY KEY,
   "role" TEXT NOT NULL,
   "jkt" TEXT NOT NULL,
   "jwk" TEXT NOT NULL,
   "created" INTEGER NOT NULL,
   "revoked" INTEGER,
   "patient" TEXT,
   "attrs" TEXT
);
CREATE UNIQUE INDEX "idx_subjects_jkt"
    ON "subjects" ("jkt");
CREATE TABLE "invites" (
   "code_hash" TEXT PRIMARY KEY,
   "role" TEXT NOT NULL,
   "created_by" TEXT NOT NULL,
   "created" INTEGER NOT NULL,
   "expires" INTEGER NOT NULL,
   "used" INTEGER,
   "attrs" TEXT
);
CREATE TABLE "tokens" (
   "jti" TEXT PRIMARY KEY,
   "sub" TEXT NOT NULL,
   "role" TEXT NOT NULL,
   "exp" INTEGER NOT NULL,
   "status_idx" INTEGER NOT NULL,
   "ledger_index" INTEGER NOT NULL,
   "revoked" INTEGER
);
CREATE INDEX "idx_tokens_sub"
    ON "tokens" ("sub");
CREATE UNIQUE INDEX "idx_tokens_status_idx"
    ON "tokens" ("status_idx");
CREATE TABLE "client_jtis" (
   "key" TEXT PRIMARY KEY,
   "exp" INTEGER
);
CREATE INDEX "idx_client_jtis_exp"
    ON "client_jtis" ("exp");
"""

_JWK = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
#: (id, role, jkt, jwk, created, revoked, patient, attrs)
SUBJECTS = [
    ("adm:1", "admin", "jkt-adm", _JWK, 1_700_000_000, None, None, {}),
    ("pat:1", "patient", "jkt-pat1", _JWK, 1_700_000_010, None, None, {"display_name": "Ana"}),
    ("dev:1", "device", "jkt-dev1", _JWK, 1_700_000_020, None, "pat:1", {"model": "Oxi 2"}),
    ("pat:2", "patient", "jkt-pat2", _JWK, 1_700_000_030, 1_700_000_500, None, {}),
    ("dev:2", "device", "jkt-dev2", _JWK, 1_700_000_040, None, "pat:2", {"model": "BP 1"}),
]
#: (code_hash, role, created_by, created, expires, used, attrs)
INVITES = [
    ("h1", "provider", "adm:1", 1_700_000_000, 1_900_000_000, None, {"npi": "1234567893"}),
    ("h2", "patient", "adm:1", 1_700_000_000, 1_900_000_000, 1_700_000_005, {}),
]
#: (jti, sub, role, exp, status_idx, ledger_index, revoked)
TOKENS = [
    ("t1", "adm:1", "admin", 1_900_000_000, 0, 3, None),
    ("t2", "pat:2", "patient", 1_900_000_000, 1, 5, 1_700_000_500),
    ("t3", "dev:1", "device", 1_900_000_000, 7, 9, None),
]
#: (key, exp)
CLIENT_JTIS = [("k1", 1_900_000_000)]


def make_identity_db(data_dir: Path) -> None:
    """identity.db holding the records above, written with the old store's INSERTs."""
    db = _db(data_dir / "identity.db")
    db.executescript(IDENTITY_SCHEMA)
    for sid, role, jkt, jwk, created, revoked, patient, attrs in SUBJECTS:
        db.execute(
            "INSERT INTO subjects (id, role, jkt, jwk, created, revoked, patient, attrs) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (sid, role, jkt, json.dumps(jwk), created, revoked, patient, json.dumps(attrs)),
        )
    for code, role, by, created, expires, used, attrs in INVITES:
        db.execute(
            "INSERT INTO invites (code_hash, role, created_by, created, expires, used, attrs) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (code, role, by, created, expires, used, json.dumps(attrs)),
        )
    db.executemany(
        "INSERT INTO tokens (jti, sub, role, exp, status_idx, ledger_index, revoked) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        TOKENS,
    )
    db.executemany("INSERT INTO client_jtis (key, exp) VALUES (?, ?)", CLIENT_JTIS)
    db.close()


if __name__ == "__main__":
    make_data_dir(Path(sys.argv[1]))
    make_identity_db(Path(sys.argv[1]))


# The federation, cosignature and witness stores, copied from gateway/federation/state.py,
# ledger/cosignatures.py and gateway/witness/store.py at 00d7832 (the witness keeps its file
# as state.db in its own data dir).

FEDERATION_SCHEMA = """
CREATE TABLE IF NOT EXISTS checkpoints (
    log TEXT PRIMARY KEY,      -- the peer's log vkey
    size INTEGER NOT NULL,
    note BLOB NOT NULL          -- as accepted: log signature and cosignatures
);
CREATE TABLE IF NOT EXISTS forks (
    log TEXT PRIMARY KEY,
    seen INTEGER NOT NULL,
    a BLOB NOT NULL,            -- both signed notes, smaller tree first
    b BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS pins (
    issuer TEXT PRIMARY KEY,
    jwks TEXT NOT NULL,
    fetched INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS exchanged (
    jti TEXT PRIMARY KEY,       -- a token issued here by exchange
    sub TEXT NOT NULL,
    status_idx INTEGER NOT NULL, -- its bit in this gateway's status list
    exp INTEGER NOT NULL,
    peer TEXT NOT NULL,
    foreign_jti TEXT NOT NULL,
    status_uri TEXT NOT NULL,   -- the peer token's status list entry
    foreign_idx INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS exchanged_exp ON exchanged (exp);
"""

COSIGNATURES_SCHEMA = """
CREATE TABLE IF NOT EXISTS checkpoints (size INTEGER PRIMARY KEY, note BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS cosignatures (
    size INTEGER NOT NULL,
    witness TEXT NOT NULL,   -- the witness's vkey: a new key is a new witness
    timestamp INTEGER NOT NULL,
    line BLOB NOT NULL,
    PRIMARY KEY (size, witness)
);
CREATE TABLE IF NOT EXISTS witnesses (witness TEXT PRIMARY KEY, size INTEGER NOT NULL);
"""

WITNESS_SCHEMA = """
CREATE TABLE IF NOT EXISTS logs (
    origin TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    root BLOB NOT NULL,
    timestamp INTEGER NOT NULL,
    note BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS forks (
    origin TEXT NOT NULL,
    size INTEGER NOT NULL,
    root BLOB NOT NULL,
    seen INTEGER NOT NULL,
    note BLOB NOT NULL,
    PRIMARY KEY (origin, size, root)
);
"""

#: federation.db: (log, size, note)
PEER_CHECKPOINTS = [("b.example/log+0a1b2c3d+AQ", 17, b"b.example/log\n17\nroot\n\n- sig\n")]
#: (log, seen, a, b)
PEER_FORKS = [("c.example/log+0b1c2d3e+AQ", 1_700_000_500, b"note a", b"note b")]
#: (issuer, jwks, fetched)
PINS = [("https://b.example", '{"keys": []}', 1_700_000_600)]
#: (jti, sub, status_idx, exp, peer, foreign_jti, status_uri, foreign_idx)
EXCHANGED = [
    ("x1", "fed:b:1", 7, 1_700_003_600, "b", "fj1", "https://b.example/status/1", 3),
    ("x2", "fed:b:2", 8, 1_700_007_200, "b", "fj2", "https://b.example/status/1", 4),
]


def _sig(name: str, fill: int) -> bytes:
    """A signed-note signature line (a key hash and a signature, made up)."""
    return f"\u2014 {name} ".encode() + base64.b64encode(bytes([fill]) * 68) + b"\n"


#: cosignatures.db: (size, note), (size, witness, timestamp, line), (witness, size)
COSIGNED = [(s, f"log\n{s}\nroot{s}\n\n".encode() + _sig("log", s)) for s in (5, 9)]
LINES = [
    (5, "w0+vkey", 1_700_000_010, _sig("w0", 50)),
    (9, "w0+vkey", 1_700_000_020, _sig("w0", 90)),
    (9, "w1+vkey", 1_700_000_021, _sig("w1", 91)),
]
WITNESS_SIZES = [("w0+vkey", 9), ("w1+vkey", 9)]
#: the witness's state.db: (origin, size, root, timestamp, note), (origin, size, root, seen, note)
WITNESSED = [("a.example/log", 42, b"r" * 32, 1_700_000_700, b"a.example/log\n42\n...")]
WITNESS_FORKS = [("a.example/log", 40, b"f" * 32, 1_700_000_650, b"forked note")]


def _fill(path: Path, schema: str, rows: dict[str, list[tuple[object, ...]]]) -> None:
    db = _db(path)
    db.executescript(schema)
    for table, values in rows.items():
        for v in values:
            db.execute(f"INSERT INTO {table} VALUES ({', '.join('?' * len(v))})", v)
    db.close()


def make_federation_files(data_dir: Path, witness_dir: Path) -> None:
    """federation.db and cosignatures.db in ``data_dir`` and a witness's state.db in
    ``witness_dir``, holding the records above, as the old stores wrote them."""
    data_dir.mkdir(parents=True, exist_ok=True)
    witness_dir.mkdir(parents=True, exist_ok=True)
    _fill(
        data_dir / "federation.db",
        FEDERATION_SCHEMA,
        {
            "checkpoints": PEER_CHECKPOINTS,
            "forks": PEER_FORKS,
            "pins": PINS,
            "exchanged": EXCHANGED,
        },
    )
    _fill(
        data_dir / "cosignatures.db",
        COSIGNATURES_SCHEMA,
        {"checkpoints": COSIGNED, "cosignatures": LINES, "witnesses": WITNESS_SIZES},
    )
    _fill(witness_dir / "state.db", WITNESS_SCHEMA, {"logs": WITNESSED, "forks": WITNESS_FORKS})
