"""C2SP tlog-witness ``add-checkpoint``: parse a request, decide it, cosign. Pure: no I/O.

The caller (``gateway.witness``) reads the stored state of the log, calls
:meth:`Witness.check` then :meth:`Witness.cosign`, and persists the new state with a
compare-and-swap on the state it read before answering: checking and storing must be one
atomic step, or two requests could both advance from the same size and roll a log back
(tlog-witness, add-checkpoint, last paragraph). Every refusal is a :class:`WitnessRefusal`
carrying the HTTP status the specification assigns to it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass

from .checkpoint import Checkpoint, CosignatureSigner
from .errors import InvalidCheckpoint, InvalidNote, InvalidProof, LedgerError
from .merkle import EMPTY_ROOT, HASH_SIZE, verify_consistency
from .note import (
    ALG_ED25519,
    MAX_NOTE_SIZE,
    NoteSignature,
    Verifier,
    format_note,
    open_note,
    parse_note,
)

__all__ = [
    "MAX_PROOF_LINES",
    "MAX_REQUEST_SIZE",
    "SIZE_CONTENT_TYPE",
    "Accepted",
    "AddCheckpoint",
    "BadSignature",
    "Cosigned",
    "ForkDetected",
    "Inconsistent",
    "LogState",
    "MalformedRequest",
    "StaleOldSize",
    "UnknownLog",
    "Witness",
    "WitnessRefusal",
    "WitnessedLog",
    "parse_add_checkpoint",
]

# tlog-witness: "The client MUST NOT send more than 63 consistency proof lines."
MAX_PROOF_LINES = 63
# The old size line and 63 proof lines fit in 4 KiB; the rest is one signed note.
MAX_REQUEST_SIZE = MAX_NOTE_SIZE + 4096
SIZE_CONTENT_TYPE = "text/x.tlog.size"
_MAX_SIZE = (1 << 63) - 1  # tree sizes and timestamps are u64 below 2**63 in every C2SP spec


class WitnessRefusal(LedgerError):
    """A request the witness must not cosign. ``status`` is the HTTP status to answer."""

    status = 400
    content_type = "text/plain"

    def body(self) -> bytes:
        return f"{self}\n".encode()


class MalformedRequest(WitnessRefusal):
    """400: the body does not parse, or its old size exceeds the checkpoint size."""


class UnknownLog(WitnessRefusal):
    """404: the checkpoint's origin is not a log this witness is configured for."""

    status = 404


class BadSignature(WitnessRefusal):
    """403: no valid signature by a trusted key of the log, or an invalid one by such a key."""

    status = 403


class StaleOldSize(WitnessRefusal):
    """409: ``old`` is not the size of the latest checkpoint cosigned for this log."""

    status = 409
    content_type = SIZE_CONTENT_TYPE

    def __init__(self, size: int) -> None:
        super().__init__(f"the latest cosigned size is {size}")
        self.size = size

    def body(self) -> bytes:
        # tlog-witness: the body is the size in decimal and a newline, nothing else.
        return f"{self.size}\n".encode()


class Inconsistent(WitnessRefusal):
    """422: the checkpoint is not proven consistent with what the witness cosigned."""

    status = 422


class ForkDetected(Inconsistent):
    """422: same size as the cosigned checkpoint, different root. Both are signed by the log,
    so ``evidence`` (the refused signed note) proves the log forked."""

    def __init__(self, message: str, evidence: bytes) -> None:
        super().__init__(message)
        self.evidence = evidence


@dataclass(frozen=True, slots=True)
class AddCheckpoint:
    """A parsed request body: the old size, the proof and the (unverified) signed note."""

    old_size: int
    proof: tuple[bytes, ...]
    checkpoint: Checkpoint
    note: bytes


@dataclass(frozen=True, slots=True)
class WitnessedLog:
    """A log the witness follows: its origin and the keys it trusts to sign for it."""

    origin: str
    verifiers: tuple[Verifier, ...]

    def __post_init__(self) -> None:
        if not self.verifiers or any(v.alg != ALG_ED25519 for v in self.verifiers):
            raise InvalidNote("a witnessed log needs Ed25519 (type 0x01) vkeys, at least one")


@dataclass(frozen=True, slots=True)
class LogState:
    """What the witness last cosigned for a log; a log never cosigned is ``LogState()``."""

    size: int = 0
    root: bytes = EMPTY_ROOT
    timestamp: int = 0


@dataclass(frozen=True, slots=True)
class Accepted:
    """A request that passed every check: its checkpoint and the log signatures that verified."""

    checkpoint: Checkpoint
    text: str
    signatures: tuple[NoteSignature, ...]


@dataclass(frozen=True, slots=True)
class Cosigned:
    """The outcome of a cosigning: the response body, the note to keep, the state to store."""

    origin: str
    lines: bytes
    note: bytes
    state: LogState


def _decimal(s: str, what: str) -> int:
    # tlog-witness: ASCII decimal, no leading zeroes unless the value is zero.
    if not s.isascii() or not s.isdigit() or (s[0] == "0" and s != "0") or len(s) > 19:
        raise MalformedRequest(f"malformed {what}")
    value = int(s)
    if value > _MAX_SIZE:
        raise MalformedRequest(f"{what} out of range")
    return value


def parse_add_checkpoint(body: bytes, *, max_size: int = MAX_REQUEST_SIZE) -> AddCheckpoint:
    """Parse an add-checkpoint body: ``old N``, proof lines, an empty line, a checkpoint.

    Checks form only (no signature). Raises MalformedRequest.
    """
    if len(body) > max_size:
        raise MalformedRequest(f"request body is larger than {max_size} bytes")
    head, sep, note = body.partition(b"\n\n")
    if not sep:
        raise MalformedRequest("no empty line after the old size and proof lines")
    try:
        first, *proof_lines = head.decode("ascii").split("\n")
    except UnicodeDecodeError as e:
        raise MalformedRequest("old size and proof lines must be ASCII") from e
    if not first.startswith("old "):
        raise MalformedRequest("the first line must be 'old <size>'")
    old = _decimal(first[4:], "old size")
    if len(proof_lines) > MAX_PROOF_LINES:
        raise MalformedRequest(f"more than {MAX_PROOF_LINES} consistency proof lines")
    proof = []
    for line in proof_lines:
        try:
            h = base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError) as e:
            raise MalformedRequest("a proof line is not base64") from e
        if len(h) != HASH_SIZE:
            raise MalformedRequest(f"a proof line is not a {HASH_SIZE}-byte hash")
        if base64.b64encode(h).decode() != line:
            raise MalformedRequest("a proof line is not canonical base64")
        proof.append(h)
    try:
        cp = Checkpoint.parse(parse_note(note).text)
    except (InvalidNote, InvalidCheckpoint) as e:
        raise MalformedRequest(f"malformed checkpoint: {e}") from e
    return AddCheckpoint(old, tuple(proof), cp, note)


class Witness:
    """A witness's decisions: which logs it follows and the key it cosigns with."""

    def __init__(self, signer: CosignatureSigner, logs: Iterable[WitnessedLog]) -> None:
        self.signer = signer
        self.logs = {log.origin: log for log in logs}

    @property
    def vkey(self) -> str:
        """The witness's cosignature/v1 verifier key (type 0x04), for clients to pin."""
        return self.signer.vkey

    def check(self, req: AddCheckpoint, state: LogState) -> Accepted:
        """Decide a request against the stored ``state`` of its log.

        Returns the checkpoint with the log signatures that verified. Raises UnknownLog,
        BadSignature, MalformedRequest, StaleOldSize, Inconsistent or ForkDetected, in the
        order tlog-witness lists them.
        """
        cp, old = req.checkpoint, req.old_size
        log = self.logs.get(cp.origin)
        if log is None:
            # Bounded: the origin is whatever the client sent, and this text is logged.
            raise UnknownLog(f"unknown log {cp.origin[:200]!r}")
        try:
            note, good = open_note(req.note, log.verifiers)
        except InvalidNote as e:
            raise BadSignature(str(e)) from e
        if old > cp.size:
            raise MalformedRequest(f"old size {old} exceeds the checkpoint size {cp.size}")
        if old != state.size:
            raise StaleOldSize(state.size)
        if cp.size == 0 and cp.root != EMPTY_ROOT:
            raise Inconsistent("a checkpoint of size 0 must have the empty tree's root")
        if old == 0 and req.proof:
            raise Inconsistent("the proof from size 0 must be empty")
        if old == cp.size and cp.root != state.root:
            raise ForkDetected(f"a different root for size {old} was cosigned before", req.note)
        try:
            verify_consistency(old, cp.size, state.root, cp.root, req.proof)
        except InvalidProof as e:
            raise Inconsistent(f"consistency proof does not verify: {e}") from e
        # Keep only the trusted log signatures: other cosignatures on the submitted note are
        # not ours to vouch for, and the monitoring endpoint serves exactly what was checked.
        trusted = {(v.name, v.key_id) for v in good}
        sigs = dict.fromkeys(s for s in note.signatures if (s.name, s.key_id) in trusted)
        return Accepted(cp, note.text, tuple(sigs))

    def cosign(self, accepted: Accepted, state: LogState, now: int) -> Cosigned:
        """Cosign a checked request at ``now`` (POSIX seconds).

        The timestamp never goes below the last one for this log: a cosignature says "as of
        this time, this is the largest tree I saw" (tlog-cosignature, Ed25519 signed
        message), so a clock stepping back must not date a larger tree before a smaller one.
        tlog-witness forbids a zero timestamp.
        """
        ts = max(now, state.timestamp, 1)
        line = self.signer.cosign(accepted.text, ts)
        cp = accepted.checkpoint
        return Cosigned(
            cp.origin,
            line.line().encode(),
            format_note(accepted.text, (*accepted.signatures, line)),
            LogState(cp.size, cp.root, ts),
        )
