"""``ledger.receipts.verify_witnessed_receipt``: a receipt from another log, checked with
that log's vkey and the witnesses the verifier requires (pure, hand-made logs)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from ledger.checkpoint import CosignatureSigner, NotWitnessed, cosign
from ledger.errors import InvalidNote, InvalidProof
from ledger.log import Receipt
from ledger.merkle import inclusion_proof, leaf_hash, root_of
from ledger.note import Signer
from ledger.receipts import verify_witnessed_receipt
from tests.witness.conftest import T0, History

W1, W2, W3 = (CosignatureSigner(Signer.generate(f"w{i}.example/witness")) for i in (1, 2, 3))


def receipt(h: History, index: int, *witnesses: CosignatureSigner) -> Receipt:
    note = h.checkpoint()
    for w in witnesses:
        note = cosign(note, w, T0)
    hashes = [leaf_hash(e) for e in h.leaves]

    def read(nodes: Sequence[tuple[int, int]]) -> list[bytes]:
        return [root_of(hashes[i << lvl : (i + 1) << lvl]) for lvl, i in nodes]

    proof = inclusion_proof(index, len(hashes), read)
    return Receipt(index, hashes[index], note, tuple(proof))


@pytest.fixture
def history() -> History:
    return History(Signer.generate("b.example/telegate/log")).grow(11)


def test_a_witnessed_receipt(history: History) -> None:
    r = receipt(history, 6, W1, W2)
    w = verify_witnessed_receipt(
        r, history.leaves[6], history.signer.verifier, [W1.verifier, W2.verifier, W3.verifier], 2
    )
    assert w.checkpoint.size == 11 and sorted(c.name for c in w.cosignatures) == [
        "w1.example/witness",
        "w2.example/witness",
    ]


def test_too_few_of_the_required_witnesses(history: History) -> None:
    r = receipt(history, 6, W1, W3)  # W3 cosigned, but it is not one this verifier requires
    with pytest.raises(NotWitnessed) as e:
        verify_witnessed_receipt(
            r, history.leaves[6], history.signer.verifier, [W1.verifier, W2.verifier], 2
        )
    assert [c.name for c in e.value.found] == ["w1.example/witness"]


def test_another_entry_a_bad_proof_another_log(history: History) -> None:
    r = receipt(history, 6, W1)
    log, ws = history.signer.verifier, [W1.verifier]
    with pytest.raises(InvalidProof, match="not the receipt's leaf"):
        verify_witnessed_receipt(r, history.leaves[5], log, ws, 1)
    bad = Receipt(5, r.leaf_hash, r.checkpoint, r.proof)  # the right leaf, the wrong place
    with pytest.raises(InvalidProof):
        verify_witnessed_receipt(bad, history.leaves[6], log, ws, 1)
    beyond = Receipt(11, r.leaf_hash, r.checkpoint, r.proof)
    with pytest.raises(InvalidProof, match="beyond"):
        verify_witnessed_receipt(beyond, history.leaves[6], log, ws, 1)
    other = Signer.generate("b.example/telegate/log").verifier  # same name, another key
    with pytest.raises(InvalidNote):
        verify_witnessed_receipt(r, history.leaves[6], other, ws, 1)
