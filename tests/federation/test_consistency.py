"""A's memory of a peer's log (``Federation.extends``), against hand-made histories: every
way two checkpoints of one key can relate, and what a peer's answers make of them."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from gateway.db import Database
from gateway.federation import Federation, Peer, Refused, TrustList
from gateway.federation.peers import CannotProve, Unreachable
from gateway.federation.state import FederationState
from ledger.checkpoint import CosignatureSigner, WitnessedCheckpoint, open_checkpoint
from ledger.note import Signer
from tests.witness.conftest import History

ORIGIN = "b.example/telegate/log"


class Reader:
    """A peer's ledger as a test scripts it: proofs from ``history``, or a failure."""

    def __init__(self, history: History) -> None:
        self.history = history
        self.failure: Exception | None = None
        self.asked: list[tuple[int, int]] = []

    async def jwks(self, peer: Peer) -> Any:
        raise AssertionError("not used")

    async def consistency(self, peer: Peer, old: int, new: int) -> list[bytes]:
        self.asked.append((old, new))
        if self.failure is not None:
            raise self.failure
        return self.history.proof(old, new)


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
def history(signer: Signer) -> History:
    return History(signer).grow(8)


@pytest.fixture
def parts(tmp_path: Path, peer: Peer, history: History) -> Iterator[tuple[Federation, Reader]]:
    reader = Reader(history)
    db = Database(tmp_path)
    state = FederationState(db.open("federation"))
    try:
        yield Federation(TrustList((peer,)), state, reader, clock=lambda: 0, skew=30), reader
    finally:
        db.close()


async def _see(fed: Federation, peer: Peer, note: bytes) -> None:
    cp = open_checkpoint(note, peer.log)
    await fed.extends(peer, note, WitnessedCheckpoint(cp.checkpoint, cp.note, ()), 0)


def _kept(fed: Federation, peer: Peer) -> int:
    note = fed.state.latest(peer.log.vkey)
    assert note is not None
    return open_checkpoint(note, peer.log).checkpoint.size


async def test_one_history_moves_forward_and_back(
    parts: tuple[Federation, Reader], peer: Peer, history: History
) -> None:
    fed, reader = parts
    await _see(fed, peer, history.checkpoint(5))
    assert reader.asked == [] and _kept(fed, peer) == 5
    await _see(fed, peer, history.checkpoint(8))
    await _see(fed, peer, history.checkpoint(3))  # an older receipt, still consistent
    await _see(fed, peer, history.checkpoint(8))  # the same size: no proof needed
    assert reader.asked == [(5, 8), (3, 8)] and _kept(fed, peer) == 8


@pytest.mark.parametrize(
    ("seen", "then", "answer"),
    [
        (5, 5, None),  # two roots for one size: no proof asked, none could help
        (5, 8, None),  # the peer's proof is of its other history
        (8, 5, None),  # the smaller tree is not a prefix of the one kept
        (5, 8, CannotProve("no such tree")),  # it signed a tree it cannot show
    ],
    ids=["same-size", "larger", "smaller", "cannot-prove"],
)
async def test_two_histories_are_a_fork(
    parts: tuple[Federation, Reader],
    peer: Peer,
    history: History,
    seen: int,
    then: int,
    answer: Exception | None,
) -> None:
    fed, reader = parts
    fork = history.fork(2).grow(8, tag="other")
    reader.history = fork
    await _see(fed, peer, history.checkpoint(seen))
    reader.failure = answer
    with pytest.raises(Refused) as e:
        await _see(fed, peer, fork.checkpoint(then))
    assert e.value.reason == "forked"
    evidence: Sequence[str] = e.value.data["evidence"]
    assert {n.encode() for n in evidence} == {history.checkpoint(seen), fork.checkpoint(then)}
    assert fed.state.fork(peer.log.vkey) is not None
    # Caught once, refused always: even the history it was first seen with.
    with pytest.raises(Refused) as again:
        await _see(fed, peer, history.checkpoint(seen))
    assert again.value.reason == "peer_forked"


async def test_an_unreachable_peer_is_neither_trusted_nor_called_forked(
    parts: tuple[Federation, Reader], peer: Peer, history: History
) -> None:
    fed, reader = parts
    await _see(fed, peer, history.checkpoint(5))
    reader.failure = Unreachable("down")
    with pytest.raises(Refused) as e:
        await _see(fed, peer, history.checkpoint(8))
    assert (e.value.reason, e.value.status, e.value.error) == (
        "peer_unreachable",
        503,
        "temporarily_unavailable",
    )
    assert _kept(fed, peer) == 5 and fed.state.fork(peer.log.vkey) is None
