"""Counting cosignatures (k of n), the client side of add-checkpoint, and fork evidence.

Pure functions, tested against the witness's own decisions (``ledger.witness``) and notes
signed here with real keys.
"""

from __future__ import annotations

import pytest

from ledger.checkpoint import CosignatureSigner, NotWitnessed, cosign, verify_witnessed
from ledger.cosigning import (
    BadWitnessAnswer,
    accept_cosignature,
    add_checkpoint_body,
    parse_size_body,
    with_cosignatures,
)
from ledger.errors import InvalidCheckpoint, InvalidNote, InvalidProof
from ledger.note import Signer, parse_note
from ledger.verify import LogForked, check_fork, verify_checkpoint_consistency
from ledger.witness import LogState, Witness, WitnessedLog, parse_add_checkpoint

from .conftest import ORIGIN, T0, History, request_body


def witnesses(n: int) -> list[CosignatureSigner]:
    return [CosignatureSigner(Signer.generate(f"w{i}.example/witness")) for i in range(n)]


def cosigned(note: bytes, by: list[CosignatureSigner]) -> bytes:
    for w in by:
        note = cosign(note, w, T0)
    return note


def test_k_of_n(history: History) -> None:
    ws = witnesses(3)
    keys = [w.verifier for w in ws]
    note = cosigned(history.checkpoint(), ws[:2])
    got = verify_witnessed(note, history.signer.verifier, keys, 2)
    assert [c.name for c in got.cosignatures] == ["w0.example/witness", "w1.example/witness"]
    assert got.checkpoint.size == 10
    verify_witnessed(note, history.signer.verifier, keys, 0)
    with pytest.raises(NotWitnessed, match="2 of the 3 required") as e:
        verify_witnessed(note, history.signer.verifier, keys, 3)
    assert len(e.value.found) == 2
    # A plain checkpoint is witnessed by nobody; k = 0 accepts it.
    verify_witnessed(history.checkpoint(), history.signer.verifier, keys, 0)
    with pytest.raises(NotWitnessed, match="found: none"):
        verify_witnessed(history.checkpoint(), history.signer.verifier, keys, 1)


def test_a_witness_counts_once(history: History) -> None:
    (w,) = witnesses(1)
    twice = cosign(cosign(history.checkpoint(), w, T0), w, T0 + 1)
    with pytest.raises(NotWitnessed, match="1 of the 2"):
        other = witnesses(2)[1].verifier
        verify_witnessed(twice, history.signer.verifier, [w.verifier, w.verifier, other], 2)
    # Listing one key twice does not make a quorum of two possible.
    with pytest.raises(ValueError, match="cannot be met"):
        verify_witnessed(twice, history.signer.verifier, [w.verifier, w.verifier], 2)


def test_lines_by_unknown_keys_are_ignored_and_bad_ones_reject(history: History) -> None:
    ws = witnesses(2)
    note = cosigned(history.checkpoint(), ws)
    # Only w1 is listed: w0's line is an unknown key's, skipped (signed-note).
    verify_witnessed(note, history.signer.verifier, [ws[1].verifier], 1)
    # A listed witness's line that does not verify rejects the note.
    p = parse_note(note)
    bad = p.signatures[-1]
    forged = bad.__class__(
        bad.name, bad.key_id, bad.signature[:-1] + bytes([bad.signature[-1] ^ 1])
    )
    tampered = p.__class__(p.text, (*p.signatures[:-1], forged)).encode()
    with pytest.raises(InvalidNote, match="does not verify"):
        verify_witnessed(tampered, history.signer.verifier, [ws[1].verifier], 1)
    # The log's own signature is required, and a log key is no witness key.
    with pytest.raises(InvalidNote):
        verify_witnessed(note, Signer.generate(ORIGIN).verifier, [ws[0].verifier], 1)
    with pytest.raises(InvalidNote, match="cosignature/v1"):
        verify_witnessed(note, history.signer.verifier, [history.signer.verifier], 1)
    with pytest.raises(InvalidCheckpoint):
        verify_witnessed(note, history.signer.verifier, [], 0, origin="other.example/log")


def test_the_body_is_what_the_witness_parses(history: History) -> None:
    note = history.grow(6).checkpoint()
    proof = history.proof(10)
    body = add_checkpoint_body(10, proof, note)
    assert body == request_body(10, proof, note)  # the hand-written tlog-witness form
    req = parse_add_checkpoint(body)
    assert (req.old_size, req.proof, req.note) == (10, tuple(proof), note)
    assert add_checkpoint_body(0, [], note).startswith(b"old 0\n\n")
    with pytest.raises(ValueError):
        add_checkpoint_body(0, proof, note)
    with pytest.raises(ValueError):
        add_checkpoint_body(10, [b"short"], note)


@pytest.mark.parametrize(
    ("body", "size"),
    [(b"0\n", 0), (b"10\n", 10), (b"9223372036854775807\n", (1 << 63) - 1)],
)
def test_409_size_bodies(body: bytes, size: int) -> None:
    assert parse_size_body(body) == size


@pytest.mark.parametrize(
    "body",
    [b"", b"10", b"010\n", b"-1\n", b" 10\n", b"10\n\n", b"1e3\n", b"9223372036854775808\n"],
    ids=["empty", "no-newline", "leading-zero", "negative", "space", "two-lines", "exp", "2^63"],
)
def test_409_bad_size_bodies(body: bytes) -> None:
    with pytest.raises(BadWitnessAnswer):
        parse_size_body(body)


def test_a_200_answer_is_checked_against_the_pinned_key(history: History) -> None:
    (w,) = witnesses(1)
    log = WitnessedLog(ORIGIN, (history.signer.verifier,))
    witness = Witness(w, [log])
    note = history.checkpoint()
    req = parse_add_checkpoint(history.body(0))
    answer = witness.cosign(witness.check(req, LogState()), LogState(), T0).lines
    line, ts = accept_cosignature(note, answer, w.verifier)
    assert (line, ts) == (answer, T0)
    # Extra lines by another key are dropped, not kept unverified.
    (other,) = [cosign(note, x, T0) for x in witnesses(1)]
    extra = other[len(note) :]
    assert accept_cosignature(note, answer + extra, w.verifier)[0] == answer
    for bad in (extra, b"", b"garbage\n", answer.replace(b"w0", b"w9")):
        with pytest.raises(BadWitnessAnswer):
            accept_cosignature(note, bad, w.verifier)
    # A valid line for another checkpoint is not a cosignature of this one.
    with pytest.raises(BadWitnessAnswer, match="does not verify"):
        accept_cosignature(history.grow(1).checkpoint(), answer, w.verifier)


def test_with_cosignatures_appends_once(history: History) -> None:
    ws = witnesses(2)
    note = history.checkpoint()
    lines = [cosign(note, w, T0)[len(note) :] for w in ws]
    both = with_cosignatures(note, [*lines, lines[0]])
    assert both == note + lines[0] + lines[1]
    assert with_cosignatures(both, lines) == both
    verify_witnessed(both, history.signer.verifier, [w.verifier for w in ws], 2)


def test_fork_evidence_carries_both_notes(history: History) -> None:
    log = history.signer.verifier
    old = history.checkpoint()
    fork = history.fork(6).grow(6, tag="b")
    history.grow(2)
    check_fork(old, history.checkpoint(), history.proof(10), log)
    verify_checkpoint_consistency(history.checkpoint(), old, history.proof(10), log)
    # Same size, other root: no proof can join them.
    with pytest.raises(LogForked) as e:
        check_fork(history.checkpoint(12), fork.checkpoint(12), [], log)
    assert e.value.evidence == (history.checkpoint(12), fork.checkpoint(12))
    assert isinstance(e.value, InvalidProof)
    # A rollback to another history: the larger tree does not extend the smaller.
    with pytest.raises(LogForked) as e:
        check_fork(fork.checkpoint(12), old, fork.proof(10, 12), log)
    assert e.value.evidence == (old, fork.checkpoint(12))
    report = e.value.report()
    assert old.decode() in report and fork.checkpoint(12).decode() in report
    # Evidence must be signed by the log: anything else is not a fork of it.
    stranger = History(Signer.generate(ORIGIN), history.leaves)
    with pytest.raises(InvalidNote):
        check_fork(old, stranger.checkpoint(), [], log)
