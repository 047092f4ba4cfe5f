"""Encrypted vitals at rest, in SQLite (``<data_dir>/vitals.db``).

Each patient has a random AES-256 data key, stored only wrapped (RFC 3394 AES key wrap) by
the master key in the key directory. A batch is one AES-GCM ciphertext whose associated
data binds it to its patient, device and batch id, so rows cannot be swapped. Nothing about
a reading is in plain text: not the value, not the code, not its time.

Erasure (crypto-shredding) deletes the wrapped key and the ciphertexts with
``secure_delete`` on and truncates the WAL, so no copy of the key stays in the files.

All methods block: call them from a thread.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap, aes_key_wrap

__all__ = ["Erased", "StoredBatch", "VitalsStore"]

_SCHEMA = """
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
KEY_CACHE_MAX = 4096


class Erased(Exception):
    """The patient's data was erased: their key no longer exists."""


@dataclass(frozen=True, slots=True)
class StoredBatch:
    seq: int
    device: str
    batch_id: str
    patient: str
    received: int
    tag: bytes
    ledger_index: int | None


def _aad(patient: str, device: str, batch_id: str) -> bytes:
    return f"telegate-vitals/v1\n{patient}\n{device}\n{batch_id}".encode()


class VitalsStore:
    def __init__(self, path: Path, master_key: bytes) -> None:
        if len(master_key) != 32:
            raise ValueError("the vitals master key is 32 bytes")
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        # Deleted content is overwritten, so an erased key is not left in free pages.
        db.execute("PRAGMA secure_delete = ON")
        db.executescript(_SCHEMA)
        self._db = db
        self._lock = threading.Lock()
        self._master = master_key
        self._keys: OrderedDict[str, bytes] = OrderedDict()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- keys ------------------------------------------------------------------
    def _key(self, patient: str, now: int, create: bool) -> bytes:
        """The patient's data key (unwrapped), created on first use. Raises Erased."""
        hit = self._keys.get(patient)
        if hit is not None:
            self._keys.move_to_end(patient)
            return hit
        if self._db.execute("SELECT 1 FROM erased WHERE patient = ?", (patient,)).fetchone():
            raise Erased(patient)
        row = self._db.execute(
            "SELECT wrapped FROM patient_keys WHERE patient = ?", (patient,)
        ).fetchone()
        if row is not None:
            key = aes_key_unwrap(self._master, row[0])
        elif create:
            key = AESGCM.generate_key(bit_length=256)
            self._db.execute(
                "INSERT INTO patient_keys VALUES (?, ?, ?)",
                (patient, aes_key_wrap(self._master, key), now),
            )
        else:
            raise KeyError(patient)
        self._keys[patient] = key
        if len(self._keys) > KEY_CACHE_MAX:
            self._keys.popitem(last=False)
        return key

    # -- batches -----------------------------------------------------------------
    def find(self, device: str, batch_id: str) -> StoredBatch | None:
        with self._lock:
            row = self._db.execute(
                "SELECT seq, device, batch_id, patient, received, tag, ledger_index "
                "FROM batches WHERE device = ? AND batch_id = ?",
                (device, batch_id),
            ).fetchone()
        return None if row is None else StoredBatch(*row)

    def seal(
        self,
        patient: str,
        device: str,
        batch_id: str,
        payload: bytes,
        content: dict[str, Any],
        now: int,
    ) -> tuple[bytes, bytes, bytes]:
        """(tag, nonce, ciphertext) of a batch under the patient's key (created on first
        use). The tag identifies the signed ``payload`` for idempotency: an HMAC under the
        patient's key, so it means nothing once the key is erased. Raises Erased."""
        with self._lock:
            key = self._key(patient, now, create=True)
        tag = hmac.new(key, payload, hashlib.sha256).digest()
        nonce = os.urandom(12)
        plain = json.dumps(content, separators=(",", ":")).encode()
        return tag, nonce, AESGCM(key).encrypt(nonce, plain, _aad(patient, device, batch_id))

    def commit(
        self, rows: list[tuple[Any, ...]], indexed: list[tuple[int, str, str]]
    ) -> list[bool]:
        """One transaction, one fsync (group commit): record the ledger indexes of batches
        appended since the last commit — (index, device, batch_id); not waited on by any
        request, since a lost update is found again by :meth:`pending` — then insert sealed
        batches. Each row: device, batch_id, patient, received, tag, nonce, ciphertext,
        event, size_hint. Returns, per row, False when (device, batch_id) already existed or
        the patient was erased meanwhile."""
        out = []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "UPDATE batches SET ledger_index = ? WHERE device = ? AND batch_id = ?",
                    indexed,
                )
                for r in rows:
                    erased = self._db.execute("SELECT 1 FROM erased WHERE patient = ?", (r[2],))
                    if erased.fetchone():
                        out.append(False)
                        continue
                    cur = self._db.execute(
                        "INSERT OR IGNORE INTO batches (device, batch_id, patient, received, "
                        "tag, nonce, ciphertext, event, size_hint) VALUES (?,?,?,?,?,?,?,?,?)",
                        r,
                    )
                    out.append(cur.rowcount == 1)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return out

    def set_indexes(self, indexed: list[tuple[int, str, str]]) -> None:
        self.commit([], indexed)

    def pending(self) -> list[tuple[str, str, bytes, int]]:
        """Batches stored but not known to be on the ledger: device, batch_id, event bytes,
        the ledger size when stored (the event, if appended, is at or after it)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT device, batch_id, event, size_hint FROM batches "
                "WHERE ledger_index IS NULL ORDER BY seq"
            ).fetchall()
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    def read(
        self, patient: str, received_from: int, received_to: int, after: int, limit: int
    ) -> list[tuple[StoredBatch, dict[str, Any]]]:
        """Decrypted batches of a patient received in a time window, in arrival order,
        starting after sequence number ``after``. Raises Erased."""
        with self._lock:
            try:
                key = self._key(patient, 0, create=False)
            except KeyError:
                return []
            rows = self._db.execute(
                "SELECT seq, device, batch_id, patient, received, tag, ledger_index, nonce, "
                "ciphertext FROM batches WHERE patient = ? AND received BETWEEN ? AND ? "
                "AND seq > ? AND ledger_index IS NOT NULL ORDER BY seq LIMIT ?",
                (patient, received_from, received_to, after, limit),
            ).fetchall()
        aead = AESGCM(key)
        out = []
        for r in rows:
            meta = StoredBatch(*r[:7])
            plain = aead.decrypt(r[7], r[8], _aad(patient, meta.device, meta.batch_id))
            out.append((meta, json.loads(plain)))
        return out

    # -- erasure -------------------------------------------------------------------
    def erased(self, patient: str) -> tuple[int, int | None] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT time, ledger_index FROM erased WHERE patient = ?", (patient,)
            ).fetchone()
        return None if row is None else (row[0], row[1])

    def erase(self, patient: str, event: Callable[[int], bytes], now: int) -> tuple[int, bytes]:
        """Destroy the patient's key and ciphertexts and leave a tombstone holding the
        erasure's ledger event (``event(batches)``), recorded by the caller next. Returns
        how many batches became unreadable, and the event. Raises Erased if already done."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if self._db.execute(
                    "SELECT 1 FROM erased WHERE patient = ?", (patient,)
                ).fetchone():
                    raise Erased(patient)
                self._db.execute("DELETE FROM patient_keys WHERE patient = ?", (patient,))
                n = self._db.execute(
                    "UPDATE batches SET nonce = NULL, ciphertext = NULL WHERE patient = ?",
                    (patient,),
                ).rowcount
                ev = event(n)
                self._db.execute("INSERT INTO erased VALUES (?, ?, ?, NULL)", (patient, now, ev))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._keys.pop(patient, None)
            # The WAL still holds the pages written before; fold it in and truncate it.
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return int(n), ev

    def set_erasure_index(self, patient: str, index: int) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE erased SET ledger_index = ? WHERE patient = ?", (index, patient)
            )

    def unrecorded_erasures(self) -> list[tuple[str, bytes]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT patient, event FROM erased WHERE ledger_index IS NULL"
            ).fetchall()
        return [(r[0], r[1]) for r in rows]
