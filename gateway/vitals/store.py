"""Encrypted vitals at rest, in the ``vitals`` store (``gateway.db``: vitals.db by default,
the shared PostgreSQL database at scale).

Each patient has a random AES-256 data key, stored only wrapped (RFC 3394 AES key wrap) by
the master key in the key directory, which never enters the database. A batch is one
AES-GCM ciphertext whose associated data binds it to its patient, device and batch id, so
rows cannot be swapped. Nothing about a reading is in plain text: not the value, not the
code, not its time.

Erasure (crypto-shredding) deletes the wrapped key, nulls the ciphertexts and writes the
tombstone in one transaction. On SQLite it runs with ``secure_delete`` on and then truncates
the WAL, so no copy of the key stays in the files. PostgreSQL cannot overwrite in place: the
old row versions stay in dead tuples until VACUUM reuses their space, and in the WAL and
backups; they hold the key only wrapped, so without the master key they open nothing
(docs/database.md, "Erasure").

Several replicas may share one PostgreSQL database. What keeps them consistent:

- a batch id is unique per device (a unique constraint, ``INSERT ... ON CONFLICT DO
  NOTHING``), so concurrent posts of one batch through two replicas insert it once;
- a key is created with ``ON CONFLICT DO NOTHING`` and the winner's key is read back, so two
  replicas sealing a new patient's first batches use the same key;
- erasure and key creation touch the same ``patient_keys`` row (erasure locks it, creating a
  placeholder if there is none, then deletes it), and a batch is inserted only while its
  patient's key row exists, read ``FOR SHARE``: a batch either commits before the erasure
  (and is shredded by it) or is refused; a key is never re-created after a tombstone;
- reads check the tombstone in every call, and a process keeps an unwrapped key at most
  ``KEY_CACHE_TTL`` seconds of the injected clock, so an erasure through another replica
  stops this one's reads at once and its writes at their commit;
- pending batches and unrecorded erasures are settled one row at a time under a row lock
  (``FOR UPDATE SKIP LOCKED``; SQLite's ``BEGIN IMMEDIATE``), and only once older than the
  caller's cutoff, so a replica does not re-append another's in-flight event
  (``gateway/vitals/intake.py``).

All methods block: call them from a thread.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap, aes_key_wrap
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from ..db.dialect import reading, upsert, writing
from .tables import batches, erased, patient_keys

__all__ = ["KEY_CACHE_TTL", "Erased", "StoredBatch", "VitalsStore"]

KEY_CACHE_MAX = 4096
#: Seconds (injected clock) an unwrapped key is reused before its row is read again: the
#: 1-second bound on acting on state another replica changed (docs/database.md).
KEY_CACHE_TTL = 1.0

#: (index, device, batch_id): a batch's event found on, or appended to, the ledger.
Indexed = tuple[int, str, str]


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


_b, _k, _x = batches.c, patient_keys.c, erased.c
_ROW = (_b.seq, _b.device, _b.batch_id, _b.patient, _b.received, _b.tag, _b.ledger_index)
_FIND = sa.select(*_ROW).where(_b.device == sa.bindparam("d"), _b.batch_id == sa.bindparam("b"))
_WRAPPED = sa.select(_k.wrapped).where(_k.patient == sa.bindparam("p"))
_TOMBSTONE = sa.select(_x.time, _x.ledger_index).where(_x.patient == sa.bindparam("p"))
# A batch goes in only while its patient's key row exists; FOR SHARE makes an erasure that
# deletes that row wait for this transaction, or this one see the row gone (no-op on SQLite,
# whose BEGIN IMMEDIATE already serializes the two).
_LIVE_KEYS = (
    sa.select(_k.patient)
    .where(_k.patient.in_(sa.bindparam("ps", expanding=True)))
    .order_by(_k.patient)
    .with_for_update(read=True)
)
_SET_INDEX = (  # an UPDATE's parameters may not be named after its columns
    batches.update()
    .where(_b.device == sa.bindparam("d"), _b.batch_id == sa.bindparam("b"))
    .where(_b.ledger_index.is_(None))
    .values(ledger_index=sa.bindparam("i"))
)
_COLS = [
    "device",
    "batch_id",
    "patient",
    "received",
    "tag",
    "nonce",
    "ciphertext",
    "event",
    "size_hint",
]
# INSERT ... ON CONFLICT (device, batch_id) DO NOTHING RETURNING: the rows that went in
# (each dialect's own construct, as gateway.db.dialect.upsert, which returns nothing).
_INSERT = {
    name: ins.on_conflict_do_nothing(index_elements=["device", "batch_id"]).returning(
        _b.device, _b.batch_id
    )
    for name, ins in (
        ("sqlite", sqlite.insert(batches)),
        ("postgresql", postgresql.insert(batches)),
    )
}
_PENDING = sa.select(_b.device, _b.batch_id, _b.event, _b.size_hint).where(
    _b.ledger_index.is_(None)
)
# FOR UPDATE SKIP LOCKED on PostgreSQL: a row another replica is settling is left to it.
_CLAIM = (
    sa.select(_b.seq, _b.event, _b.size_hint)
    .where(_b.ledger_index.is_(None), _b.seq > sa.bindparam("after"))
    .where(_b.received <= sa.bindparam("cutoff"))
    .order_by(_b.seq)
    .limit(1)
    .with_for_update(skip_locked=True)
)
_CLAIM_ONE = _CLAIM.where(_b.device == sa.bindparam("d"), _b.batch_id == sa.bindparam("b"))
_SETTLE = batches.update().where(_b.seq == sa.bindparam("s")).values(ledger_index=sa.bindparam("i"))
_READ = (
    sa.select(*_ROW, _b.nonce, _b.ciphertext)
    .where(_b.patient == sa.bindparam("p"), _b.ciphertext.is_not(None))
    .where(_b.received.between(sa.bindparam("lo"), sa.bindparam("hi")))
    .where(_b.seq > sa.bindparam("after"), _b.ledger_index.is_not(None))
    .order_by(_b.seq)
    .limit(sa.bindparam("n"))
)
# The same read walking back from a position (FHIR's ``_sort=-date`` and ``previous`` links).
_READ_BACK = (
    sa.select(*_ROW, _b.nonce, _b.ciphertext)
    .where(_b.patient == sa.bindparam("p"), _b.ciphertext.is_not(None))
    .where(_b.received.between(sa.bindparam("lo"), sa.bindparam("hi")))
    .where(_b.seq < sa.bindparam("after"), _b.ledger_index.is_not(None))
    .order_by(_b.seq.desc())
    .limit(sa.bindparam("n"))
)
_SHRED = batches.update().where(_b.patient == sa.bindparam("p")).values(nonce=None, ciphertext=None)
_CLAIM_ERASURE = (
    sa.select(_x.patient, _x.event, _x.size_hint)
    .where(_x.ledger_index.is_(None), _x.patient > sa.bindparam("after"))
    .where(_x.time <= sa.bindparam("cutoff"))
    .order_by(_x.patient)
    .limit(1)
    .with_for_update(skip_locked=True)
)
_ERASURE_INDEX = (
    erased.update()
    .where(_x.patient == sa.bindparam("p"), _x.ledger_index.is_(None))
    .values(ledger_index=sa.bindparam("i"))
)


class VitalsStore:
    """``engine`` comes from ``Database.open("vitals")``; ``close`` leaves it open (the
    database layer disposes of it). ``clock`` (seconds) ages the key cache."""

    def __init__(
        self, engine: Engine, master_key: bytes, clock: Callable[[], float] = time.time
    ) -> None:
        if len(master_key) != 32:
            raise ValueError("the vitals master key is 32 bytes")
        self._engine = engine
        self._sqlite = engine.dialect.name == "sqlite"
        self._master = master_key
        self._clock = clock
        self._lock = threading.Lock()  # guards the cache only; the database does the rest
        self._keys: OrderedDict[str, tuple[bytes, float]] = OrderedDict()

    @property
    def shared(self) -> bool:
        """True when other processes may use the same tables (PostgreSQL): an embedded
        SQLite data dir has one gateway, the ledger's writer lock sees to that."""
        return not self._sqlite

    def close(self) -> None:
        with self._lock:
            self._keys.clear()

    # -- keys ------------------------------------------------------------------
    def _key(self, patient: str, create: bool) -> bytes:
        """The patient's data key (unwrapped), created on first use when ``create``. Raises
        Erased, or KeyError when there is none and ``create`` is false."""
        now = self._clock()
        with self._lock:
            hit = self._keys.get(patient)
            if hit is not None and 0 <= now - hit[1] < KEY_CACHE_TTL:
                self._keys.move_to_end(patient)
                return hit[0]
        with reading(self._engine) as conn:
            wrapped = conn.execute(_WRAPPED, {"p": patient}).scalar()
            gone = wrapped is None and conn.execute(_TOMBSTONE, {"p": patient}).first()
        if gone:
            self._forget(patient)
            raise Erased(patient)
        if wrapped is not None:
            key = aes_key_unwrap(self._master, wrapped)
        elif create:
            key = self._create(patient, int(now))
        else:
            raise KeyError(patient)
        with self._lock:
            self._keys[patient] = (key, now)
            self._keys.move_to_end(patient)
            if len(self._keys) > KEY_CACHE_MAX:
                self._keys.popitem(last=False)
        return key

    def _create(self, patient: str, now: int) -> bytes:
        key = AESGCM.generate_key(bit_length=256)
        row = {"patient": patient, "wrapped": aes_key_wrap(self._master, key), "created": now}
        with writing(self._engine) as conn:
            upsert(conn, patient_keys, [row], ["patient"], update=[])
            wrapped = conn.execute(_WRAPPED, {"p": patient}).scalar()
            # After the insert, not before: an erasure that held the row made the insert
            # wait for its commit, so its tombstone is visible here (READ COMMITTED).
            if wrapped is None or conn.execute(_TOMBSTONE, {"p": patient}).first():
                raise Erased(patient)  # rolls the new key back
        return aes_key_unwrap(self._master, wrapped)  # ours, or a replica's that won

    def _forget(self, patient: str) -> None:
        with self._lock:
            self._keys.pop(patient, None)

    # -- batches -----------------------------------------------------------------
    def find(self, device: str, batch_id: str) -> StoredBatch | None:
        with reading(self._engine) as conn:
            row = conn.execute(_FIND, {"d": device, "b": batch_id}).first()
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
        key = self._key(patient, create=True)
        tag = hmac.new(key, payload, hashlib.sha256).digest()
        nonce = os.urandom(12)
        plain = json.dumps(content, separators=(",", ":")).encode()
        return tag, nonce, AESGCM(key).encrypt(nonce, plain, _aad(patient, device, batch_id))

    def commit(self, rows: Sequence[tuple[Any, ...]], indexed: Sequence[Indexed]) -> list[bool]:
        """One transaction, one fsync (group commit): record the ledger indexes of batches
        appended since the last commit — (index, device, batch_id); not waited on by any
        request, since a lost update is found again by :meth:`settle` — then insert sealed
        batches. Each row: device, batch_id, patient, received, tag, nonce, ciphertext,
        event, size_hint. Returns, per row, False when (device, batch_id) already existed
        (inserted by anyone, any replica) or the patient was erased meanwhile."""
        with writing(self._engine) as conn:
            if indexed:
                conn.execute(_SET_INDEX, [{"i": i, "d": d, "b": b} for i, d, b in indexed])
            if not rows:
                return []
            patients = sorted({r[2] for r in rows})
            live = set(conn.execute(_LIVE_KEYS, {"ps": patients}).scalars())
            todo = [dict(zip(_COLS, r, strict=True)) for r in rows if r[2] in live]
            went_in: set[tuple[str, str]] = set()
            if todo:
                res = conn.execute(_INSERT[conn.dialect.name], todo)
                went_in = {(d, b) for d, b in res.all()}
        return [(r[0], r[1]) in went_in for r in rows]

    def set_indexes(self, indexed: Sequence[Indexed]) -> None:
        self.commit([], indexed)

    def pending(self) -> list[tuple[str, str, bytes, int]]:
        """Batches stored but not known to be on the ledger: device, batch_id, event bytes,
        the ledger size when stored (the event, if appended, is at or after it)."""
        with reading(self._engine) as conn:
            rows = conn.execute(_PENDING.order_by(_b.seq)).all()
        return [(r[0], r[1], r[2], int(r[3])) for r in rows]

    def settle(
        self,
        cutoff: int,
        resolve: Callable[[bytes, int], int],
        only: tuple[str, str] | None = None,
    ) -> int:
        """Settle pending batches received at or before ``cutoff`` (or only batch ``only``,
        (device, batch_id)): each is locked, ``resolve(event, size_hint)`` finds its event
        on the ledger or appends it and returns its index, which is recorded before the
        lock is released. One row per transaction, so a slow append holds one row; rows
        another replica is settling are skipped (``SKIP LOCKED``). Returns how many."""
        done, after = 0, 0
        stmt = _CLAIM if only is None else _CLAIM_ONE
        params: dict[str, Any] = {} if only is None else {"d": only[0], "b": only[1]}
        while True:
            with writing(self._engine) as conn:
                row = conn.execute(stmt, {"after": after, "cutoff": cutoff, **params}).first()
                if row is None:
                    return done
                after = row.seq
                index = resolve(row.event, int(row.size_hint))
                conn.execute(_SETTLE, {"s": row.seq, "i": index})
            done += 1

    def read(
        self,
        patient: str,
        received_from: int,
        received_to: int,
        after: int,
        limit: int,
        back: bool = False,
    ) -> list[tuple[StoredBatch, dict[str, Any]]]:
        """Decrypted batches of a patient received in a time window, in arrival order,
        starting after sequence number ``after`` (``back``: in reverse arrival order,
        starting before ``after``). Raises Erased (checked on every call, not cached: an
        erasure through any replica holds at this replica's next read)."""
        try:
            key = self._key(patient, create=False)
        except KeyError:
            return []
        params = {"p": patient, "lo": received_from, "hi": received_to, "after": after}
        with reading(self._engine) as conn:
            if conn.execute(_TOMBSTONE, {"p": patient}).first() is not None:
                self._forget(patient)
                raise Erased(patient)
            rows = conn.execute(_READ_BACK if back else _READ, {**params, "n": limit}).all()
        aead = AESGCM(key)
        out = []
        for r in rows:
            meta = StoredBatch(*r[:7])
            plain = aead.decrypt(r[7], r[8], _aad(patient, meta.device, meta.batch_id))
            out.append((meta, json.loads(plain)))
        return out

    # -- erasure -------------------------------------------------------------------
    def erased(self, patient: str) -> tuple[int, int | None] | None:
        with reading(self._engine) as conn:
            row = conn.execute(_TOMBSTONE, {"p": patient}).first()
        return None if row is None else (int(row[0]), row[1])

    def erase(
        self, patient: str, event: Callable[[int], bytes], now: int, size_hint: int = 0
    ) -> tuple[int, bytes]:
        """Destroy the patient's key and ciphertexts and leave a tombstone holding the
        erasure's ledger event (``event(batches)``), recorded by the caller next, and
        ``size_hint``, the ledger's size before that append (where recovery looks for the
        event first): one transaction. Returns how many batches became unreadable, and the
        event. Raises Erased if already done (by any replica)."""
        with writing(self._engine) as conn:
            if self._sqlite:
                # Deleted content is overwritten, so an erased key is not left in free pages.
                conn.exec_driver_sql("PRAGMA secure_delete = ON")
            self._lock_key_row(conn, patient, now)
            if conn.execute(_TOMBSTONE, {"p": patient}).first() is not None:
                raise Erased(patient)
            conn.execute(patient_keys.delete().where(_k.patient == patient))
            n = conn.execute(_SHRED, {"p": patient}).rowcount
            ev = event(n)
            conn.execute(
                erased.insert().values(patient=patient, time=now, event=ev, size_hint=size_hint)
            )
        self._forget(patient)
        if self._sqlite:
            self._truncate_wal()
        return int(n), ev

    @staticmethod
    def _lock_key_row(conn: Connection, patient: str, now: int) -> None:
        """Hold the patient's key row until commit, creating a placeholder if there is none:
        a concurrent key creation or batch insert for this patient waits for the erasure
        (an absent row cannot be locked, hence the upsert)."""
        row = {"patient": patient, "wrapped": b"", "created": now}
        upsert(conn, patient_keys, [row], ["patient"], update=["created"])

    def _truncate_wal(self) -> None:
        # The WAL still holds the pages written before: fold it in and truncate it. Outside
        # any transaction (a checkpoint inside one cannot finish), so on the raw connection.
        with self._engine.connect() as conn:
            raw = conn.connection.driver_connection
            assert raw is not None
            raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def set_erasure_index(self, patient: str, index: int) -> None:
        with writing(self._engine) as conn:
            conn.execute(_ERASURE_INDEX, {"p": patient, "i": index})

    def unrecorded_erasures(self) -> list[tuple[str, bytes]]:
        with reading(self._engine) as conn:
            rows = conn.execute(
                sa.select(_x.patient, _x.event).where(_x.ledger_index.is_(None))
            ).all()
        return [(r[0], r[1]) for r in rows]

    def settle_erasures(self, cutoff: int, resolve: Callable[[bytes, int], int]) -> int:
        """Record erasures made at or before ``cutoff`` whose index is not noted:
        ``resolve(event, size_hint)`` finds the event on the ledger or appends it, as
        :meth:`settle`, one locked row at a time. Returns how many."""
        done, after = 0, ""
        while True:
            with writing(self._engine) as conn:
                row = conn.execute(_CLAIM_ERASURE, {"after": after, "cutoff": cutoff}).first()
                if row is None:
                    return done
                after = row.patient
                index = resolve(row.event, int(row.size_hint or 0))
                conn.execute(_ERASURE_INDEX, {"p": row.patient, "i": index})
            done += 1
