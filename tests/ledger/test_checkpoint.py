"""C2SP tlog-checkpoint bodies and tlog-cosignature/v1."""

from __future__ import annotations

import base64
import hashlib

import pytest

from ledger.checkpoint import (
    Checkpoint,
    CosignatureSigner,
    cosign,
    open_checkpoint,
    verify_cosignatures,
)
from ledger.errors import InvalidCheckpoint, InvalidNote
from ledger.note import Signer, format_note, parse_note

ROOT = hashlib.sha256(b"root").digest()


def _signed(signer: Signer, cp: Checkpoint) -> bytes:
    return format_note(cp.text(), [signer.sign(cp.text())])


def test_text_is_byte_exact() -> None:
    cp = Checkpoint("example.com/log", 20852163, ROOT)
    assert cp.text() == f"example.com/log\n20852163\n{base64.b64encode(ROOT).decode()}\n"
    assert Checkpoint.parse(cp.text()) == cp
    ext = Checkpoint("o", 0, ROOT, ("ext one", "ext two"))
    assert Checkpoint.parse(ext.text()) == ext


@pytest.mark.parametrize(
    "text",
    [
        "o\n1\n",
        "\n1\n" + base64.b64encode(ROOT).decode() + "\n",
        "o\n01\n" + base64.b64encode(ROOT).decode() + "\n",
        "o\n-1\n" + base64.b64encode(ROOT).decode() + "\n",
        "o\n+1\n" + base64.b64encode(ROOT).decode() + "\n",
        "o\n1\n" + base64.b64encode(b"short").decode() + "\n",
        "o\n1\nnot base64!\n",
        "o\n1\n" + base64.b64encode(ROOT).decode() + "\n\n",
        "o\n99999999999999999999\n" + base64.b64encode(ROOT).decode() + "\n",
        "o\n1\n" + base64.b64encode(ROOT).decode(),
        "o\n1\n" + base64.b64encode(ROOT).decode() + "=\n",
        "o\n1\n" + base64.b64encode(ROOT).decode()[:42] + "V=\n",
    ],
    ids=[
        "too-few-lines",
        "empty-origin",
        "leading-zero",
        "negative",
        "plus-sign",
        "short-root",
        "bad-base64",
        "empty-extension",
        "size-overflow",
        "no-newline",
        "root-excess-padding",
        "root-nonzero-padding-bits",
    ],
)
def test_malformed(text: str) -> None:
    with pytest.raises(InvalidCheckpoint):
        Checkpoint.parse(text)


def test_open_checks_signature_and_origin() -> None:
    s = Signer.generate("example.com/log")
    data = _signed(s, Checkpoint("example.com/log", 3, ROOT))
    assert open_checkpoint(data, s.verifier).checkpoint.size == 3
    with pytest.raises(InvalidCheckpoint, match="origin"):
        open_checkpoint(_signed(s, Checkpoint("other.example/log", 3, ROOT)), s.verifier)
    with pytest.raises(InvalidNote):
        open_checkpoint(data, Signer.generate("example.com/log").verifier)


def test_cosignature_round_trip() -> None:
    log = Signer.generate("example.com/log")
    w1 = CosignatureSigner(Signer.generate("witness.example/w1"))
    w2 = CosignatureSigner(Signer.generate("witness.example/w2"))
    data = _signed(log, Checkpoint("example.com/log", 3, ROOT))
    data = cosign(cosign(data, w1, 1679315147), w2, 1679315148)
    # The log signature still verifies with the cosignatures present (unknown to it).
    sc = open_checkpoint(data, log.verifier)
    got = verify_cosignatures(sc.note, [w1.verifier, w2.verifier])
    assert [(c.name, c.timestamp) for c in got] == [
        ("witness.example/w1", 1679315147),
        ("witness.example/w2", 1679315148),
    ]
    # The vkey form uses type 0x04 and round-trips.
    assert w1.vkey.split("+")[2].startswith(base64.b64encode(b"\x04").decode()[:1])
    with pytest.raises(InvalidNote, match="invalid timestamp"):
        verify_cosignatures(sc.note, [w1.verifier], now=1679315146)


def test_cosignature_signs_the_spec_message() -> None:
    # tlog-cosignature: "cosignature/v1\ntime <ts>\n" followed by the checkpoint text.
    signer = Signer.generate("w.example")
    w = CosignatureSigner(signer)
    text = Checkpoint("example.com/log", 3, ROOT).text()
    line = w.cosign(text, 42)
    assert line.signature[:8] == (42).to_bytes(8, "big")
    assert signer.verifier.verify(f"cosignature/v1\ntime 42\n{text}".encode(), line.signature[8:])


def test_forged_cosignature_rejected() -> None:
    log = Signer.generate("example.com/log")
    w = CosignatureSigner(Signer.generate("w.example"))
    data = cosign(_signed(log, Checkpoint("example.com/log", 3, ROOT)), w, 7)
    note = parse_note(data)
    sigs = list(note.signatures)
    bad = sigs[1].signature[:8] + bytes(64)
    sigs[1] = type(sigs[1])(sigs[1].name, sigs[1].key_id, bad)
    forged = parse_note(format_note(note.text, sigs))
    with pytest.raises(InvalidNote, match="does not verify"):
        verify_cosignatures(forged, [w.verifier])
    # Cosignature keys are not log keys: an Ed25519 note verifier ignores the line.
    assert verify_cosignatures(note, [log.verifier]) == []
