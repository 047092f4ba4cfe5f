"""Off-ledger identity state in SQLite (``<data_dir>/identity.db``): subjects, invites,
issued tokens and used client-assertion ids. PHI such as names lives only here, never on
the ledger; the ledger holds ids, thumbprints and salted commitments."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

__all__ = ["IdentityStore", "Invite", "Subject", "TokenRecord", "assertion_key"]


def assertion_key(client_id: str, jti: str) -> str:
    """What identifies a spent client assertion, here and in the ledger event."""
    return hashlib.sha256(f"{client_id}\n{jti}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Subject:
    id: str
    role: str
    jkt: str
    jwk: dict[str, str]
    created: int
    revoked: int | None
    patient: str | None
    attrs: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Invite:
    role: str
    created_by: str
    created: int
    expires: int
    attrs: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TokenRecord:
    jti: str
    sub: str
    role: str
    exp: int
    status_idx: int
    ledger_index: int
    revoked: int | None


class IdentityStore:
    """All methods are blocking: call them from a thread (``asyncio.to_thread``)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA busy_timeout = 5000")
        self._lock = threading.Lock()
        self.db = sqlite_utils.Database(conn)
        self._conn = conn
        self._migrate()
        # Issued tokens and spent client-assertion ids are written on every token request.
        # They need no fsync of their own: each issuance is also an attestation.issued
        # ledger event (durable, group-committed), and restore_issuance() rebuilds any rows
        # a power loss took from this connection's unsynced WAL tail.
        fast = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        fast.execute("PRAGMA synchronous = NORMAL")
        fast.execute("PRAGMA busy_timeout = 5000")
        self._fast = fast

    def _migrate(self) -> None:
        t = self.db.table
        if "subjects" not in self.db.table_names():
            t("subjects").create(
                {
                    "id": str,
                    "role": str,
                    "jkt": str,
                    "jwk": str,
                    "created": int,
                    "revoked": int,
                    "patient": str,
                    "attrs": str,
                },
                pk="id",
                not_null={"role", "jkt", "jwk", "created"},
            )
            # One key, one identity: a holder key names exactly one subject.
            t("subjects").create_index(["jkt"], unique=True)
        if "invites" not in self.db.table_names():
            t("invites").create(
                {
                    "code_hash": str,
                    "role": str,
                    "created_by": str,
                    "created": int,
                    "expires": int,
                    "used": int,
                    "attrs": str,
                },
                pk="code_hash",
                not_null={"role", "created_by", "created", "expires"},
            )
        if "tokens" not in self.db.table_names():
            t("tokens").create(
                {
                    "jti": str,
                    "sub": str,
                    "role": str,
                    "exp": int,
                    "status_idx": int,
                    "ledger_index": int,
                    "revoked": int,
                },
                pk="jti",
                not_null={"sub", "role", "exp", "status_idx", "ledger_index"},
            )
            t("tokens").create_index(["sub"])
            t("tokens").create_index(["status_idx"], unique=True)
        if "client_jtis" not in self.db.table_names():
            t("client_jtis").create({"key": str, "exp": int}, pk="key")
            t("client_jtis").create_index(["exp"])

    def close(self) -> None:
        with self._lock:
            self._fast.close()
            self._conn.close()

    # -- invites -----------------------------------------------------------------
    def create_invite(self, code_hash: str, invite: Invite) -> None:
        with self._lock:
            self.db.table("invites").insert(
                {
                    "code_hash": code_hash,
                    "role": invite.role,
                    "created_by": invite.created_by,
                    "created": invite.created,
                    "expires": invite.expires,
                    "used": None,
                    "attrs": json.dumps(invite.attrs),
                }
            )

    def peek_invite(self, code_hash: str, now: int) -> Invite | None:
        """The invite if it is usable now, without using it."""
        with self._lock:
            row = self._conn.execute(
                "SELECT role, created_by, created, expires, attrs FROM invites "
                "WHERE code_hash = ? AND used IS NULL AND expires > ?",
                (code_hash, now),
            ).fetchone()
        return (
            None
            if row is None
            else Invite(row[0], row[1], row[2], row[3], json.loads(row[4] or "{}"))
        )

    def redeem_invite(self, code_hash: str, now: int) -> Invite | None:
        """Mark the invite used, atomically; None if unknown, used or expired."""
        with self._lock:
            cur = self._conn.execute(
                "UPDATE invites SET used = ? WHERE code_hash = ? AND used IS NULL AND expires > ?",
                (now, code_hash, now),
            )
            if cur.rowcount != 1:
                return None
            row = self._conn.execute(
                "SELECT role, created_by, created, expires, attrs FROM invites WHERE code_hash = ?",
                (code_hash,),
            ).fetchone()
        return Invite(row[0], row[1], row[2], row[3], json.loads(row[4] or "{}"))

    # -- subjects ----------------------------------------------------------------
    def add_subject(self, s: Subject) -> None:
        with self._lock:
            self.db.table("subjects").insert(
                {
                    "id": s.id,
                    "role": s.role,
                    "jkt": s.jkt,
                    "jwk": json.dumps(s.jwk),
                    "created": s.created,
                    "revoked": s.revoked,
                    "patient": s.patient,
                    "attrs": json.dumps(s.attrs),
                }
            )

    def subject(self, sid: str) -> Subject | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT id, role, jkt, jwk, created, revoked, patient, attrs FROM subjects "
                "WHERE id = ?",
                (sid,),
            ).fetchone()
        if row is None:
            return None
        return Subject(
            row[0],
            row[1],
            row[2],
            json.loads(row[3]),
            row[4],
            row[5],
            row[6],
            json.loads(row[7] or "{}"),
        )

    def display_names(self, ids: Iterable[str]) -> dict[str, str]:
        """Who each of ``ids`` is, said to a person: a subject's display name, or a
        device's model; ids with neither (or unknown) are left out. One query for any
        number of ids (a JSON array bound as one parameter: no per-row round trip, no
        limit on bound variables). The caller decides who may see these names."""
        wanted = sorted({i for i in ids if isinstance(i, str)})
        if not wanted:
            return {}
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, role, json_extract(attrs, '$.display_name'), "
                "json_extract(attrs, '$.model') FROM subjects "
                "WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(wanted),),
            ).fetchall()
        out: dict[str, str] = {}
        for sid, role, name, model in rows:
            label = name if isinstance(name, str) else model if role == "device" else None
            if isinstance(label, str) and label:
                out[str(sid)] = label
        return out

    def subject_by_jkt(self, jkt: str) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT id FROM subjects WHERE jkt = ?", (jkt,)).fetchone()
        return None if row is None else str(row[0])

    def revoke_subject(self, sid: str, now: int) -> list[int]:
        """Revoke a subject and all its tokens; returns their status indexes."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute(
                    "UPDATE subjects SET revoked = ? WHERE id = ? AND revoked IS NULL", (now, sid)
                )
                idx = [
                    r[0]
                    for r in self._conn.execute(
                        "SELECT status_idx FROM tokens WHERE sub = ? AND revoked IS NULL", (sid,)
                    )
                ]
                self._conn.execute(
                    "UPDATE tokens SET revoked = ? WHERE sub = ? AND revoked IS NULL", (now, sid)
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return idx

    def revoked_subjects(self) -> set[str]:
        """Who can no longer act: revoked subjects, and the devices of revoked patients (a
        device acts only for its patient)."""
        with self._lock:
            return {
                r[0]
                for r in self._conn.execute(
                    "SELECT id FROM subjects WHERE revoked IS NOT NULL OR (role = 'device' AND"
                    " patient IN (SELECT id FROM subjects WHERE revoked IS NOT NULL))"
                )
            }

    def devices(self, patient: str) -> list[str]:
        """The devices enrolled for ``patient``."""
        with self._lock:
            q = "SELECT id FROM subjects WHERE role = 'device' AND patient = ?"
            return [r[0] for r in self._conn.execute(q, (patient,))]

    # -- tokens ------------------------------------------------------------------
    def reserve_status_index(self) -> int:
        # Indexes are allocated under the lock and written with the token, so they are unique;
        # the in-memory counter is seeded from the table at start.
        with self._lock:
            row = self._conn.execute("SELECT max(status_idx) FROM tokens").fetchone()
        return int(row[0]) + 1 if row[0] is not None else 0

    def add_token(self, t: TokenRecord) -> None:
        with self._lock:
            # Plain SQL on the hot path (one row per issued token); sqlite-utils builds the
            # schema.
            self._fast.execute(
                "INSERT INTO tokens (jti, sub, role, exp, status_idx, ledger_index, revoked) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (t.jti, t.sub, t.role, t.exp, t.status_idx, t.ledger_index, t.revoked),
            )

    def token(self, jti: str) -> TokenRecord | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT jti, sub, role, exp, status_idx, ledger_index, revoked "
                "FROM tokens WHERE jti = ?",
                (jti,),
            ).fetchone()
        if row is None:
            return None
        return TokenRecord(row[0], row[1], row[2], row[3], row[4], row[5], row[6])

    def revoke_token(self, jti: str, now: int) -> int | None:
        with self._lock:
            cur = self._conn.execute(
                "UPDATE tokens SET revoked = ? WHERE jti = ? AND revoked IS NULL", (now, jti)
            )
            if cur.rowcount != 1:
                return None
            row = self._conn.execute(
                "SELECT status_idx FROM tokens WHERE jti = ?", (jti,)
            ).fetchone()
        return int(row[0])

    def revoked_indexes(self) -> list[int]:
        with self._lock:
            return [
                r[0]
                for r in self._conn.execute(
                    "SELECT status_idx FROM tokens WHERE revoked IS NOT NULL"
                )
            ]

    # -- client assertion replay -------------------------------------------------
    def use_client_jti(self, key: str, exp: int, now: int) -> bool:
        """Record a client assertion id (``key`` = :func:`assertion_key`); False if it was
        seen before (a replay)."""
        with self._lock:
            # Indexed on exp, so pruning touches only what expired.
            self._fast.execute("DELETE FROM client_jtis WHERE exp < ?", (now - 600,))
            try:
                self._fast.execute("INSERT INTO client_jtis (key, exp) VALUES (?, ?)", (key, exp))
            except sqlite3.IntegrityError:
                return False
        return True

    def restore_issuance(self, tokens: list[TokenRecord], assertions: list[tuple[str, int]]) -> int:
        """Re-insert issuance rows rebuilt from the ledger; returns how many were missing."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                before = self._conn.total_changes
                self._conn.executemany(
                    "INSERT OR IGNORE INTO tokens (jti, sub, role, exp, status_idx, ledger_index,"
                    " revoked) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        (t.jti, t.sub, t.role, t.exp, t.status_idx, t.ledger_index, t.revoked)
                        for t in tokens
                    ],
                )
                self._conn.executemany(
                    "INSERT OR IGNORE INTO client_jtis (key, exp) VALUES (?, ?)", assertions
                )
                added = self._conn.total_changes - before
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return added
