"""C2SP signed-note: the specification's example, round trips and every rejection rule."""

from __future__ import annotations

import base64

import pytest

from ledger.errors import InvalidNote
from ledger.note import (
    MAX_NOTE_SIZE,
    MAX_SIGNATURES,
    NoteSignature,
    Signer,
    Verifier,
    format_note,
    key_id,
    open_note,
    parse_note,
)
from tests.conftest import VECTORS


def test_spec_example_verifies() -> None:
    vkey = (VECTORS / "signed-note-example.vkey").read_text().strip()
    data = (VECTORS / "signed-note-example.note").read_bytes()
    v = Verifier.from_vkey(vkey)
    note, good = open_note(data, [v])
    assert note.text == "This is an example message.\n"
    assert good == [v]
    assert v.vkey == vkey


def test_spec_example_key_id_rule() -> None:
    v = Verifier.from_vkey((VECTORS / "signed-note-example.vkey").read_text())
    assert v.key_id == key_id(v.name, 0x01, v.public) == 0x530D903A


def test_round_trip_and_skey() -> None:
    s = Signer.generate("example.com/log")
    again = Signer.from_skey(s.skey)
    assert again.vkey == s.vkey
    data = format_note("hello\n", [s.sign("hello\n")])
    note, good = open_note(data, [Verifier.from_vkey(s.vkey)])
    assert note.text == "hello\n" and good[0].name == "example.com/log"
    assert parse_note(data).encode() == data


def test_several_signatures_and_unknown_keys_ignored() -> None:
    a, b, stranger = (Signer.generate(n) for n in ("a.example", "b.example", "c.example"))
    text = "multi\n\nwith an empty line\n"
    data = format_note(text, [stranger.sign(text), a.sign(text), b.sign(text)])
    _, good = open_note(data, [a.verifier, b.verifier])
    assert {v.name for v in good} == {"a.example", "b.example"}
    _, good = open_note(data, [b.verifier])
    assert [v.name for v in good] == ["b.example"]


def test_same_name_other_key_is_ignored() -> None:
    real, impostor = Signer.generate("x.example"), Signer.generate("x.example")
    data = format_note("t\n", [impostor.sign("t\n"), real.sign("t\n")])
    _, good = open_note(data, [real.verifier])
    assert good == [real.verifier]
    with pytest.raises(InvalidNote, match="no signature by a known key"):
        open_note(format_note("t\n", [impostor.sign("t\n")]), [real.verifier])


def test_bad_signature_by_known_key_rejects() -> None:
    s = Signer.generate("x.example")
    sig = s.sign("original\n")
    forged = format_note("tampered\n", [NoteSignature(sig.name, sig.key_id, sig.signature)])
    with pytest.raises(InvalidNote, match="does not verify"):
        open_note(forged, [s.verifier])


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"no signatures\n", id="no-block"),
        pytest.param(b"text\n\n", id="empty-block"),
        pytest.param(b"text\n\n- a.example AAAAAAA=\n", id="hyphen-not-em-dash"),
        pytest.param("text\n\n\u2014 a.example !!!\n".encode(), id="bad-base64"),
        pytest.param("text\n\n\u2014 a.example AAAA\n".encode(), id="short-signature"),
        pytest.param("text\n\n\u2014 a+b AAAAAAA=\n".encode(), id="plus-in-name"),
        pytest.param("te\x01xt\n\n\u2014 a AAAAAAA=\n".encode(), id="control-char"),
        pytest.param(b"\xff\xfe\n\n", id="not-utf8"),
        pytest.param("text\n\n\u2014 a AAAAAAA=".encode(), id="no-final-newline"),
        # Found by fuzz/note.py: one note, one spelling (Go's decoder refuses the first).
        pytest.param("text\n\n\u2014 a AAAAAAAA=\n".encode(), id="excess-padding"),
        pytest.param("text\n\n\u2014 a AAAAAAB=\n".encode(), id="nonzero-padding-bits"),
    ],
)
def test_malformed_notes(data: bytes) -> None:
    with pytest.raises(InvalidNote):
        parse_note(data)


def test_size_and_signature_limits() -> None:
    s = Signer.generate("a.example")
    big = "x" * MAX_NOTE_SIZE + "\n"
    with pytest.raises(InvalidNote, match="larger"):
        parse_note(format_note(big, [s.sign(big)]))
    many = format_note("t\n", [s.sign("t\n")] * (MAX_SIGNATURES + 1))
    with pytest.raises(InvalidNote, match="too many"):
        parse_note(many)
    # The spec requires accepting at least 16.
    open_note(format_note("t\n", [s.sign("t\n")] * 16), [s.verifier])


@pytest.mark.parametrize(
    "vkey",
    [
        "",
        "name+zzzzzzzz+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
        "example.com/foo+530d903b+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
        "example.com/foo+530d903a+" + base64.b64encode(b"\x02" + bytes(32)).decode(),
        "example.com/foo+530d903a",
        "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k=",
        # Found by fuzz/note.py: what os.environ makes of a name that is not UTF-8.
        "example.com/\udc8efoo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
    ],
    ids=[
        "empty",
        "bad-hex",
        "wrong-id",
        "unknown-alg",
        "missing-key",
        "excess-padding",
        "surrogate-in-name",
    ],
)
def test_bad_vkeys(vkey: str) -> None:
    with pytest.raises(InvalidNote):
        Verifier.from_vkey(vkey)


def test_text_rules_when_signing() -> None:
    s = Signer.generate("a.example")
    with pytest.raises(InvalidNote):
        s.sign("no newline")
    with pytest.raises(InvalidNote):
        Signer.generate("has space")
