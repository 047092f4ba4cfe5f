"""tlog-witness add-checkpoint request bodies: what parses, and every way to be a 400."""

from __future__ import annotations

import base64

import pytest

from ledger.merkle import EMPTY_ROOT
from ledger.note import Signer, format_note
from ledger.witness import (
    MAX_PROOF_LINES,
    MAX_REQUEST_SIZE,
    MalformedRequest,
    parse_add_checkpoint,
)

from .conftest import History, request_body

# The example request body of tlog-witness, byte for byte (its signatures are not real).
SPEC_EXAMPLE = """old 20852014
PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=
jrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=
5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=
/6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=

example.com/behind-the-sofa
20852163
CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=

\u2014 example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=
\u2014 example.com/behind-the-sofa opLqBQsREYCgu6xQkYQwJr9fo45a62DN9EdmHXnZdXNqlcVGlCum2Wks+49/V6267UEjw6QUXTS5Rovnzv++qbSzm9Q=
""".encode()  # noqa: E501


def test_spec_example_parses() -> None:
    req = parse_add_checkpoint(SPEC_EXAMPLE)
    assert req.old_size == 20852014
    assert [base64.b64encode(h).decode()[:8] for h in req.proof] == [
        "PlRNCrwH",
        "jrJZDmY8",
        "5+pKlUdi",
        "/6WVhPs2",
    ]
    assert req.checkpoint.origin == "example.com/behind-the-sofa"
    assert req.checkpoint.size == 20852163
    assert req.note == SPEC_EXAMPLE.split(b"\n\n", 1)[1]


def test_old_zero_with_no_proof(history: History) -> None:
    req = parse_add_checkpoint(history.body(0))
    assert (req.old_size, req.proof, req.checkpoint.size) == (0, (), 10)


def test_sixty_three_proof_lines_parse(history: History) -> None:
    body = request_body(3, [EMPTY_ROOT] * MAX_PROOF_LINES, history.checkpoint())
    assert len(parse_add_checkpoint(body).proof) == MAX_PROOF_LINES


def _bodies(h: History) -> dict[str, bytes]:
    note = h.checkpoint()
    good = base64.b64encode(EMPTY_ROOT).decode()
    two = f"{h.origin}\n10\n"
    return {
        "no-empty-line": b"old 0\n" + note.replace(b"\n\n", b"\n"),
        "empty-body": b"",
        "no-old-line": f"{good}\n\n".encode() + note,
        "starts-with-empty-line": b"\nold 0\n\n" + note,
        "capital-old": b"Old 0\n\n" + note,
        "two-spaces": b"old  0\n\n" + note,
        "trailing-space": b"old 0 \n\n" + note,
        "crlf": b"old 0\r\n\r\n" + note,
        "leading-zero": b"old 01\n\n" + note,
        "negative": b"old -1\n\n" + note,
        "plus-sign": b"old +1\n\n" + note,
        "not-a-number": b"old ten\n\n" + note,
        "non-ascii-digit": "old \u0661\n\n".encode() + note,
        "beyond-2**63-1": f"old {1 << 63}\n\n".encode() + note,
        "proof-not-base64": b"old 5\nnot base64!\n\n" + note,
        "proof-31-bytes": f"old 5\n{base64.b64encode(bytes(31)).decode()}\n\n".encode() + note,
        "proof-33-bytes": f"old 5\n{base64.b64encode(bytes(33)).decode()}\n\n".encode() + note,
        "proof-unpadded": f"old 5\n{good.rstrip('=')}\n\n".encode() + note,
        "proof-excess-padding": f"old 5\n{good}=\n\n".encode() + note,
        "proof-nonzero-padding-bits": f"old 5\n{good[:42]}V=\n\n".encode() + note,
        "64-proof-lines": request_body(5, [EMPTY_ROOT] * (MAX_PROOF_LINES + 1), note),
        "checkpoint-unsigned": b"old 0\n\n" + note.split(b"\n\n")[0] + b"\n",
        "checkpoint-no-final-newline": b"old 0\n\n" + note[:-1],
        "checkpoint-crlf": b"old 0\n\n" + note.replace(b"\n", b"\r\n"),
        "checkpoint-bad-size-line": b"old 0\n\n" + note.replace(b"\n10\n", b"\n010\n", 1),
        "checkpoint-two-lines": b"old 0\n\n" + format_note(two, [h.signer.sign(two)]),
        "too-large": b"old 0\n\n" + note + b"x" * MAX_REQUEST_SIZE,
    }


MALFORMED = list(_bodies(History(Signer.generate("o"))))


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_bodies_are_400(history: History, name: str) -> None:
    with pytest.raises(MalformedRequest) as e:
        parse_add_checkpoint(_bodies(history)[name])
    assert e.value.status == 400


def test_body_limit_is_the_callers(history: History) -> None:
    body = history.body(0)
    parse_add_checkpoint(body, max_size=len(body))
    with pytest.raises(MalformedRequest, match="larger than"):
        parse_add_checkpoint(body, max_size=len(body) - 1)
