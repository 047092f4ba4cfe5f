"""The witness's decisions (ledger.witness.Witness), one tlog-witness rule per test."""

from __future__ import annotations

import pytest

from ledger.checkpoint import Checkpoint, CosignatureSigner, verify_cosignatures
from ledger.errors import InvalidNote
from ledger.merkle import EMPTY_ROOT
from ledger.note import NoteSignature, Signer, format_note, parse_note
from ledger.witness import (
    SIZE_CONTENT_TYPE,
    BadSignature,
    ForkDetected,
    Inconsistent,
    LogState,
    MalformedRequest,
    StaleOldSize,
    UnknownLog,
    Witness,
    WitnessedLog,
    WitnessRefusal,
    parse_add_checkpoint,
)

from .conftest import ORIGIN, T0, WITNESS_NAME, History, request_body


@pytest.fixture
def cosigner() -> CosignatureSigner:
    return CosignatureSigner(Signer.generate(WITNESS_NAME))


@pytest.fixture
def witness(cosigner: CosignatureSigner, log_signer: Signer) -> Witness:
    return Witness(cosigner, [WitnessedLog(ORIGIN, (log_signer.verifier,))])


def submit(w: Witness, body: bytes, state: LogState, now: int = T0) -> tuple[bytes, LogState]:
    """check then cosign, as the HTTP layer does; returns the response body and new state."""
    accepted = w.check(parse_add_checkpoint(body), state)
    done = w.cosign(accepted, state, now)
    return done.lines, done.state


def refusal(w: Witness, body: bytes, state: LogState) -> WitnessRefusal:
    with pytest.raises(WitnessRefusal) as e:
        w.check(parse_add_checkpoint(body), state)
    return e.value


def test_first_checkpoint_is_cosigned(witness: Witness, history: History) -> None:
    lines, state = submit(witness, history.body(0), LogState())
    assert state == LogState(10, history.root(10), T0)
    # tlog-witness: the client may append the lines to its checkpoint and verify the note.
    note = parse_note(history.checkpoint() + lines)
    assert lines.startswith("\u2014 ".encode()) and lines.endswith(b"\n")
    cosigs = verify_cosignatures(note, [witness.signer.verifier])
    assert [(c.name, c.timestamp) for c in cosigs] == [(WITNESS_NAME, T0)]


def test_extension_lines_are_cosigned_as_signed(witness: Witness, history: History) -> None:
    text = Checkpoint(ORIGIN, 10, history.root(10), ("ext line",)).text()
    note = format_note(text, [history.signer.sign(text)])
    lines, _ = submit(witness, request_body(0, [], note), LogState())
    cosigned = parse_note(note + lines)
    assert verify_cosignatures(cosigned, [witness.signer.verifier])[0].timestamp == T0


def test_unknown_origin_is_404(witness: Witness) -> None:
    other = History(Signer.generate("elsewhere.example/log")).grow(3)
    assert isinstance(refusal(witness, other.body(0), LogState()), UnknownLog)
    assert refusal(witness, other.body(0), LogState()).status == 404


def test_signature_by_another_key_of_the_same_name_is_403(witness: Witness) -> None:
    impostor = History(Signer.generate(ORIGIN)).grow(10)
    e = refusal(witness, impostor.body(0), LogState())
    assert isinstance(e, BadSignature) and e.status == 403


def test_bad_signature_by_the_trusted_key_is_403(witness: Witness, history: History) -> None:
    note = parse_note(history.checkpoint())
    sig = note.signatures[0]
    bad = NoteSignature(sig.name, sig.key_id, bytes([sig.signature[0] ^ 1]) + sig.signature[1:])
    body = request_body(0, [], format_note(note.text, [bad]))
    assert refusal(witness, body, LogState()).status == 403
    # Even next to a valid one: such a note is malformed (signed-note), tlog-witness: 403.
    body = request_body(0, [], format_note(note.text, [sig, bad]))
    assert refusal(witness, body, LogState()).status == 403


def test_unknown_signatures_are_ignored_and_not_kept(witness: Witness, history: History) -> None:
    note = parse_note(history.checkpoint())
    stranger = Signer.generate("stranger.example/w9")
    extra = format_note(note.text, [stranger.sign(note.text), *note.signatures])
    accepted = witness.check(parse_add_checkpoint(request_body(0, [], extra)), LogState())
    kept = witness.cosign(accepted, LogState(), T0).note
    assert [s.name for s in parse_note(kept).signatures] == [ORIGIN, WITNESS_NAME]


def test_old_size_beyond_the_checkpoint_is_400(witness: Witness, history: History) -> None:
    state = LogState(10, history.root(10), T0)
    body = request_body(10, [], history.checkpoint(5))
    e = refusal(witness, body, state)
    assert isinstance(e, MalformedRequest) and e.status == 400


@pytest.mark.parametrize("old", [0, 5, 12])
def test_old_size_not_the_cosigned_size_is_409(
    witness: Witness, history: History, old: int
) -> None:
    history.grow(10)
    state = LogState(10, history.root(10), T0)
    e = refusal(witness, history.body(old), state)
    assert isinstance(e, StaleOldSize) and e.status == 409
    assert (e.body(), e.content_type) == (b"10\n", SIZE_CONTENT_TYPE)


def test_never_cosigned_means_size_zero(witness: Witness, history: History) -> None:
    e = refusal(witness, history.body(4), LogState())
    assert isinstance(e, StaleOldSize) and e.body() == b"0\n"


def test_size_zero_needs_the_empty_root(witness: Witness, history: History) -> None:
    _, state = submit(witness, request_body(0, [], history.fork(0).checkpoint()), LogState())
    assert state.size == 0 and state.root == EMPTY_ROOT
    text = Checkpoint(ORIGIN, 0, bytes(32)).text()
    body = request_body(0, [], format_note(text, [history.signer.sign(text)]))
    assert isinstance(refusal(witness, body, LogState()), Inconsistent)


def test_proof_from_size_zero_must_be_empty(witness: Witness, history: History) -> None:
    body = request_body(0, [EMPTY_ROOT], history.checkpoint())
    e = refusal(witness, body, LogState())
    assert isinstance(e, Inconsistent) and e.status == 422


@pytest.mark.parametrize("damage", ["flip", "drop", "extra", "empty"])
def test_bad_consistency_proof_is_422(witness: Witness, history: History, damage: str) -> None:
    state = LogState(7, history.root(7), T0)
    proof = history.proof(7, 10)
    proof = {
        "flip": [bytes([proof[0][0] ^ 1]) + proof[0][1:], *proof[1:]],
        "drop": proof[:-1],
        "extra": [*proof, EMPTY_ROOT],
        "empty": [],
    }[damage]
    e = refusal(witness, request_body(7, proof, history.checkpoint()), state)
    assert type(e) is Inconsistent and e.status == 422


def test_same_size_other_root_is_a_fork(witness: Witness, history: History) -> None:
    _, state = submit(witness, history.body(0), LogState())
    fork = history.fork(9).grow(1, tag="b")
    e = refusal(witness, request_body(10, [], fork.checkpoint()), state)
    assert isinstance(e, ForkDetected) and e.status == 422
    assert e.evidence == fork.checkpoint()


def test_larger_tree_from_a_fork_is_422(witness: Witness, history: History) -> None:
    _, state = submit(witness, history.body(0), LogState())
    fork = history.fork(6).grow(9, tag="b")
    # The fork's own proof from 10 leads to its own root at 10, not the one cosigned.
    e = refusal(witness, fork.body(10), state)
    assert type(e) is Inconsistent


def test_growth_and_recosigning_the_same_tree(witness: Witness, history: History) -> None:
    _, state = submit(witness, history.body(0), LogState())
    history.grow(7)
    _, state = submit(witness, history.body(10), state, T0 + 5)
    assert state == LogState(17, history.root(17), T0 + 5)
    # Same size, same root: cosigned again with a fresh timestamp (freshness for clients).
    lines, again = submit(witness, request_body(17, [], history.checkpoint()), state, T0 + 9)
    assert again.timestamp == T0 + 9
    note = parse_note(history.checkpoint() + lines)
    assert verify_cosignatures(note, [witness.signer.verifier])[0].timestamp == T0 + 9
    # A non-empty proof between equal sizes does not verify (RFC 9162 2.1.4).
    e = refusal(witness, request_body(17, [EMPTY_ROOT], history.checkpoint()), state)
    assert type(e) is Inconsistent


def test_timestamps_never_go_backwards(witness: Witness, history: History) -> None:
    _, state = submit(witness, history.body(0), LogState(), T0)
    history.grow(1)
    _, later = submit(witness, history.body(10), state, T0 - 3600)
    assert later.timestamp == T0
    _, first = submit(witness, history.fork(4).body(0), LogState(), 0)
    assert first.timestamp == 1  # tlog-witness: the timestamp MUST NOT be zero


def test_a_log_needs_an_ed25519_key(cosigner: CosignatureSigner) -> None:
    with pytest.raises(InvalidNote):
        WitnessedLog(ORIGIN, ())
    with pytest.raises(InvalidNote):
        WitnessedLog(ORIGIN, (cosigner.verifier,))


def test_key_name_may_differ_from_the_origin(cosigner: CosignatureSigner) -> None:
    # tlog-checkpoint: the key name SHOULD match the origin; the witness goes by origin.
    key = Signer.generate("hospital-a.example/keys/2026")
    text = Checkpoint(ORIGIN, 0, EMPTY_ROOT).text()
    body = request_body(0, [], format_note(text, [key.sign(text)]))
    w = Witness(cosigner, [WitnessedLog(ORIGIN, (key.verifier,))])
    assert w.check(parse_add_checkpoint(body), LogState()).checkpoint.origin == ORIGIN
