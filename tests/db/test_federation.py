"""The federation store (gateway.federation.state) on SQLite and on PostgreSQL, and two
replicas of ``Federation`` deciding on one database at once: a peer checkpoint and a JWKS
pin are compare-and-swap, so a race neither hides a fork nor lowers the kept size."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from gateway.db import Database, for_update, writing
from gateway.federation import Federation, Peer, Refused, TrustList
from gateway.federation.state import FederationState, Link
from gateway.federation.tables import checkpoints, pins
from gateway.federation.verify import StatusRef
from ledger.checkpoint import CosignatureSigner, WitnessedCheckpoint, open_checkpoint
from ledger.note import Signer
from tests.db.test_stores import _blocked
from tests.gateway.idclient import Holder
from tests.witness.conftest import History

ORIGIN = "b.example/telegate/log"


@pytest.fixture
def signer() -> Signer:
    return Signer.generate(ORIGIN)


@pytest.fixture
def peer(signer: Signer) -> Peer:
    witness = CosignatureSigner(Signer.generate("w.example/witness")).verifier
    return Peer(
        name="b",
        issuer="https://b.example",
        log=signer.verifier,
        witnesses=(witness,),
        min_witnesses=1,
        tofu=True,
        ledger_url="https://b.example/ledger",
    )


@pytest.fixture
def replica(db: Database) -> Iterator[Database]:
    """A second replica's view of the same database: its own engine and connections."""
    other = Database(db.data_dir, db.url)
    try:
        yield other
    finally:
        other.close()


def test_checkpoints_forks_pins_and_links_round_trip(db: Database) -> None:
    st = FederationState(db.open("federation"))
    assert st.latest("log") is None and st.fork("log") is None and st.pinned("iss") is None
    assert st.advance("log", 5, b"five", None) == b"five"
    assert st.advance("log", 9, b"nine", b"five") == b"nine"
    assert st.advance("log", 3, b"three", b"nine") == b"nine"  # never lower
    assert st.advance("log", 12, b"twelve", b"five") == b"nine"  # not what it was checked on
    assert st.latest("log") == b"nine"
    st.record_fork("log", 10, (b"a", b"b"))
    st.record_fork("log", 11, (b"c", b"d"))  # the first evidence stays
    assert st.fork("log") == (b"a", b"b")
    assert st.pin("iss", "j1", 100, None) and st.pinned("iss") == ("j1", 100)
    assert not st.pin("iss", "j2", 101, None)  # first use is over
    assert not st.pin("iss", "j3", 102, "j2")  # a rotation from a pin that is not kept
    assert st.pin("iss", "j3", 103, "j1") and st.pinned("iss") == ("j3", 103)
    a = Link("t1", "sub", 1, 50, "b", "f1", StatusRef("https://b.example/s", 7))
    b = Link("t2", "sub", 2, 500, "b", "f2", StatusRef("https://b.example/s", 8))
    st.link(a, 0)
    st.link(b, 0)
    st.link(b, 0)  # the same token again: kept once
    assert sorted(st.links(0), key=lambda k: k.jti) == [a, b]
    st.link(Link("t3", "s", 3, 900, "b", "f3", StatusRef("u", 1)), 51)  # t1 expired
    assert {k.jti for k in st.links(0)} == {"t2", "t3"} and st.links(501)[0].jti == "t3"


def test_an_advance_waits_for_a_competing_one_and_sees_its_result(
    db: Database, replica: Database
) -> None:
    # Replica B advances from the checkpoint it checked while replica A, holding the row,
    # replaces it. Without the row lock (FOR UPDATE / BEGIN IMMEDIATE), B would read the old
    # note, pass the compare, and overwrite A's checkpoint with one never checked against it.
    engine = db.open("federation")
    FederationState(engine).advance("log", 5, b"five", None)
    theirs = FederationState(replica.open("federation"))
    outcome: list[Any] = []
    th = threading.Thread(target=lambda: outcome.append(theirs.advance("log", 9, b"B", b"five")))
    with writing(engine) as conn:
        conn.execute(for_update(sa.select(checkpoints).where(checkpoints.c.log == "log"))).one()
        conn.execute(checkpoints.update().values(size=8, note=b"A"))
        th.start()
        _blocked(db)
    th.join(30)
    assert outcome == [b"A"] and FederationState(engine).latest("log") == b"A"


def test_a_first_pin_waits_for_a_competing_one_and_loses_to_it(
    db: Database, replica: Database
) -> None:
    # Two replicas pin a peer's JWKS on first use, each from its own fetch (which an
    # attacker could answer differently): the first committed pin is the pin, everywhere.
    engine = db.open("federation")
    theirs = FederationState(replica.open("federation"))
    outcome: list[bool] = []
    th = threading.Thread(target=lambda: outcome.append(theirs.pin("iss", "B", 2, None)))
    with writing(engine) as conn:
        conn.execute(pins.insert().values(issuer="iss", jwks="A", fetched=1))
        th.start()
        _blocked(db)
    th.join(30)
    assert outcome == [False] and FederationState(engine).pinned("iss") == ("A", 1)


class Reader:
    """A peer's ledger as one replica reads it: proofs from ``history``. The first proof
    is held until every replica has asked for one (all have read the same kept
    checkpoint), and then until ``after`` is set, if given."""

    def __init__(
        self, history: History, arrived: asyncio.Barrier, after: asyncio.Event | None
    ) -> None:
        self.history, self.arrived, self.after = history, arrived, after
        self.asked: list[tuple[int, int]] = []

    async def jwks(self, peer: Peer) -> Any:
        raise AssertionError("not used")

    async def consistency(self, peer: Peer, old: int, new: int) -> list[bytes]:
        self.asked.append((old, new))
        if len(self.asked) == 1:
            await self.arrived.wait()
            if self.after is not None:
                await self.after.wait()
        return self.history.proof(old, new)


async def _see(fed: Federation, peer: Peer, note: bytes, done: asyncio.Event | None) -> None:
    cp = open_checkpoint(note, peer.log)
    try:
        await fed.extends(peer, note, WitnessedCheckpoint(cp.checkpoint, cp.note, ()), 0)
    finally:
        if done is not None:
            done.set()


def _replicas(
    dbs: tuple[Database, Database], peer: Peer, readers: tuple[Reader, Reader]
) -> list[Federation]:
    return [
        Federation(
            TrustList((peer,)), FederationState(d.open("federation")), r, clock=lambda: 0, skew=30
        )
        for d, r in zip(dbs, readers, strict=True)
    ]


async def test_two_replicas_advancing_from_one_checkpoint_do_not_hide_a_fork(
    db: Database, replica: Database, peer: Peer, signer: Signer
) -> None:
    # Both replicas hold the peer's checkpoint 3. A is shown tree 8 of one history, B tree 8
    # of another (the peer forked after leaf 4): each is consistent with 3, so each passes
    # its check; but they are two roots for one size. A keeps its note first; B's
    # compare-and-swap then fails, B checks its note against A's and catches the fork.
    history = History(signer).grow(8)
    other = history.fork(4).grow(6, tag="other")
    FederationState(db.open("federation")).advance(peer.log.vkey, 3, history.checkpoint(3), None)
    arrived = asyncio.Barrier(2)
    a_done = asyncio.Event()
    readers = (Reader(history, arrived, None), Reader(other, arrived, a_done))
    a, b = _replicas((db, replica), peer, readers)
    results = await asyncio.gather(
        _see(a, peer, history.checkpoint(8), a_done),
        _see(b, peer, other.checkpoint(8), None),
        return_exceptions=True,
    )
    assert results[0] is None
    assert isinstance(results[1], Refused) and results[1].reason == "forked", results
    evidence = a.state.fork(peer.log.vkey)
    assert evidence is not None and set(evidence) == {history.checkpoint(8), other.checkpoint(8)}
    assert a.state.latest(peer.log.vkey) == history.checkpoint(8)
    with pytest.raises(Refused, match="caught forked"):  # at either replica from now on
        await _see(a, peer, history.checkpoint(8), None)


@pytest.mark.parametrize("larger_first", [True, False], ids=["larger-first", "smaller-first"])
async def test_two_replicas_advancing_at_once_keep_the_larger(
    db: Database, replica: Database, peer: Peer, signer: Signer, larger_first: bool
) -> None:
    # Both replicas hold checkpoint 3 and are shown trees 8 and 6 of one history. Whichever
    # keeps its note first, the other is re-checked against it and 8 is what stays.
    history = History(signer).grow(8)
    FederationState(db.open("federation")).advance(peer.log.vkey, 3, history.checkpoint(3), None)
    arrived = asyncio.Barrier(2)
    first_done = asyncio.Event()
    sizes = (8, 6) if larger_first else (6, 8)
    readers = (Reader(history, arrived, None), Reader(history, arrived, first_done))
    a, b = _replicas((db, replica), peer, readers)
    await asyncio.gather(
        _see(a, peer, history.checkpoint(sizes[0]), first_done),
        _see(b, peer, history.checkpoint(sizes[1]), None),
    )
    assert b.state.latest(peer.log.vkey) == history.checkpoint(8)
    # The second was checked against the first's note: a proof between 6 and 8 was read.
    assert (6, 8) in readers[1].asked
    assert a.state.fork(peer.log.vkey) is None


class JwksReader:
    """A peer's JWKS as one replica fetches it: ``keys`` (an attacker on one path could
    serve each replica another set). Each fetch is held until both replicas fetched."""

    def __init__(self, kid: str, fetched: asyncio.Barrier) -> None:
        self.jwks_doc = {"keys": [{**Holder().jwk, "kid": kid}]}
        self.fetched = fetched

    async def jwks(self, peer: Peer) -> Any:
        await self.fetched.wait()
        return self.jwks_doc

    async def consistency(self, peer: Peer, old: int, new: int) -> list[bytes]:
        raise AssertionError("not used")


async def test_two_replicas_pinning_on_first_use_pin_one_jwks(
    db: Database, replica: Database, peer: Peer
) -> None:
    # Both replicas meet the peer for the first time at once and fetch different sets: the
    # one pinned first is the pin at both, and the other replica uses it, not its own fetch.
    fetched = asyncio.Barrier(2)
    readers = (JwksReader("ka", fetched), JwksReader("kb", fetched))
    a, b = [
        Federation(
            TrustList((peer,)), FederationState(d.open("federation")), r, clock=lambda: 0, skew=30
        )
        for d, r in zip((db, replica), readers, strict=True)
    ]
    got = await asyncio.gather(a._keys(peer, "ka", 100), b._keys(peer, "kb", 100))
    pinned = a.state.pinned(peer.issuer)
    assert pinned is not None
    (kid,) = [k["kid"] for k in json.loads(pinned[0])["keys"]]
    assert [set(g) for g in got] == [{kid}, {kid}]
