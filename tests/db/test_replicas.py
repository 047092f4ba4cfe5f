"""Several replicas on one database: what one replica changes, another acts on within a
second, whatever it keeps in process (docs/database.md, "Caches and several replicas")."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.app import create_app
from gateway.auth.dpop import ReplayCache
from gateway.auth.jwk import HolderKey, b64u
from gateway.auth.keys import KeyRing
from gateway.auth.status import StatusList
from gateway.auth.store import IdentityStore, Subject
from gateway.auth.tokens import Authority, Unauthorized
from gateway.config import Config
from gateway.db import Database, DatabaseUnavailable
from gateway.db.engine import sqlite_engine
from gateway.sessions import http as sessions_http
from gateway.sessions.store import CallSession, SessionStore, State
from ledger.log import Log
from tests.gateway.idclient import Holder, call, enroll, get_token, local_invite, token_response


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_a_call_ended_through_another_replica_stops_relaying_within_a_second(
    db: Database, aiohttp_client: Any
) -> None:
    clock = Clock()
    config = Config(data_dir=db.data_dir, database_url=db.url, log_origin="r.example/t/log")
    client = await aiohttp_client(create_app(config, clock=clock))
    app = client.server.app
    other = SessionStore(db.open("sessions"))  # the replica that ends the call
    other.add(CallSession("s1", "pat:1", "prov:1", State.ADMITTED, 1, 1))
    seen = await sessions_http.current_session(app, "s1")
    assert seen is not None and seen.state == State.ADMITTED  # now in this replica's hub
    other.move("s1", State.ENDED, 2)
    clock.now += 1.0
    seen = await sessions_http.current_session(app, "s1")
    assert seen is not None and seen.state == State.ENDED


async def test_the_live_calls_are_read_again_together_not_per_message(
    db: Database, aiohttp_client: Any
) -> None:
    """refresh_current reads every session with a live room here in one go; the relay's
    current_session then answers from that copy without a read of its own."""
    from gateway.appkeys import HUB, SESSIONS

    clock = Clock()
    config = Config(data_dir=db.data_dir, database_url=db.url, log_origin="r.example/t/log")
    client = await aiohttp_client(create_app(config, clock=clock))
    app = client.server.app
    other = SessionStore(db.open("sessions"))
    for i in range(3):
        other.add(CallSession(f"s{i}", "pat:1", "prov:1", State.ADMITTED, 1, 1))
    hub = app[HUB]
    for i in range(3):  # rooms with live sockets here (their peers do not matter)
        hub.sessions[f"s{i}"] = {}
        assert (await sessions_http.current_session(app, f"s{i}")).state == State.ADMITTED  # type: ignore[union-attr]
    other.move("s0", State.ENDED, 2)  # through another replica
    other.move("s1", State.CONNECTED, 2)
    clock.now += 0.5
    assert await sessions_http.refresh_current(app) == 3

    def no_read(sid: str) -> None:
        raise AssertionError(f"read {sid} per message")

    store = app[SESSIONS]
    store.get = no_read  # type: ignore[method-assign]
    clock.now += 0.9  # older than CURRENT_FOR since the first read, not since the refresh
    assert (await sessions_http.current_session(app, "s0")).state == State.ENDED  # type: ignore[union-attr]
    assert (await sessions_http.current_session(app, "s1")).state == State.CONNECTED  # type: ignore[union-attr]
    assert (await sessions_http.current_session(app, "s2")).state == State.ADMITTED  # type: ignore[union-attr]
    # A copy made after the refresh's read began (a move here) is newer: it is kept.
    newer = CallSession("s2", "pat:1", "prov:1", State.CONNECTED, 1, 3)
    hub.current["s2"] = (newer, clock.now + 10)
    await sessions_http.refresh_current(app)
    assert hub.current["s2"][0] is newer
    # A room that closed is not read again, and its copy goes with it.
    del hub.sessions["s0"]
    hub.current.pop("s0", None)
    await sessions_http.refresh_current(app)
    assert "s0" not in hub.current


def test_get_many_reads_existing_sessions_in_chunks(db: Database) -> None:
    from gateway.sessions.store import MANY_AT_ONCE

    store = SessionStore(db.open("sessions"))
    n = MANY_AT_ONCE + 7
    for i in range(n):
        store.add(CallSession(f"m{i}", "pat:1", "prov:1", State.SCHEDULED, 1, 1))
    asked = [f"m{i}" for i in range(n)] + ["missing"]
    found = store.get_many(asked)
    assert sorted(found) == sorted(asked[:-1])
    assert found["m3"] == store.get("m3")
    assert store.get_many([]) == {}


# -- identity: revocations, status indexes and signing keys across replicas ---------------
ORIGIN = "https://gw.example"


class Replica:
    """What one gateway process keeps of identity: its own engines on the shared database
    (or the shared data dir), its own key ring on the shared key dir, its own Authority."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = Database(db.data_dir, db.url)
        self.store = IdentityStore(self.db.open("identity"))
        ring = KeyRing.open(db.data_dir / "keys" / "signing", int(clock()), keep_seconds=330)
        self.auth = Authority(
            keys=ring,
            store=self.store,
            clock=clock,
            lifetime=300,
            skew=30,
            dpop_window=60,
            replay=ReplayCache(1000),
        )

    def revoke_subject(self, sid: str) -> list[int]:
        """What the revoke handler does (gateway/auth/http.py)."""
        now = self.auth.now()
        indexes = self.store.revoke_subject(sid, now)
        self.auth.revoked_subjects.update([sid, *self.store.devices(sid)])
        for i in indexes:
            self.auth.status.set(i)
        return indexes

    def close(self) -> None:
        self.store.close()
        self.db.close()


@pytest.fixture
def replicas(db: Database) -> Iterator[tuple[Clock, Replica, Replica]]:
    clock = Clock()
    a, b = Replica(db, clock), Replica(db, clock)
    try:
        yield clock, a, b
    finally:
        a.close()
        b.close()


def _subject(store: IdentityStore, sid: str, role: str, patient: str | None = None) -> Subject:
    key = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64u(key)}
    s = Subject(sid, role, HolderKey.from_jwk(jwk).jkt, jwk, 1, None, patient, {})
    store.add_subject(s)
    return s


async def _issue(r: Replica, s: Subject, log: Log) -> tuple[str, int]:
    token, claims, _ = await r.auth.issue(s, frozenset({"call"}), s.jkt, ORIGIN, log.append)
    return token, int(claims["status"]["status_list"]["idx"])


def _status_bit(r: Replica, idx: int) -> int:
    claims = jwt.decode(r.auth.status_list_token(ORIGIN), options={"verify_signature": False})
    return StatusList.decode(claims["status_list"]).get(idx)


async def test_a_subject_revoked_through_another_replica_is_refused_here_within_a_second(
    replicas: tuple[Clock, Replica, Replica], ledger: Log
) -> None:
    clock, a, b = replicas
    pat = _subject(a.store, "pat:1", "patient")
    dev = _subject(a.store, "dev:1", "device", patient="pat:1")
    token, idx = await _issue(a, pat, ledger)
    dev_token, _ = await _issue(a, dev, ledger)
    a.auth.verify_token(token, ORIGIN)
    assert b.revoke_subject("pat:1") == [idx]
    with pytest.raises(Unauthorized):
        b.auth.verify_token(token, ORIGIN)  # at once where it was revoked
    clock.now += 1.0
    # Here within a second: the patient, their device (which acts only for them), the
    # token's status bit, in verification (introspection) and in the published list.
    assert {"pat:1", "dev:1"} <= a.auth.revoked_subjects
    with pytest.raises(Unauthorized, match="revoked"):
        a.auth.verify_token(token, ORIGIN)
    with pytest.raises(Unauthorized, match="this identity has been revoked"):
        a.auth.verify_token(dev_token, ORIGIN)
    assert _status_bit(a, idx) == 1


async def test_a_token_revoked_through_another_replica_is_refused_and_listed_here(
    replicas: tuple[Clock, Replica, Replica], ledger: Log
) -> None:
    clock, a, b = replicas
    adm = _subject(a.store, "adm:1", "admin")
    token, idx = await _issue(a, adm, ledger)
    kept, kept_idx = await _issue(a, adm, ledger)
    assert _status_bit(a, idx) == 0
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    assert b.store.revoke_token(jti, b.auth.now()) == idx
    clock.now += 1.0
    with pytest.raises(Unauthorized, match="access token has been revoked"):
        a.auth.verify_token(token, ORIGIN)
    assert _status_bit(a, idx) == 1
    assert _status_bit(a, kept_idx) == 0  # the subject's other token is untouched
    a.auth.verify_token(kept, ORIGIN)


async def test_a_revocation_stamped_by_a_clock_behind_this_one_is_still_seen(
    replicas: tuple[Clock, Replica, Replica], ledger: Log
) -> None:
    """Each look reaches back over the allowed clock skew: a replica whose clock is 20 s
    behind stamps its revocations in what this one already looked at."""
    clock, a, b = replicas
    pat = _subject(a.store, "pat:1", "patient")
    token, _ = await _issue(a, pat, ledger)
    clock.now += 5.0
    assert "pat:1" not in a.auth.revoked_subjects  # looked at t0 + 5
    b.store.revoke_subject("pat:1", int(clock.now) - 20)
    clock.now += 1.0
    assert "pat:1" in a.auth.revoked_subjects
    with pytest.raises(Unauthorized):
        a.auth.verify_token(token, ORIGIN)


async def test_replicas_issuing_at_once_never_share_a_status_index(
    replicas: tuple[Clock, Replica, Replica], ledger: Log
) -> None:
    _clock, a, b = replicas
    adm = _subject(a.store, "adm:1", "admin")
    # More than a reserved block each (STATUS_BLOCK), interleaved.
    issued = await asyncio.gather(*(_issue(r, adm, ledger) for _ in range(40) for r in (a, b)))
    indexes = [idx for _token, idx in issued]
    assert len(set(indexes)) == len(indexes) == 80
    # Every token row was written (a shared index would break tokens.status_idx's unique
    # index and fail the request), and revoking one names exactly its own bit.
    for token, idx in issued:
        jti = jwt.decode(token, options={"verify_signature": False})["jti"]
        record = a.store.token(jti)
        assert record is not None and record.status_idx == idx


def test_stores_reserving_from_threads_get_disjoint_blocks(db: Database) -> None:
    dbs = [Database(db.data_dir, db.url) for _ in range(2)]  # two replicas' engines
    stores = [IdentityStore(d.open("identity")) for d in dbs]
    got: list[range] = []

    def reserve(store: IdentityStore) -> None:
        for _ in range(25):
            got.append(store.reserve_status_indexes(3))

    threads = [threading.Thread(target=reserve, args=(s,)) for s in stores for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flat = [i for r in got for i in r]
    assert len(flat) == len(set(flat)) == 100 * 3
    for s, d in zip(stores, dbs, strict=True):
        s.close()
        d.close()


async def test_a_key_rotated_by_another_replica_verifies_here_and_is_in_the_jwks(
    replicas: tuple[Clock, Replica, Replica], ledger: Log
) -> None:
    clock, a, b = replicas
    adm = _subject(a.store, "adm:1", "admin")
    old = a.auth.keys.current.kid
    assert b.auth.keys.current.kid == old  # one ring on disk, made by the first to open it
    a.auth.keys.jwks(int(clock()))  # A has looked at the key dir now
    new = b.auth.keys.rotate(int(clock()))
    token, _ = await _issue(b, adm, ledger)
    assert jwt.get_unverified_header(token)["kid"] == new.kid
    a.auth.verify_token(token, ORIGIN)  # an unknown kid makes A look at once
    clock.now += 1.0
    kids = {k["kid"] for k in a.auth.keys.jwks(int(clock()))["keys"]}
    assert kids == {old, new.kid}
    # A signs with the new key too: nothing is signed with a key retired elsewhere.
    mine, _ = await _issue(a, adm, ledger)
    assert jwt.get_unverified_header(mine)["kid"] == new.kid


def test_a_jwks_sees_a_rotation_by_another_process_within_a_second(tmp_path: Path) -> None:
    keys = tmp_path / "signing"
    a = KeyRing.open(keys, 1000)
    b = KeyRing.open(keys, 1000)
    assert {k["kid"] for k in a.jwks(1000)["keys"]} == {a.current.kid}
    new = b.rotate(1000)
    assert new.kid not in {k["kid"] for k in a.jwks(1000)["keys"]}  # looked this second
    assert new.kid in {k["kid"] for k in a.jwks(1001)["keys"]}


def test_two_rotations_at_once_keep_both_new_keys(tmp_path: Path) -> None:
    """Each rotation starts from the keys on disk under a lock: B, which has not seen A's
    rotation, does not write A's new key out of keys.json (its tokens would then verify
    nowhere)."""
    keys = tmp_path / "signing"
    a = KeyRing.open(keys, 1000)
    b = KeyRing.open(keys, 1000)
    first = a.rotate(1001)
    second = b.rotate(1002)
    on_disk = KeyRing.open(keys, 1003)
    assert first.kid in {k.kid for k in on_disk.keys}
    assert on_disk.current.kid == second.kid
    assert on_disk.verification_key(first.kid, 1003) is not None


async def test_a_gateway_refuses_a_subject_revoked_through_another_replica_within_a_second(
    db: Database, aiohttp_client: Any
) -> None:
    clock = Clock()
    config = Config(data_dir=db.data_dir, database_url=db.url, log_origin="r.example/t/log")
    client = await aiohttp_client(create_app(config, clock=clock))
    h = Holder()
    h.clock = clock
    await enroll(client, local_invite(config), h)
    token = await get_token(client, h)
    idx = jwt.decode(token, options={"verify_signature": False})["status"]["status_list"]["idx"]
    assert (await call(client, "GET", "/v1/me", h, token)).status == 200
    other = Replica(db, clock)
    try:
        assert other.revoke_subject(h.sub) == [idx]
    finally:
        other.close()
    clock.now += 1.0
    r = await call(client, "GET", "/v1/me", h, token)
    assert r.status == 401
    listed = jwt.decode(
        await (await client.get("/v1/status/1")).text(), options={"verify_signature": False}
    )
    assert StatusList.decode(listed["status_list"]).get(idx) == 1
    again = await token_response(client, h)  # nor may it get a new token here
    assert again.status == 401 and "revoked" in (await again.json())["detail"]


async def test_a_replica_that_cannot_read_revocations_fails_closed_and_retries_a_second_later(
    replicas: tuple[Clock, Replica, Replica], tmp_path: Path
) -> None:
    clock, a, _b = replicas
    engine = a.store._engine
    a.store._engine = sqlite_engine(tmp_path)  # a directory: "unable to open database file"
    clock.now += 1.0
    await a.auth.fresh()  # what each request does first: fails off the event loop, quietly
    a.store._engine = engine  # back, but the failure is a second old only by the clock
    with pytest.raises(DatabaseUnavailable) as refused:
        _ = a.auth.revoked_subjects  # a 503, at once, rather than a list a second stale
    assert refused.value.status == 503 and refused.value.headers == {"Retry-After": "1"}
    clock.now += 1.0
    assert a.auth.revoked_subjects == set()
