"""Replicas on different hosts, each with its own COPY of the key dir, on one database: the
signing keys' public parts are published there (identity_0003), so a rotation on one host
holds on every other within a second (docs/postgresql.md, "Rotating the attestation
signing key")."""

from __future__ import annotations

import logging
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.app import create_app
from gateway.auth.dpop import ReplayCache
from gateway.auth.keys import KeyRing, SigningKeyRetired
from gateway.auth.store import IdentityStore, PublishedKey
from gateway.auth.tokens import Authority, Unauthorized
from gateway.config import Config
from gateway.db import Database
from ledger.log import Log
from tests.db.test_replicas import ORIGIN, Clock, _subject
from tests.gateway.idclient import Holder, enroll, get_token, local_invite, token_response


class Host:
    """One gateway process on its own host: its own engines on the shared database, its
    own key ring on its own copy of the key dir, its own Authority."""

    def __init__(self, db: Database, clock: Clock, keys: Path) -> None:
        self.db = Database(db.data_dir, db.url)
        self.store = IdentityStore(self.db.open("identity"))
        self.keys = keys
        ring = KeyRing.open(keys, int(clock()), keep_seconds=330)
        self.auth = Authority(
            keys=ring,
            store=self.store,
            clock=clock,
            lifetime=300,
            skew=30,
            dpop_window=60,
            replay=ReplayCache(1000),
        )

    def close(self) -> None:
        self.store.close()
        self.db.close()


@pytest.fixture
def hosts(db: Database, tmp_path: Path) -> Iterator[tuple[Clock, Host, Host]]:
    """A, and B started from a copy of A's key dir (what an operator deploys)."""
    clock = Clock()
    KeyRing.open(tmp_path / "a" / "signing", int(clock()))
    shutil.copytree(tmp_path / "a" / "signing", tmp_path / "b" / "signing")
    a = Host(db, clock, tmp_path / "a" / "signing")
    b = Host(db, clock, tmp_path / "b" / "signing")
    try:
        yield clock, a, b
    finally:
        a.close()
        b.close()


async def _issue(h: Host, sid: str, log: Log) -> str:
    s = h.store.subject(sid)
    assert s is not None
    token, _, _ = await h.auth.issue(s, frozenset({"call"}), s.jkt, ORIGIN, log.append)
    return token


def _kid(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


def _jwks(h: Host, clock: Clock) -> set[str]:
    return {k["kid"] for k in h.auth.keys.jwks(int(clock()))["keys"]}


def _forged(clock: Clock) -> str:
    """A well-formed token signed by a key nobody published, under a made-up kid."""
    now = int(clock())
    claims = {"iss": ORIGIN, "sub": "adm:x", "aud": ORIGIN, "iat": now, "nbf": now}
    claims |= {"exp": now + 60, "jti": secrets.token_urlsafe(8)}
    headers = {"kid": secrets.token_urlsafe(32), "typ": "at+jwt"}
    return jwt.encode(claims, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers=headers)


async def _verify(auth: Authority, token: str) -> dict[str, Any]:
    """As a request does it: refusal_middleware lets the Authority learn an unknown kid off
    the event loop (``know_kid``), then the handler verifies."""
    await auth.know_kid(f"DPoP {token}")
    return auth.verify_token(token, ORIGIN)


async def test_a_token_signed_after_a_rotation_on_another_host_verifies_here_at_once(
    hosts: tuple[Clock, Host, Host], ledger: Log
) -> None:
    clock, a, b = hosts
    _subject(a.store, "adm:1", "admin")
    old = a.auth.keys.current.kid
    assert b.auth.keys.current.kid == old  # the same key, from copies of one key dir
    before = await _issue(b, "adm:1", ledger)  # signed before the rotation
    new = a.auth.keys.rotate(int(clock()))
    token = await _issue(a, "adm:1", ledger)
    assert _kid(token) == new.kid
    assert new.kid not in {k.kid for k in b.auth.keys.keys}  # not in B's key dir
    await _verify(b.auth, token)  # an unknown kid: B reads the published keys
    assert _jwks(b, clock) == {old, new.kid}
    a.auth.verify_token(before, ORIGIN)  # signed before the retirement: still good


async def test_a_rotation_by_a_process_off_the_database_is_published_before_it_signs(
    hosts: tuple[Clock, Host, Host], ledger: Log
) -> None:
    """``telegate keys rotate`` writes only the key dir; the gateway sharing that dir
    publishes the new key before its first token with it, so no token names a key other
    hosts cannot find."""
    clock, a, b = hosts
    _subject(a.store, "adm:1", "admin")
    new = KeyRing.open(a.keys, int(clock())).rotate(int(clock()))  # no publisher
    token = await _issue(a, "adm:1", ledger)
    assert _kid(token) == new.kid
    await _verify(b.auth, token)


async def test_the_periodic_look_finds_a_new_key_within_a_second(
    hosts: tuple[Clock, Host, Host], ledger: Log
) -> None:
    """Even when the read at once for an unknown kid was just spent (on a forged token)."""
    clock, a, b = hosts
    _subject(a.store, "adm:1", "admin")
    with pytest.raises(Unauthorized, match="unknown key"):
        b.auth.verify_token(_forged(clock), ORIGIN)
    new = a.auth.keys.rotate(int(clock()))
    token = await _issue(a, "adm:1", ledger)
    with pytest.raises(Unauthorized, match="unknown key"):
        b.auth.verify_token(token, ORIGIN)  # B looked less than a second ago
    assert new.kid not in _jwks(b, clock)
    clock.now += 1.0
    await b.auth.fresh()  # what every request does first
    assert new.kid in _jwks(b, clock)
    b.auth.verify_token(token, ORIGIN)


async def test_a_host_whose_key_was_retired_elsewhere_refuses_to_sign_until_the_copy_arrives(
    hosts: tuple[Clock, Host, Host], ledger: Log, caplog: pytest.LogCaptureFixture
) -> None:
    clock, a, b = hosts
    _subject(a.store, "adm:1", "admin")
    old = b.auth.keys.current.kid
    new = a.auth.keys.rotate(int(clock()))
    clock.now += 1.0
    b.auth.refresh()
    with caplog.at_level(logging.ERROR, logger="telegate.auth"):
        for _ in range(3):
            with pytest.raises(SigningKeyRetired) as refused:
                await _issue(b, "adm:1", ledger)
            assert refused.value.status == 503
            assert refused.value.headers.get("Retry-After")
            detail = str(refused.value.detail)
            assert "copy keys/signing from the host that rotated it" in detail
            assert old in detail and new.kid in detail
        with pytest.raises(SigningKeyRetired):
            b.auth.status_list_token(ORIGIN)  # nor the status list
    logged = [r for r in caplog.records if r.getMessage() == "signing key retired elsewhere"]
    assert len(logged) == 1
    # The operator copies the rotated key dir over B's: B signs with the new key at once
    # (issuance looks at keys.json every time), and A accepts it.
    shutil.copytree(a.keys, b.keys, dirs_exist_ok=True)
    token = await _issue(b, "adm:1", ledger)
    assert _kid(token) == new.kid
    a.auth.verify_token(token, ORIGIN)
    jwt.decode(b.auth.status_list_token(ORIGIN), options={"verify_signature": False})


async def test_a_token_signed_here_before_the_retirement_was_learned_is_then_refused_here(
    hosts: tuple[Clock, Host, Host], ledger: Log
) -> None:
    """B signs with the old key for at most a second after A retired it; once B learns of
    the retirement it refuses those tokens as A does, its cache of verified tokens too."""
    clock, a, b = hosts
    _subject(a.store, "adm:1", "admin")
    a.auth.keys.rotate(int(clock()) - 1)
    late = await _issue(b, "adm:1", ledger)  # B has not looked since
    b.auth.verify_token(late, ORIGIN)  # and so accepts it, and remembers it
    with pytest.raises(Unauthorized, match="retired key after its retirement"):
        a.auth.verify_token(late, ORIGIN)
    clock.now += 1.0
    with pytest.raises(Unauthorized, match="retired key after its retirement"):
        b.auth.verify_token(late, ORIGIN)


async def test_forged_kids_cost_at_most_one_database_read_a_second(
    hosts: tuple[Clock, Host, Host], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock, _a, b = hosts
    reads: list[float] = []
    real: Callable[..., list[PublishedKey]] = b.store.signing_keys_since

    def counted(*args: Any) -> list[PublishedKey]:
        reads.append(clock())
        return real(*args)

    monkeypatch.setattr(b.store, "signing_keys_since", counted)
    for step in range(30):  # three seconds of the clock, 20 forged tokens every 0.1 s
        clock.now = 1_700_000_000.0 + step / 10
        for _ in range(20):
            with pytest.raises(Unauthorized, match="unknown key"):
                await _verify(b.auth, _forged(clock))
    # Each second: the once-a-second look every request makes anyway, and one read at once
    # for an unknown kid.
    per_second = [sum(1 for t in reads if int(t) == s) for s in range(1_700_000_000, 1_700_000_003)]
    assert per_second == [1, 2, 2]


def test_a_published_retirement_is_never_undone_or_moved(db: Database) -> None:
    store = IdentityStore(db.open("identity"))
    ring = KeyRing.open(db.data_dir / "keys" / "signing", 100)
    k = ring.current
    jwk = dict(k.public.jwk)
    try:
        store.publish_signing_keys([PublishedKey(k.kid, k.alg, jwk, 100, None)], 100)
        assert store.signing_keys_since(100) == [PublishedKey(k.kid, k.alg, jwk, 100, None)]
        assert store.signing_keys_since(101) == []
        store.publish_signing_keys([PublishedKey(k.kid, k.alg, jwk, 100, 150)], 160)
        for retired in (None, 170):  # a stale copy of the key dir; a later rotation
            store.publish_signing_keys([PublishedKey(k.kid, k.alg, jwk, 100, retired)], 180)
        assert store.signing_keys_since(101) == [PublishedKey(k.kid, k.alg, jwk, 100, 150)]
        assert store.signing_keys_since(161) == []  # changed when retired, not since
    finally:
        store.close()


async def test_a_gateway_whose_key_was_rotated_on_another_host_answers_503_until_copied(
    db: Database, aiohttp_client: Any, tmp_path: Path
) -> None:
    clock = Clock()
    config = Config(data_dir=db.data_dir, database_url=db.url, log_origin="r.example/t/log")
    client = await aiohttp_client(create_app(config, clock=clock))
    h = Holder()
    h.clock = clock
    await enroll(client, local_invite(config), h)
    await get_token(client, h)
    here = db.data_dir / "keys" / "signing"
    shutil.copytree(here, tmp_path / "other" / "signing")
    other = Host(db, clock, tmp_path / "other" / "signing")  # another host, with a copy
    try:
        new = other.auth.keys.rotate(int(clock()))
        clock.now += 1.0
        refused = await token_response(client, h)
        body = await refused.json()
        assert refused.status == 503 and refused.headers.get("Retry-After")
        assert refused.content_type == "application/problem+json"
        assert "copy keys/signing" in body["detail"] and new.kid in body["detail"]
        jwks = await (await client.get("/.well-known/jwks.json")).json()
        assert new.kid in {k["kid"] for k in jwks["keys"]}
        shutil.copytree(other.keys, here, dirs_exist_ok=True)
        token = await get_token(client, h)
        assert _kid(token) == new.kid
        iss = jwt.decode(token, options={"verify_signature": False})["iss"]
        other.auth.verify_token(token, iss)
    finally:
        other.close()


async def test_a_key_removed_from_a_key_dir_unretired_is_withdrawn_on_every_host(
    hosts: tuple[Clock, Host, Host], ledger: Log
) -> None:
    """A wholesale swap (a ring made without ``open`` replaces the set) made a key verify
    nowhere before keys were published; it still does, on the other hosts too."""
    clock, a, b = hosts
    _subject(a.store, "adm:1", "admin")
    old_token = await _issue(b, "adm:1", ledger)
    old = _kid(old_token)
    b.auth.verify_token(old_token, ORIGIN)
    swapped = KeyRing(a.keys).rotate(int(clock()))
    token = await _issue(a, "adm:1", ledger)  # A re-reads its key dir and publishes
    assert _kid(token) == swapped.kid
    assert old not in _jwks(a, clock)
    clock.now += 1.0
    await b.auth.fresh()
    assert _jwks(b, clock) == {swapped.kid}
    with pytest.raises(Unauthorized, match="signed by an unknown key"):
        b.auth.verify_token(old_token, ORIGIN)  # valid a second ago
    with pytest.raises(SigningKeyRetired):
        await _issue(b, "adm:1", ledger)
