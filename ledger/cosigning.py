"""The log's side of C2SP tlog-witness: build add-checkpoint requests, read the answers.

Pure: no I/O. The gateway (``gateway.witnessing``) sends what :func:`add_checkpoint_body`
builds and hands the answer to :func:`parse_size_body` (409) or :func:`accept_cosignature`
(200); the witness's side is :mod:`ledger.witness`.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence

from .checkpoint import verify_cosignatures
from .errors import InvalidNote, LedgerError
from .merkle import HASH_SIZE
from .note import ALG_COSIGNATURE_V1, MAX_SIGNATURES, Note, NoteSignature, Verifier, parse_note
from .witness import MAX_PROOF_LINES

__all__ = [
    "REFUSALS",
    "BadWitnessAnswer",
    "accept_cosignature",
    "add_checkpoint_body",
    "backoff",
    "parse_size_body",
    "with_cosignatures",
]

#: Answers to add-checkpoint that no retry of the same request can change, and what each
#: tells the log (tlog-witness, add-checkpoint responses). 422 covers a bad proof and a
#: second root for a cosigned size: for a log that sends correct proofs, a fork or rollback.
REFUSALS = {
    400: "malformed",
    403: "bad_signature",
    404: "unknown_log",
    413: "too_large",  # not a tlog-witness status; a witness whose limit is below our notes
    422: "inconsistent",
}


class BadWitnessAnswer(LedgerError):
    """A witness answered with a body that is not what tlog-witness specifies, or with a
    cosignature that does not verify under the key pinned for it."""


def add_checkpoint_body(old: int, proof: Sequence[bytes], note: bytes) -> bytes:
    """tlog-witness add-checkpoint: ``old <size>``, one base64 proof hash a line, an empty
    line, then the signed checkpoint. The proof is RFC 6962 from ``old`` to the checkpoint's
    size, empty from size 0."""
    if old < 0 or len(proof) > MAX_PROOF_LINES or any(len(h) != HASH_SIZE for h in proof):
        raise ValueError("old size or consistency proof out of range")
    if old == 0 and proof:
        raise ValueError("the proof from size 0 is empty")
    lines = "".join(base64.b64encode(h).decode() + "\n" for h in proof)
    return f"old {old}\n{lines}\n".encode() + note


def backoff(failures: int, first: float, cap: float, rand: float) -> float:
    """Seconds to wait after ``failures`` consecutive failures: ``first`` doubling each
    time up to ``cap``, times a factor in [0.5, 1] from ``rand`` in [0, 1] ("equal
    jitter": never under half the step, so clients retrying one witness spread out)."""
    step: float = first * 2.0 ** min(max(failures, 1) - 1, 32)
    return min(cap, step) * (0.5 + rand / 2)


def parse_size_body(body: bytes) -> int:
    """The size in a 409 answer (``text/x.tlog.size``: ASCII decimal and a newline), the
    size of the checkpoint the witness last cosigned for this log. Raises BadWitnessAnswer."""
    text = body.decode("ascii", "replace")
    digits = text.removesuffix("\n")
    # tlog-witness: no leading zeroes unless zero; sizes are below 2**63 in every C2SP spec.
    ok = text.endswith("\n") and digits.isascii() and digits.isdigit() and len(digits) <= 19
    if not ok or (digits[0] == "0" and digits != "0") or int(digits) >= 1 << 63:
        raise BadWitnessAnswer("a 409 answer whose body is not a tree size")
    return int(digits)


def accept_cosignature(note: bytes, body: bytes, witness: Verifier) -> tuple[bytes, int]:
    """Check a 200 answer to ``note`` and return the pinned witness's line and timestamp.

    The body is one or more note signature lines (tlog-witness); lines by other keys (say a
    second algorithm of the same witness) are dropped, so only what was verified is kept.
    Raises BadWitnessAnswer if no line by ``witness`` is there, or one does not verify.
    """
    if witness.alg != ALG_COSIGNATURE_V1:
        raise ValueError("a witness is pinned by its cosignature/v1 (type 0x04) vkey")
    try:
        parsed = parse_note(note)
        answered = parse_note(note + body)
    except InvalidNote as e:
        raise BadWitnessAnswer(f"the answer is not signature lines: {e}") from e
    new = answered.signatures[len(parsed.signatures) :]
    mine = [s for s in new if (s.name, s.key_id) == (witness.name, witness.key_id)]
    if not mine:
        raise BadWitnessAnswer(f"no cosignature by the pinned key of {witness.name}")
    try:
        (cosig,) = verify_cosignatures(Note(parsed.text, (mine[0],)), [witness])
    except InvalidNote as e:
        raise BadWitnessAnswer(f"the cosignature of {witness.name} does not verify: {e}") from e
    return mine[0].line().encode(), cosig.timestamp


def with_cosignatures(note: bytes, lines: Iterable[bytes]) -> bytes:
    """``note`` with cosignature lines appended (C2SP: cosignatures are further signature
    lines on the same note). Lines already on the note are not repeated; the result stays
    within the signed-note limits. Raises InvalidNote for malformed input."""
    parsed = parse_note(note)
    sigs: dict[NoteSignature, None] = dict.fromkeys(parsed.signatures)
    for line in lines:
        sigs.update(dict.fromkeys(parse_note(parsed.text.encode() + b"\n" + line).signatures))
    if len(sigs) > MAX_SIGNATURES:
        raise InvalidNote("too many signatures")
    return Note(parsed.text, tuple(sigs)).encode()
