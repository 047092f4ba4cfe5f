"""Off-ledger identity state in the ``identity`` store (``gateway.db``: identity.db by
default, the shared PostgreSQL database at scale): subjects, invites, issued tokens and spent
client-assertion ids. PHI such as names lives only here, never on the ledger; the ledger
holds ids, thumbprints and salted commitments."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import psycopg as pg_psycopg
from sqlalchemy.engine import Engine

from ..db.dialect import reading, writing
from ..db.engine import SQLITE_BUSY_MS, postgres_engine
from ..db.errors import DatabaseUnavailable, reaching
from .tables import client_jtis, invites, signing_keys, status_counter, subjects, tokens

__all__ = [
    "IdentityStore",
    "Invite",
    "PublishedKey",
    "Subject",
    "TokenRecord",
    "assertion_key",
]

#: ``revoked_since`` from the beginning of time: every revoked row.
EVER = -(1 << 62)
#: Ids per ``IN (...)`` list: well under SQLite's bound-variable limit.
_CHUNK = 500


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


@dataclass(frozen=True, slots=True)
class PublishedKey:
    """The public part of an attestation signing key, as every replica publishes it."""

    kid: str
    alg: str
    jwk: dict[str, str]
    created: int
    retired: int | None


# Built once: SQLAlchemy caches each statement's compiled form, so a store call costs one
# parameter binding, not a query construction (see gateway/consent/store.py). An UPDATE's
# parameters may not be named after its columns, hence ``now``, ``sid`` and the like.
_s, _i, _t, _j, _n = subjects.c, invites.c, tokens.c, client_jtis.c, status_counter.c
_INVITE = sa.select(_i.role, _i.created_by, _i.created, _i.expires, _i.attrs)
_PEEK = _INVITE.where(
    _i.code_hash == sa.bindparam("code"), _i.used.is_(None), _i.expires > sa.bindparam("now")
)
_REDEEM = (
    invites.update()
    .where(
        _i.code_hash == sa.bindparam("code"), _i.used.is_(None), _i.expires > sa.bindparam("now")
    )
    .values(used=sa.bindparam("now"))
    .returning(_i.role, _i.created_by, _i.created, _i.expires, _i.attrs)
)
_SUBJECT = sa.select(subjects).where(_s.id == sa.bindparam("id"))
_BY_JKT = sa.select(_s.id).where(_s.jkt == sa.bindparam("jkt"))
_NAMES = sa.select(_s.id, _s.role, _s.attrs).where(_s.id.in_(sa.bindparam("ids", expanding=True)))
_DEVICES = sa.select(_s.id).where(_s.role == "device", _s.patient == sa.bindparam("patient"))
_REVOKE_SUBJECT = (
    subjects.update()
    .where(_s.id == sa.bindparam("sid"), _s.revoked.is_(None))
    .values(revoked=sa.bindparam("now"))
)
_REVOKE_ITS_TOKENS = (
    tokens.update()
    .where(_t.sub == sa.bindparam("sid"), _t.revoked.is_(None))
    .values(revoked=sa.bindparam("now"))
    .returning(_t.status_idx)
)
# Who can no longer act since ``since``: revoked subjects, and the devices of revoked
# patients (a device acts only for its patient). Both read only the partial index on
# revoked rows (identity_0002), so a replica's once-a-second look is cheap.
_patients = sa.select(_s.id).where(_s.revoked >= sa.bindparam("since")).scalar_subquery()
_REVOKED_SUBJECTS = sa.union(
    sa.select(_s.id).where(_s.revoked >= sa.bindparam("since")),
    sa.select(_s.id).where(_s.role == "device", _s.patient.in_(_patients)),
)
_REVOKED_INDEXES = sa.select(_t.status_idx).where(_t.revoked >= sa.bindparam("since"))
_TOKEN = sa.select(tokens).where(_t.jti == sa.bindparam("jti"))
_REVOKE_TOKEN = (
    tokens.update()
    .where(_t.jti == sa.bindparam("tid"), _t.revoked.is_(None))
    .values(revoked=sa.bindparam("now"))
    .returning(_t.status_idx)
)
_RESERVE = (
    status_counter.update()
    .where(_n.id == 1)
    .values(next=_n.next + sa.bindparam("n"))
    .returning(_n.next)
)
_TOKEN_IDS = sa.select(_t.jti).where(_t.jti.in_(sa.bindparam("ids", expanding=True)))
_ABOVE_USED = (  # the counter never falls behind an index a restored row holds
    status_counter.update()
    .where(_n.id == 1)
    .values(
        next=sa.func.coalesce(
            sa.select(sa.func.max(_t.status_idx) + 1)
            .where(_t.status_idx >= _n.next)
            .scalar_subquery(),
            _n.next,
        )
    )
)
_k = signing_keys.c
_KEYS_SINCE = sa.select(_k.kid, _k.alg, _k.jwk, _k.created, _k.retired).where(
    _k.changed >= sa.bindparam("since")
)
_PRUNE_JTIS = client_jtis.delete().where(_j.exp < sa.bindparam("before"))
# Per dialect, built once too: "insert unless the key is there" with a rowcount to read.
# (SQLAlchemy reports an INSERT's rowcount only when asked to preserve it.)
_INSERT_OR_SKIP = {
    (name, table.name): dialect.insert(table)
    .on_conflict_do_nothing()
    .execution_options(preserve_rowcount=True)
    for name, dialect in (("sqlite", sqlite), ("postgresql", postgresql))
    for table in (tokens, client_jtis)
}


def _publish(dialect: Any) -> Any:
    # A key is inserted once; after that only its retirement may change, and only from
    # none to a time: a replica holding an older copy of the key dir, which still lists
    # the key as current, never un-retires it.
    ins = dialect.insert(signing_keys)
    return ins.on_conflict_do_update(
        index_elements=["kid"],
        set_={"retired": ins.excluded.retired, "changed": ins.excluded.changed},
        where=sa.and_(_k.retired.is_(None), ins.excluded.retired.is_not(None)),
    )


_PUBLISH = {"sqlite": _publish(sqlite), "postgresql": _publish(postgresql)}
# The two writes of every token request (an issued token, a spent client-assertion id) go
# to the driver directly, as SQL compiled once from the Core statements above: through an
# engine's Connection and transaction they cost 1.5-3 times the CPU (measured). They are
# also the only writes without a synchronous commit of their own; IdentityStore.__init__
# says why that is safe.
_FAST_SQL = {
    "sqlite": {
        name: str(stmt.compile(dialect=sqlite.dialect(paramstyle="named")))
        for name, stmt in (
            ("tokens", _INSERT_OR_SKIP["sqlite", "tokens"]),
            ("client_jtis", _INSERT_OR_SKIP["sqlite", "client_jtis"]),
            ("prune", _PRUNE_JTIS),
        )
    },
    "postgresql": {
        name: str(stmt.compile(dialect=pg_psycopg.dialect()))  # type: ignore[no-untyped-call]
        for name, stmt in (
            ("tokens", _INSERT_OR_SKIP["postgresql", "tokens"]),
            ("client_jtis", _INSERT_OR_SKIP["postgresql", "client_jtis"]),
            ("prune", _PRUNE_JTIS),
        )
    },
}
#: Connections of the PostgreSQL pool kept for those writes (on top of the engine's): as many
#: as the default executor's threads that write at once, so none is opened per token. With
#: 1 kept and 4 of overflow, each burst opened and closed connections: 14% of the CPU of a
#: token request at 10 clients (py-spy, bench.auth --sections issue).
FAST_POOL_SIZE = 4
FAST_MAX_OVERFLOW = 1


def _asynchronous_commit(dbapi: Any, _record: Any) -> None:
    # This pool's sessions commit asynchronously: as `SET LOCAL synchronous_commit = off`
    # in each of its transactions, one round trip less. Committed, so the pool's
    # rollback on checkin does not undo it.
    with dbapi.cursor() as cur:
        cur.execute("SET synchronous_commit = off")
    dbapi.commit()


def _subject(row: sa.Row[Any]) -> Subject:
    m = row._mapping
    return Subject(
        m["id"],
        m["role"],
        m["jkt"],
        m["jwk"],
        int(m["created"]),
        None if m["revoked"] is None else int(m["revoked"]),
        m["patient"],
        m["attrs"] or {},
    )


def _invite(row: sa.Row[Any, Any, Any, Any, Any]) -> Invite:
    return Invite(row[0], row[1], int(row[2]), int(row[3]), row[4] or {})


def _token(row: sa.Row[Any]) -> TokenRecord:
    m = row._mapping
    return TokenRecord(
        m["jti"],
        m["sub"],
        m["role"],
        int(m["exp"]),
        int(m["status_idx"]),
        int(m["ledger_index"]),
        None if m["revoked"] is None else int(m["revoked"]),
    )


def _row(t: TokenRecord) -> dict[str, Any]:
    return {
        "jti": t.jti,
        "sub": t.sub,
        "role": t.role,
        "exp": t.exp,
        "status_idx": t.status_idx,
        "ledger_index": t.ledger_index,
        "revoked": t.revoked,
    }


class IdentityStore:
    """Blocking: call from a thread. ``engine`` comes from ``Database.open("identity")``;
    ``close`` leaves it open (the database layer disposes of it)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._dialect = engine.dialect.name
        self._pruned: int | None = None
        # Issued tokens and spent client-assertion ids are written on every token request,
        # without a synchronous commit of their own. Why that is safe:
        # - a spent assertion id is committed before the token's attestation.issued event,
        #   and the ledger commits that event durably (group commit). On PostgreSQL the
        #   ledger is on the same server (database_url names both), and a synchronous
        #   commit flushes the WAL up to its own record, so the assertion id of every
        #   issued token is durable once its event is; on SQLite (another file) a power
        #   loss can drop it, and rebuild_issuance() restores it from the event at start;
        # - a token row is written after its event: a crash can drop the last ones, and
        #   rebuild_issuance() (gateway/auth/recovery.py) restores them from the ledger
        #   when a replica starts. Until then such a token still verifies (signature,
        #   status bit from the durable counter, subject revocation); only its receipt
        #   lookup and revocation by jti miss it, so after a PostgreSQL crash restart the
        #   replicas.
        # SQLite: a second, stdlib connection to the same file that commits without fsync
        # (WAL, synchronous=NORMAL), one statement a transaction, as before this layer.
        # PostgreSQL: a small pool of its own whose sessions commit asynchronously.
        self._raw: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._fast: Engine | None = None
        self._where = engine.url.render_as_string(hide_password=True)
        if self._dialect == "sqlite":
            assert engine.url.database is not None
            raw = sqlite3.connect(
                engine.url.database, check_same_thread=False, isolation_level=None
            )
            raw.execute("PRAGMA synchronous = NORMAL")
            raw.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_MS}")
            self._raw = raw
        else:
            self._fast = postgres_engine(engine.url, FAST_POOL_SIZE, FAST_MAX_OVERFLOW)
            sa.event.listen(self._fast, "connect", _asynchronous_commit)

    def close(self) -> None:
        with self._lock:
            if self._raw is not None:
                self._raw.close()
                self._raw = None
        if self._fast is not None:
            self._fast.dispose()

    def _write_fast(self, *steps: tuple[str, dict[str, Any]]) -> int:
        """The statements ``steps`` names, in one transaction without a synchronous commit
        (SQLite: each its own); the last one's rowcount. Raises DatabaseUnavailable."""
        sql = _FAST_SQL[self._dialect]
        n = 0
        if self._raw is not None or self._fast is None:
            with self._lock:
                if self._raw is None:
                    raise DatabaseUnavailable("the identity store is closed")
                try:
                    for name, params in steps:
                        n = self._raw.execute(sql[name], params).rowcount
                except sqlite3.OperationalError as e:  # locked, or the file is gone
                    raise self._unavailable(e) from e
            return n
        dbapi = self._fast.dialect.dbapi
        assert dbapi is not None
        with reaching(self._where):
            raw = self._fast.raw_connection()  # a connection the server closed is replaced
        try:
            cur = raw.cursor()
            for name, params in steps:
                cur.execute(sql[name], params)
                n = cur.rowcount
            cur.close()
            raw.commit()
        except (dbapi.OperationalError, dbapi.InterfaceError) as e:  # as ``reaching`` maps
            raise self._unavailable(e) from e
        finally:
            raw.close()  # back to the pool, rolled back if it did not commit
        return n

    def _unavailable(self, e: Exception) -> DatabaseUnavailable:
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return DatabaseUnavailable(
            f"cannot use the database {self._where}: {why}", headers={"Retry-After": "1"}
        )

    # -- invites -----------------------------------------------------------------
    def create_invite(self, code_hash: str, invite: Invite) -> None:
        with writing(self._engine) as conn:
            conn.execute(
                invites.insert().values(
                    code_hash=code_hash,
                    role=invite.role,
                    created_by=invite.created_by,
                    created=invite.created,
                    expires=invite.expires,
                    used=None,
                    attrs=invite.attrs,
                )
            )

    def peek_invite(self, code_hash: str, now: int) -> Invite | None:
        """The invite if it is usable now, without using it."""
        with reading(self._engine) as conn:
            row = conn.execute(_PEEK, {"code": code_hash, "now": now}).first()
        return None if row is None else _invite(row)

    def redeem_invite(self, code_hash: str, now: int) -> Invite | None:
        """Mark the invite used, atomically; None if unknown, used or expired."""
        with writing(self._engine) as conn:
            row = conn.execute(_REDEEM, {"code": code_hash, "now": now}).first()
        return None if row is None else _invite(row)

    # -- subjects ----------------------------------------------------------------
    def add_subject(self, s: Subject) -> None:
        """Raises sqlalchemy's IntegrityError when the id or the key is taken."""
        with writing(self._engine) as conn:
            conn.execute(
                subjects.insert().values(
                    id=s.id,
                    role=s.role,
                    jkt=s.jkt,
                    jwk=s.jwk,
                    created=s.created,
                    revoked=s.revoked,
                    patient=s.patient,
                    attrs=s.attrs,
                )
            )

    def subject(self, sid: str) -> Subject | None:
        with reading(self._engine) as conn:
            row = conn.execute(_SUBJECT, {"id": sid}).first()
        return None if row is None else _subject(row)

    def display_names(self, ids: Iterable[str]) -> dict[str, str]:
        """Who each of ``ids`` is, said to a person: a subject's display name, or a
        device's model; ids with neither (or unknown) are left out. One query per 500 ids.
        The caller decides who may see these names."""
        wanted = sorted({i for i in ids if isinstance(i, str)})
        out: dict[str, str] = {}
        if not wanted:
            return out
        with reading(self._engine) as conn:
            for at in range(0, len(wanted), _CHUNK):
                for sid, role, attrs in conn.execute(_NAMES, {"ids": wanted[at : at + _CHUNK]}):
                    attrs = attrs if isinstance(attrs, dict) else {}
                    name, model = attrs.get("display_name"), attrs.get("model")
                    label = name if isinstance(name, str) else model if role == "device" else None
                    if isinstance(label, str) and label:
                        out[str(sid)] = label
        return out

    def subject_by_jkt(self, jkt: str) -> str | None:
        with reading(self._engine) as conn:
            row = conn.execute(_BY_JKT, {"jkt": jkt}).first()
        return None if row is None else str(row[0])

    def revoke_subject(self, sid: str, now: int) -> list[int]:
        """Revoke a subject and all its tokens; returns their status indexes."""
        with writing(self._engine) as conn:
            conn.execute(_REVOKE_SUBJECT, {"sid": sid, "now": now})
            rows = conn.execute(_REVOKE_ITS_TOKENS, {"sid": sid, "now": now}).all()
        return sorted(int(r[0]) for r in rows)

    def revoked_since(self, since: int = EVER) -> tuple[set[str], list[int]]:
        """Who can no longer act and which status indexes are revoked, among what was
        revoked at or after ``since`` (default: ever), read in one snapshot."""
        with reading(self._engine) as conn:
            subs = {str(r[0]) for r in conn.execute(_REVOKED_SUBJECTS, {"since": since})}
            idx = [int(r[0]) for r in conn.execute(_REVOKED_INDEXES, {"since": since})]
        return subs, idx

    def revoked_subjects(self) -> set[str]:
        """Who can no longer act: revoked subjects, and the devices of revoked patients (a
        device acts only for its patient)."""
        return self.revoked_since()[0]

    def devices(self, patient: str) -> list[str]:
        """The devices enrolled for ``patient``."""
        with reading(self._engine) as conn:
            return [str(r[0]) for r in conn.execute(_DEVICES, {"patient": patient})]

    # -- tokens ------------------------------------------------------------------
    def reserve_status_indexes(self, n: int) -> range:
        """``n`` status-list indexes no other caller (in this process or any replica on the
        database) has or will get. Durable before it returns, so a token issued with one of
        them never shares its bit with a later one, even after a crash."""
        with writing(self._engine) as conn:
            end = int(conn.execute(_RESERVE, {"n": n}).scalar_one())
        return range(end - n, end)

    def add_token(self, t: TokenRecord) -> None:
        # Skips a row that is there: a replica's rebuild_issuance may have restored it.
        self._write_fast(("tokens", _row(t)))

    def token(self, jti: str) -> TokenRecord | None:
        with reading(self._engine) as conn:
            row = conn.execute(_TOKEN, {"jti": jti}).first()
        return None if row is None else _token(row)

    def revoke_token(self, jti: str, now: int) -> int | None:
        with writing(self._engine) as conn:
            row = conn.execute(_REVOKE_TOKEN, {"tid": jti, "now": now}).first()
        return None if row is None else int(row[0])

    def revoked_indexes(self) -> list[int]:
        return self.revoked_since()[1]

    # -- published signing keys -------------------------------------------------
    def publish_signing_keys(self, keys: Sequence[PublishedKey], now: int) -> None:
        """Insert the keys not published yet and record retirements, in one transaction
        (a rotation's new key and its predecessor's retirement land together). A published
        retirement is never undone or moved. ``now`` stamps the rows that change."""
        rows = [
            {
                "kid": k.kid,
                "alg": k.alg,
                "jwk": k.jwk,
                "created": k.created,
                "retired": k.retired,
                "changed": now,
            }
            for k in sorted(keys, key=lambda k: k.kid)  # one lock order for every replica
        ]
        if rows:
            with writing(self._engine) as conn:
                conn.execute(_PUBLISH[self._dialect], rows)

    def signing_keys_since(self, since: int = EVER) -> list[PublishedKey]:
        """The published keys inserted or retired at or after ``since`` (default: all)."""
        with reading(self._engine) as conn:
            rows = conn.execute(_KEYS_SINCE, {"since": since}).all()
        return [
            PublishedKey(str(r[0]), str(r[1]), r[2], int(r[3]), None if r[4] is None else int(r[4]))
            for r in rows
        ]

    # -- client assertion replay -------------------------------------------------
    def use_client_jti(self, key: str, exp: int, now: int) -> bool:
        """Record a client assertion id (``key`` = :func:`assertion_key`); False if it was
        seen before (a replay)."""
        # Indexed on exp, so pruning touches only what expired; once a second is enough.
        steps: list[tuple[str, dict[str, Any]]] = []
        if now != self._pruned:
            self._pruned = now
            steps.append(("prune", {"before": now - 600}))
        steps.append(("client_jtis", {"key": key, "exp": exp}))
        return self._write_fast(*steps) == 1

    def restore_issuance(self, tokens: list[TokenRecord], assertions: list[tuple[str, int]]) -> int:
        """Re-insert issuance rows rebuilt from the ledger; returns how many were missing."""
        added = 0
        with writing(self._engine) as conn:
            have: set[str] = set()
            for at in range(0, len(tokens), _CHUNK):
                ids = [t.jti for t in tokens[at : at + _CHUNK]]
                have.update(str(r[0]) for r in conn.execute(_TOKEN_IDS, {"ids": ids}))
            missing = [_row(t) for t in tokens if t.jti not in have]
            if missing:
                # Skip conflicts all the same: a replica starting beside this one may
                # restore the same rows.
                conn.execute(_INSERT_OR_SKIP[self._dialect, "tokens"], missing)
                added += len(missing)
            for key, exp in assertions:
                cur = conn.execute(
                    _INSERT_OR_SKIP[self._dialect, "client_jtis"], {"key": key, "exp": exp}
                )
                added += max(cur.rowcount, 0)
            conn.execute(_ABOVE_USED)
        return added
