"""The consent and sessions stores, the same tests on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import sqlalchemy as sa

from gateway.auth.store import IdentityStore, Invite, Subject, TokenRecord
from gateway.consent.store import Consent, ConsentStore, Emergency
from gateway.db import (
    Database,
    DatabaseUnavailable,
    JSONColumn,
    for_update,
    reading,
    upsert,
    writing,
)
from gateway.sessions.store import BadTransition, CallSession, SessionStore, State
from gateway.sessions.tables import sessions

T0 = 1_700_000_000
FAR = 4_102_444_800  # 2100: past 2038, where a 32-bit time column would overflow


def test_consents_round_trip_and_revocation(db: Database) -> None:
    store = ConsentStore(db.open("consent"))
    a = Consent("c1", "pat:1", "prov:1", ("call", "vitals.read"), T0, FAR, None)
    b = Consent("c2", "pat:1", "role:provider", ("call",), T0 + 1, T0 + 100, None)
    c = Consent("c3", "pat:2", "prov:1", (), T0 + 2, T0 + 100, None)
    for x in (a, b, c):
        store.add(x)
    assert store.get("c1") == a and store.get("nope") is None
    assert store.of_patient("pat:1") == [a, b]
    assert store.naming(("prov:1", "role:provider")) == [a, b, c]
    assert store.naming(()) == []
    assert sorted(x.id for x in store.matching("pat:1", ("prov:1",))) == ["c1"]
    assert store.revoke("c1", T0 + 5) is True
    assert store.revoke("c1", T0 + 6) is False  # revoked once, at the first time
    assert store.revoke("nope", T0) is False
    got = store.get("c1")
    assert got is not None and got.revoked == T0 + 5 and not got.active(T0 + 10)
    with pytest.raises(sa.exc.IntegrityError):
        store.add(a)


def test_emergency_is_the_latest_ending_live_one(db: Database) -> None:
    store = ConsentStore(db.open("consent"))
    store.add_emergency(Emergency("e1", "prov:1", "pat:1", T0, T0 + 60), "unconscious")
    store.add_emergency(Emergency("e2", "prov:1", "pat:1", T0 + 10, T0 + 3600), "again")
    assert store.emergency("prov:1", "pat:1", T0 - 1) is None
    assert store.emergency("prov:1", "pat:1", T0 + 5) == Emergency(
        "e1", "prov:1", "pat:1", T0, T0 + 60
    )
    hit = store.emergency("prov:1", "pat:1", T0 + 30)
    assert hit is not None and hit.id == "e2"
    assert store.emergency("prov:1", "pat:1", T0 + 3600) is None
    assert store.emergency("prov:2", "pat:1", T0 + 30) is None


def test_a_revocation_through_one_replica_holds_on_another(db: Database) -> None:
    # Two Database objects on the same data: two replicas. No cache may hide the revocation.
    other = Database(db.data_dir, db.url)
    try:
        one, two = ConsentStore(db.open("consent")), ConsentStore(other.open("consent"))
        one.add(Consent("c1", "pat:1", "prov:1", ("call",), T0, FAR, None))
        assert two.matching("pat:1", ("prov:1",))[0].active(T0 + 1)
        assert two.revoke("c1", T0 + 2)
        assert not one.matching("pat:1", ("prov:1",))[0].active(T0 + 3)
    finally:
        other.close()


def _session(sid: str, patient: str, provider: str, state: State, t: int) -> CallSession:
    return CallSession(sid, patient, provider, state, t, t)


def test_sessions_round_trip_and_queries(db: Database) -> None:
    store = SessionStore(db.open("sessions"))
    s1 = _session("s1", "pat:1", "prov:1", State.WAITING, T0)
    s2 = _session("s2", "pat:2", "prov:1", State.WAITING, T0 + 1)
    s3 = _session("s3", "pat:1", "prov:2", State.ENDED, T0 + 2)
    for s in (s1, s2, s3):
        store.add(s)
    assert store.get("s1") == s1 and store.get("nope") is None
    assert store.of_provider("prov:1", State.WAITING) == [s1, s2]
    assert store.of_party("pat:1", 10, False) == [s3, s1]
    assert store.of_party("pat:1", 10, True) == [s1]
    assert store.of_party("pat:1", 1, False) == [s3]
    moved = store.move("s1", State.ADMITTED, FAR)
    assert moved == CallSession("s1", "pat:1", "prov:1", State.ADMITTED, T0, FAR)
    assert store.get("s1") == moved
    with pytest.raises(BadTransition, match="cannot become"):
        store.move("s1", State.WAITING, FAR)
    with pytest.raises(BadTransition, match="no such session"):
        store.move("nope", State.WAITING, FAR)


def _blocked(db: Database) -> None:
    """Give a competing transaction time to reach the lock (on PostgreSQL: until it waits)."""
    if db.embedded:
        time.sleep(0.3)  # SQLite cannot show who waits; BEGIN IMMEDIATE blocks in C
        return
    deadline = time.monotonic() + 10
    with db.engine("sessions").connect() as c:
        q = sa.text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
        while c.execute(q).scalar_one() == 0:
            assert time.monotonic() < deadline, "the competing move never waited for the lock"
            c.rollback()
            time.sleep(0.01)


def test_a_move_waits_for_a_competing_one_and_sees_its_result(db: Database) -> None:
    # Two replicas admit the same waiting patient at once: exactly one may succeed. Without
    # the row lock (FOR UPDATE / BEGIN IMMEDIATE) the second reads "waiting" and succeeds too.
    engine = db.open("sessions")
    SessionStore(engine).add(_session("s1", "pat:1", "prov:1", State.WAITING, T0))
    replica = Database(db.data_dir, db.url)
    outcome: list[Any] = []

    def second() -> None:
        try:
            outcome.append(theirs.move("s1", State.ADMITTED, 2))
        except BadTransition as e:
            outcome.append(e)

    try:
        theirs = SessionStore(replica.open("sessions"))
        with writing(engine) as conn:
            conn.execute(for_update(sa.select(sessions).where(sessions.c.id == "s1"))).one()
            conn.execute(sessions.update().values(state="admitted", updated=1))
            th = threading.Thread(target=second)
            th.start()
            _blocked(db)
        th.join(30)
    finally:
        replica.close()
    assert len(outcome) == 1 and isinstance(outcome[0], BadTransition), outcome


def test_upsert_and_json_columns(db: Database) -> None:
    md = sa.MetaData()
    t = sa.Table("kv", md, sa.Column("k", sa.Text, primary_key=True), sa.Column("v", JSONColumn))
    engine = db.engine("consent")
    md.create_all(engine)
    with writing(engine) as conn:
        upsert(conn, t, [{"k": "a", "v": {"n": 1}}, {"k": "b", "v": ["x"]}], ["k"])
        upsert(conn, t, [{"k": "a", "v": {"n": 2}}], ["k"])
        upsert(conn, t, [{"k": "b", "v": None}], ["k"], update=[])  # keep the existing row
        upsert(conn, t, [], ["k"])
    with reading(engine) as conn:
        rows = {r.k: r.v for r in conn.execute(sa.select(t.c.k, t.c.v))}
    assert rows == {"a": {"n": 2}, "b": ["x"]}


def test_an_unreachable_database_is_a_503_to_retry_not_a_500(tmp_path: Any) -> None:
    down = Database(tmp_path, "postgresql://postgres@127.0.0.1:1/test?password=hunter2")
    try:
        consents = ConsentStore(down.engine("consent"))
        with pytest.raises(DatabaseUnavailable) as e:
            consents.matching("pat:1", ("prov:1",))
        assert e.value.status == 503 and e.value.headers == {"Retry-After": "1"}
        assert "hunter2" not in str(e.value) and "127.0.0.1:1" in str(e.value)
        with pytest.raises(DatabaseUnavailable):
            SessionStore(down.engine("sessions")).move("s1", State.ENDED, 1)
    finally:
        down.close()


# -- identity ----------------------------------------------------------------------------
def _identity_subject(sid: str, jkt: str, patient: str | None = None) -> Subject:
    role = "device" if patient else "patient"
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": jkt}
    return Subject(sid, role, jkt, jwk, T0, None, patient, {"display_name": f"N {sid}"})


def test_identity_invites_subjects_and_names(db: Database) -> None:
    store = IdentityStore(db.open("identity"))
    invite = Invite("patient", "adm:1", T0, T0 + 600, {"display_name": "Ana"})
    store.create_invite("h1", invite)
    assert store.peek_invite("h1", T0 + 1) == invite
    assert store.peek_invite("h1", T0 + 600) is None  # expired
    assert store.redeem_invite("h1", T0 + 1) == invite
    assert store.redeem_invite("h1", T0 + 2) is None  # single use
    assert store.peek_invite("h1", T0 + 2) is None
    pat = _identity_subject("pat:1", "k1")
    store.add_subject(pat)
    store.add_subject(_identity_subject("dev:1", "k2", patient="pat:1"))
    assert store.subject("pat:1") == pat
    assert store.subject_by_jkt("k2") == "dev:1"
    with pytest.raises(sa.exc.IntegrityError):  # one key, one identity
        store.add_subject(_identity_subject("pat:2", "k1"))
    assert store.devices("pat:1") == ["dev:1"]
    ids = [f"pat:x{i}" for i in range(1200)] + ["pat:1"]  # more than one IN list
    assert store.display_names(ids) == {"pat:1": "N pat:1"}
    store.close()


def test_identity_tokens_assertions_and_revocation(db: Database) -> None:
    store = IdentityStore(db.open("identity"))
    store.add_subject(_identity_subject("pat:1", "k1"))
    store.add_subject(_identity_subject("dev:1", "k2", patient="pat:1"))
    a, b = store.reserve_status_indexes(2)
    t1 = TokenRecord("j1", "pat:1", "patient", FAR, a, 10, None)
    t2 = TokenRecord("j2", "dev:1", "device", FAR, b, 11, None)
    store.add_token(t1)
    store.add_token(t2)
    store.add_token(t1)  # restored from the ledger already: not an error
    assert store.token("j1") == t1
    assert store.use_client_jti("c1", T0 + 60, T0)
    assert not store.use_client_jti("c1", T0 + 60, T0)  # a replay
    assert store.use_client_jti("c2", T0 + 60, T0)
    assert store.revoke_token("j2", T0 + 5) == b
    assert store.revoke_token("j2", T0 + 6) is None
    assert store.revoke_subject("pat:1", T0 + 10) == [a]
    subs, idx = store.revoked_since()
    assert (subs, sorted(idx)) == ({"pat:1", "dev:1"}, [a, b])
    assert store.revoked_since(T0 + 7) == ({"pat:1", "dev:1"}, [a])
    assert store.revoked_since(T0 + 11) == (set(), [])
    store.close()


def test_identity_rows_lost_in_a_crash_are_restored_and_the_counter_stays_ahead(
    db: Database,
) -> None:
    store = IdentityStore(db.open("identity"))
    (idx,) = store.reserve_status_indexes(1)
    kept = TokenRecord("j1", "pat:1", "patient", FAR, idx, 1, None)
    store.add_token(kept)
    lost = TokenRecord("j2", "pat:1", "patient", FAR, idx + 40, 2, None)
    assert store.restore_issuance([kept, lost], [("c1", FAR), ("c2", FAR)]) == 3
    assert store.token("j2") == lost
    assert not store.use_client_jti("c1", FAR, T0)
    assert store.restore_issuance([kept, lost], [("c1", FAR)]) == 0
    assert store.reserve_status_indexes(1)[0] > idx + 40
    store.close()


def test_identity_only_issuance_rows_skip_the_synchronous_commit(db: Database) -> None:
    """Tokens and spent assertion ids are rebuilt from the ledger after a crash, so they
    alone are written without waiting for the disk; invites, subjects and revocations wait."""
    store = IdentityStore(db.open("identity"))
    try:
        with reading(db.open("identity")) as conn:
            if conn.dialect.name == "sqlite":
                durable = conn.exec_driver_sql("PRAGMA synchronous").scalar()
            else:
                durable = conn.exec_driver_sql("SHOW synchronous_commit").scalar()
        if store._raw is not None:
            fast = store._raw.execute("PRAGMA synchronous").fetchone()[0]
            assert (durable, fast) == (2, 1)  # FULL, NORMAL
        else:
            assert store._fast is not None
            raw = store._fast.raw_connection()
            try:
                cur = raw.cursor()
                cur.execute("SHOW synchronous_commit")
                fast = cur.fetchone()[0]
            finally:
                raw.close()
            assert (durable, fast) == ("on", "off")
    finally:
        store.close()
