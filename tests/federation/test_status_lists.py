"""A peer's Token Status List as A reads it, against hand-made lists and a scripted peer:
where a list may be, what makes one valid, how long it is kept, what a peer that is down
gets, and which of A's tokens a list revokes. Time is a number passed in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from gateway.auth.jwk import HolderKey, b64u
from gateway.auth.status import StatusList
from gateway.db import Database
from gateway.federation import Peer, PinnedKey, Refused, TrustList
from gateway.federation.keys import by_kid
from gateway.federation.peers import Unreachable
from gateway.federation.revocation import RETRY, Revocations, StatusLists
from gateway.federation.state import FederationState, Link
from gateway.federation.statuslist import DEFAULT_TTL, MAX_TTL, verify_status_list
from gateway.federation.verify import StatusRef, status_ref
from ledger.checkpoint import CosignatureSigner
from ledger.note import Signer
from tests.gateway.idclient import Holder

ISSUER = "https://b.example"
URI = f"{ISSUER}/v1/status/1"
NOW = 1_700_000_000
SKEW = 30
B_KEY = Holder()


def make_peer(name: str = "b") -> Peer:
    return Peer(
        name=name,
        issuer=ISSUER,
        log=Signer.generate("b.example/telegate/log").verifier,
        witnesses=(CosignatureSigner(Signer.generate("w.example/witness")).verifier,),
        min_witnesses=1,
        keys=(PinnedKey("k1", HolderKey.from_jwk(B_KEY.jwk)),),
        ledger_url=f"{ISSUER}/ledger",
    )


PEER = make_peer()
KEYS = by_kid(PEER.keys)


def status_jwt(
    revoked: tuple[int, ...] = (),
    *,
    key: Holder = B_KEY,
    header: dict[str, Any] | None = None,
    **over: Any,
) -> str:
    """A list as telegate signs one (gateway.auth.tokens), with ``over`` claims replaced
    (None drops a claim)."""
    bits = StatusList()
    for i in revoked:
        bits.set(i)
    claims: dict[str, Any] = {
        "sub": URI,
        "iat": NOW,
        "exp": NOW + 300,
        "ttl": 60,
        "status_list": bits.encode(),
    }
    claims.update(over)
    claims = {k: v for k, v in claims.items() if v is not None}
    head = {"kid": "k1", "typ": "statuslist+jwt", **(header or {})}
    return jwt.encode(claims, key.key, algorithm=key.alg, headers=head)


def check(text: str, now: int = NOW) -> Any:
    return verify_status_list(text, URI, PEER, KEYS, now, SKEW)


# -- where a list may be --------------------------------------------------------------
def _token_claims(uri: Any, idx: Any = 7) -> dict[str, Any]:
    return {"status": {"status_list": {"idx": idx, "uri": uri}}}


@pytest.mark.parametrize(
    "uri",
    [URI, f"{ISSUER}/lists/7?part=2", f"{ISSUER}/@c.example/v1/status/1"],
    ids=["telegate", "another-path", "at-sign-in-path"],
)
def test_a_list_under_the_issuer(uri: str) -> None:
    assert status_ref(_token_claims(uri), PEER) == StatusRef(uri, 7)


@pytest.mark.parametrize(
    "uri",
    [
        "https://c.example/v1/status/1",
        "https://b.example.c.example/v1/status/1",
        "https://b.example:8443/v1/status/1",
        "http://b.example/v1/status/1",
        "https://b.example@c.example/v1/status/1",
        "https://B.EXAMPLE/v1/status/1",
        f"{URI}#other",
        ISSUER,
        "/v1/status/1",
        f"{ISSUER}/{'x' * 512}",
    ],
    ids=[
        "another-host",
        "suffix-host",
        "another-port",
        "another-scheme",
        "userinfo",
        "not-as-the-trust-list-writes-it",
        "fragment",
        "no-path",
        "relative",
        "too-long",
    ],
)
def test_a_list_anywhere_else_is_refused(uri: str) -> None:
    with pytest.raises(Refused) as e:
        status_ref(_token_claims(uri), PEER)
    assert e.value.reason == "status_uri"


@pytest.mark.parametrize(
    "claims",
    [{}, {"status": {}}, _token_claims(URI, -1), _token_claims(URI, True), _token_claims(7)],
    ids=["no-status", "no-status-list", "negative-idx", "bool-idx", "uri-not-a-string"],
)
def test_a_token_without_a_status_entry_is_refused(claims: dict[str, Any]) -> None:
    with pytest.raises(Refused) as e:
        status_ref(claims, PEER)
    assert e.value.reason == "bad_token"


# -- what makes a list valid ---------------------------------------------------------------
def test_a_list_gives_each_tokens_bit() -> None:
    lst = check(status_jwt((3, 17)))
    assert [lst.revoked(i) for i in (0, 3, 16, 17)] == [False, True, False, True]
    # telegate's lists end at their last set bit: a later index was never revoked.
    assert not lst.revoked(10_000)


@pytest.mark.parametrize(
    ("over", "until"),
    [
        ({}, NOW + 60),
        ({"ttl": 10_000}, NOW + MAX_TTL),
        ({"ttl": None}, NOW + DEFAULT_TTL),
        ({"exp": NOW + 10}, NOW + 10 + SKEW),
        ({"exp": None}, NOW + 60),
        ({"iat": NOW - 20}, NOW + 60),
        ({"iat": NOW - 50}, NOW - 50 + SKEW + 60),
        ({"iat": NOW + 20}, NOW + 60),
        ({"iat": NOW - SKEW - 60}, NOW),
        ({"ttl": 0}, NOW),
    ],
    ids=[
        "ttl",
        "ttl-capped",
        "no-ttl",
        "exp-first",
        "no-exp",
        "signed-within-skew",
        "signed-earlier",
        "signed-ahead-within-skew",
        "at-its-ttl-for-this-check-only",
        "ttl-zero-for-this-check-only",
    ],
)
def test_how_long_a_list_is_kept(over: dict[str, Any], until: int) -> None:
    assert check(status_jwt(**over)).until == until


def _hmac() -> str:
    claims = jwt.decode(status_jwt(), options={"verify_signature": False})
    headers = {"kid": "k1", "typ": "statuslist+jwt"}
    return jwt.encode(claims, B_KEY.jwk["x"], algorithm="HS256", headers=headers)


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        (status_jwt(header={"kid": "k2"}), "not pinned"),
        (status_jwt(key=Holder()), "does not verify"),
        (status_jwt(key=Holder("ES256")), "algorithm or type"),
        (_hmac(), "algorithm or type"),
        (status_jwt(header={"typ": "at+jwt"}), "algorithm or type"),
        (status_jwt(header={"typ": None}), "algorithm or type"),
        (status_jwt(sub=f"{ISSUER}/v1/status/2"), "another uri"),
        (status_jwt(iss="https://c.example"), "another issuer"),
        (status_jwt(iat=NOW + SKEW + 1), "future"),
        (status_jwt(iat=NOW - 400, exp=NOW - SKEW), "expired"),
        (status_jwt(iat=NOW - SKEW - 61), "older than its ttl"),
        (status_jwt(ttl=-1), "malformed"),
        (status_jwt(iat="now"), "malformed"),
        (status_jwt(status_list={"bits": 2, "lst": b64u(b"x")}), "1-bit"),
        (status_jwt(status_list={"bits": 1, "lst": b64u(b"not zlib")}), "does not decode"),
        (status_jwt(status_list=None), "does not verify"),
        ("not.a.jws", "compact JWS"),
    ],
    ids=[
        "unpinned-kid",
        "forged-under-pinned-kid",
        "another-algorithm",
        "hmac-with-the-public-key",
        "a-token-not-a-list",
        "no-typ",
        "another-list",
        "another-issuer",
        "dated-ahead",
        "expired",
        "replayed-after-its-ttl",
        "negative-ttl",
        "iat-not-a-number",
        "two-bit-list",
        "not-zlib",
        "no-status-list",
        "garbage",
    ],
)
def test_a_list_that_is_refused(text: str, detail: str) -> None:
    with pytest.raises(Refused) as e:
        check(text)
    assert e.value.reason == "bad_status_list"
    assert detail in str(e.value.detail), e.value.detail


# -- how long a list is kept, and a peer that is down ---------------------------------------
class ScriptedPeer:
    """B's status list endpoint as a test scripts it."""

    def __init__(self) -> None:
        self.text = status_jwt()
        self.failure: Exception | None = None
        self.fetches = 0

    async def jwks(self, peer: Peer) -> Any:
        raise AssertionError("keys are pinned")

    async def consistency(self, peer: Peer, old: int, new: int) -> list[bytes]:
        raise AssertionError("not used")

    async def status_list(self, peer: Peer, uri: str) -> str:
        self.fetches += 1
        if self.failure is not None:
            raise self.failure
        return self.text


async def _pinned(peer: Peer, kid: str, now: int) -> Any:
    return by_kid(peer.keys)


@pytest.fixture
def b() -> ScriptedPeer:
    return ScriptedPeer()


@pytest.fixture
def lists(b: ScriptedPeer) -> StatusLists:
    return StatusLists(b, _pinned, skew=SKEW)


async def test_a_list_is_kept_until_due(lists: StatusLists, b: ScriptedPeer) -> None:
    first, fetched = await lists.get(PEER, URI, NOW)
    assert fetched and first.until == NOW + 60
    b.text = status_jwt((5,), iat=NOW + 30)  # B revokes a token
    for now in (NOW + 1, NOW + 59):
        lst, fetched = await lists.get(PEER, URI, now)
        assert lst is first and not fetched and not lst.revoked(5)
    assert b.fetches == 1
    lst, fetched = await lists.get(PEER, URI, NOW + 60)
    assert fetched and lst.revoked(5) and b.fetches == 2


async def test_a_peer_down_when_its_list_is_due_fails_closed(
    lists: StatusLists, b: ScriptedPeer
) -> None:
    await lists.get(PEER, URI, NOW)
    b.failure = Unreachable("connection refused")
    with pytest.raises(Refused) as e:
        await lists.get(PEER, URI, NOW + 60)  # the kept list is not served once due
    assert (e.value.reason, e.value.status, e.value.error) == (
        "peer_unreachable",
        503,
        "temporarily_unavailable",
    )
    # Within the retry delay A refuses at once instead of asking B again, even once B is up.
    b.failure = None
    b.text = status_jwt(iat=NOW + 64)
    with pytest.raises(Refused):
        await lists.get(PEER, URI, NOW + 60 + RETRY - 1)
    assert b.fetches == 2
    lst, fetched = await lists.get(PEER, URI, NOW + 60 + RETRY)
    assert fetched and lst.until == NOW + 60 + RETRY + 60


async def test_a_list_that_does_not_verify_is_not_kept(lists: StatusLists, b: ScriptedPeer) -> None:
    await lists.get(PEER, URI, NOW)
    b.text = status_jwt(key=Holder(), iat=NOW + 60)
    with pytest.raises(Refused) as e:
        await lists.get(PEER, URI, NOW + 60)
    assert e.value.reason == "bad_status_list"
    with pytest.raises(Refused):
        await lists.get(PEER, URI, NOW + 61)
    assert b.fetches == 2


# -- which of A's tokens a list revokes ----------------------------------------------------
def link(jti: str, idx: int, exp: int = NOW + 300) -> Link:
    return Link(jti, f"prov:{jti}", 100 + idx, exp, "b", f"b-{jti}", StatusRef(URI, idx))


class Revoked:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def __call__(self, link: Link, reason: str) -> None:
        self.calls.append((link.jti, reason))


@pytest.fixture
def state(tmp_path: Path) -> Iterator[FederationState]:
    db = Database(tmp_path)
    try:
        yield FederationState(db.open("federation"))
    finally:
        db.close()


def follower(
    state: FederationState, lists: StatusLists, peers: tuple[Peer, ...] = (PEER,)
) -> tuple[Revocations, Revoked]:
    revoked = Revoked()
    return Revocations(TrustList(peers), state, lists, skew=SKEW, revoke=revoked), revoked


async def test_an_exchange_of_a_revoked_token_is_refused(
    state: FederationState, lists: StatusLists, b: ScriptedPeer
) -> None:
    revs, _ = follower(state, lists)
    b.text = status_jwt((7,))
    await revs.check(PEER, StatusRef(URI, 6), NOW)
    with pytest.raises(Refused) as e:
        await revs.check(PEER, StatusRef(URI, 7), NOW)
    assert e.value.reason == "revoked_at_peer"


async def test_a_token_issued_here_is_revoked_once_its_peer_bit_is_seen(
    state: FederationState, lists: StatusLists, b: ScriptedPeer
) -> None:
    revs, revoked = follower(state, lists)
    await revs.follow(link("t1", 1), NOW)
    t1 = revs.link_of("t1", NOW)
    assert t1 is not None and revs.following
    await revs.recheck(t1, NOW)
    b.text = status_jwt((1,), iat=NOW + 10)  # B revokes at NOW + 10
    await revs.recheck(t1, NOW + 59)  # A's list is not due: within the bound
    assert revoked.calls == []
    await revs.recheck(t1, NOW + 60)
    assert revoked.calls == [("t1", "revoked_at_peer")]
    assert revs.link_of("t1", NOW + 60) is None
    b.text = status_jwt((1,), iat=NOW + 200)  # read again later: revoked once only
    await revs.recheck(t1, NOW + 200)
    assert revoked.calls == [("t1", "revoked_at_peer")] and b.fetches == 3


async def test_a_fresh_list_revokes_every_token_it_shows_revoked(
    state: FederationState, lists: StatusLists, b: ScriptedPeer
) -> None:
    revs, revoked = follower(state, lists)
    for jti, idx in (("t1", 1), ("t2", 2), ("t3", 3)):
        await revs.follow(link(jti, idx), NOW)
    b.text = status_jwt((1, 3))
    await revs.check(PEER, StatusRef(URI, 2), NOW)  # an exchange reads the list
    assert sorted(revoked.calls) == [("t1", "revoked_at_peer"), ("t3", "revoked_at_peer")]


async def test_a_token_of_a_peer_no_longer_trusted_is_revoked(
    state: FederationState, lists: StatusLists, b: ScriptedPeer
) -> None:
    revs, revoked = follower(state, lists, peers=(make_peer("c"),))
    await revs.follow(link("t1", 1), NOW)
    t1 = revs.link_of("t1", NOW)
    assert t1 is not None
    await revs.recheck(t1, NOW)
    assert revoked.calls == [("t1", "peer_untrusted")] and b.fetches == 0


async def test_links_outlive_a_restart_until_their_tokens_expire(
    tmp_path: Path, lists: StatusLists
) -> None:
    db = Database(tmp_path)
    state = FederationState(db.open("federation"))
    revs, _ = follower(state, lists)
    await revs.follow(link("t1", 1, exp=NOW + 10), NOW)
    await revs.follow(link("t2", 2, exp=NOW + 300), NOW)
    db.close()
    db = Database(tmp_path)
    state = FederationState(db.open("federation"))
    try:
        assert {k.jti for k in state.links(NOW)} == {"t1", "t2"}
        assert state.links(NOW + 11) == [link("t2", 2, exp=NOW + 300)]
        again, _ = follower(state, lists)
        again.load(state.links(NOW - SKEW))
        assert again.link_of("t1", NOW + 10 + SKEW) is not None
        assert again.link_of("t1", NOW + 11 + SKEW) is None  # A's token expired, skew too
    finally:
        db.close()


class _Counting(FederationState):
    """The store, counting the links read from it by token id."""

    def __init__(self, state: FederationState) -> None:
        super().__init__(state._engine)
        self.reads = 0

    def linked(self, jti: str) -> Link | None:
        self.reads += 1
        return super().linked(jti)


async def test_a_token_issued_by_another_replica_is_followed_here(
    state: FederationState, lists: StatusLists, b: ScriptedPeer
) -> None:
    # Replica A issues t1 by exchange; t1 is then shown to replica B, which never followed
    # it. B finds the link in the shared store and revokes t1 once B's peer revokes its token.
    a, _ = follower(state, lists)
    theirs = _Counting(state)
    b_revs, b_revoked = follower(theirs, lists)
    await a.follow(link("t1", 1), NOW)
    assert b_revs.link_of("t1", NOW) is None  # not in B's memory
    t1 = await b_revs.find("t1", NOW)
    assert t1 == link("t1", 1) and await b_revs.find("t1", NOW) == t1 and theirs.reads == 1
    b.text = status_jwt((1,), iat=NOW + 10)
    await b_revs.recheck(t1, NOW + 60)
    assert b_revoked.calls == [("t1", "revoked_at_peer")]
    # A token that is not one issued by exchange is read from the store once, then known.
    assert await b_revs.find("local-token", NOW) is None
    assert await b_revs.find("local-token", NOW) is None and theirs.reads == 2
    # An expired link found in the store is not followed.
    await a.follow(link("t2", 2, exp=NOW + 5), NOW)
    assert await b_revs.find("t2", NOW + 5 + SKEW + 1) is None
