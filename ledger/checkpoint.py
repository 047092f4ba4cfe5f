"""C2SP tlog-checkpoint and tlog-cosignature/v1 (Ed25519). Pure: no I/O."""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import InvalidCheckpoint, InvalidNote
from .merkle import HASH_SIZE
from .note import (
    ALG_COSIGNATURE_V1,
    MAX_NOTE_SIZE,
    Note,
    NoteSignature,
    Signer,
    Verifier,
    format_note,
    open_note,
    parse_note,
)

__all__ = [
    "Checkpoint",
    "Cosignature",
    "CosignatureSigner",
    "NotWitnessed",
    "SignedCheckpoint",
    "WitnessedCheckpoint",
    "cosign",
    "open_checkpoint",
    "verify_cosignatures",
    "verify_witnessed",
]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The body of a checkpoint: origin, tree size, root hash and extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        """The note text, byte for byte as tlog-checkpoint specifies."""
        if not self.origin or "\n" in self.origin:
            raise InvalidCheckpoint("invalid origin")
        if self.size < 0 or len(self.root) != HASH_SIZE:
            raise InvalidCheckpoint("invalid size or root")
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode()]
        for ext in self.extensions:
            if not ext or "\n" in ext:
                raise InvalidCheckpoint("extension lines must be non-empty single lines")
            lines.append(ext)
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Parse a checkpoint note text. Raises InvalidCheckpoint."""
        if not text.endswith("\n"):
            raise InvalidCheckpoint("checkpoint must end in a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise InvalidCheckpoint("checkpoint needs origin, size and root lines")
        origin, size_s, root_s, *ext = lines
        if not origin:
            raise InvalidCheckpoint("empty origin")
        # tlog-checkpoint: ASCII decimal, no leading zeroes unless the tree is empty.
        if not size_s.isascii() or not size_s.isdigit() or (size_s[0] == "0" and size_s != "0"):
            raise InvalidCheckpoint("malformed tree size")
        if len(size_s) > 20 or int(size_s) >= 1 << 63:
            raise InvalidCheckpoint("tree size out of range")
        try:
            root = base64.b64decode(root_s, validate=True)
        except (binascii.Error, ValueError) as e:
            raise InvalidCheckpoint("malformed root hash") from e
        if len(root) != HASH_SIZE:
            raise InvalidCheckpoint("root hash is not 32 bytes")
        if base64.b64encode(root).decode() != root_s:
            raise InvalidCheckpoint("root hash is not canonical base64")
        if any(not e for e in ext):
            raise InvalidCheckpoint("empty extension line")
        return cls(origin, int(size_s), root, tuple(ext))


@dataclass(frozen=True, slots=True)
class Cosignature:
    """A verified tlog-cosignature/v1: who cosigned and when (POSIX seconds)."""

    name: str
    timestamp: int


def _cosigned_message(text: str, timestamp: int) -> bytes:
    # tlog-cosignature: "cosignature/v1\ntime <ts>\n" || checkpoint note text.
    return f"cosignature/v1\ntime {timestamp}\n{text}".encode()


class CosignatureSigner:
    """A witness key producing tlog-cosignature/v1 (type 0x04) signature lines."""

    def __init__(self, signer: Signer) -> None:
        self._signer = signer
        self.verifier = Verifier(signer.name, signer.verifier.public, ALG_COSIGNATURE_V1)
        self.name = signer.name

    @property
    def vkey(self) -> str:
        return self.verifier.vkey

    def cosign(self, text: str, timestamp: int) -> NoteSignature:
        if not 0 <= timestamp < 1 << 63:
            raise InvalidCheckpoint("timestamp out of range")
        sig = self._signer.sign_raw(_cosigned_message(text, timestamp))
        return NoteSignature(self.name, self.verifier.key_id, struct.pack(">Q", timestamp) + sig)


def cosign(note: bytes, witness: CosignatureSigner, timestamp: int) -> bytes:
    """Append a cosignature line to an encoded signed checkpoint (form is checked)."""
    parsed = parse_note(note)
    line = witness.cosign(parsed.text, timestamp)
    return format_note(parsed.text, (*parsed.signatures, line))


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    """A checkpoint together with its verified note."""

    checkpoint: Checkpoint
    note: Note

    def encode(self) -> bytes:
        return self.note.encode()


def open_checkpoint(
    data: bytes, log: Verifier, *, origin: str | None = None, max_size: int = MAX_NOTE_SIZE
) -> SignedCheckpoint:
    """Verify a signed checkpoint by the log key and parse its body.

    ``origin`` defaults to the log key's name (the key name SHOULD match the origin).
    Raises InvalidNote or InvalidCheckpoint.
    """
    note, _ = open_note(data, [log], max_size=max_size)
    cp = Checkpoint.parse(note.text)
    want = log.name if origin is None else origin
    if cp.origin != want:
        raise InvalidCheckpoint(f"origin {cp.origin!r} is not {want!r}")
    return SignedCheckpoint(cp, note)


def verify_cosignatures(
    note: Note, witnesses: Sequence[Verifier], *, now: int | None = None
) -> list[Cosignature]:
    """Return the cosignatures on ``note`` that verify under the given witness keys.

    Lines by unknown keys are ignored; a line by a known witness that fails to verify raises
    InvalidNote (the spec lets clients reject the whole note). With ``now``, cosignatures
    timestamped in the future are rejected.
    """
    known = {(w.name, w.key_id): w for w in witnesses if w.alg == ALG_COSIGNATURE_V1}
    out: list[Cosignature] = []
    for sig in note.signatures:
        w = known.get((sig.name, sig.key_id))
        if w is None:
            continue
        if len(sig.signature) != 8 + 64:
            raise InvalidNote(f"cosignature by {w.name} has the wrong length")
        (ts,) = struct.unpack(">Q", sig.signature[:8])
        if ts >= 1 << 63 or (now is not None and ts > now):
            raise InvalidNote(f"cosignature by {w.name} has an invalid timestamp")
        if not w.verify(_cosigned_message(note.text, ts), sig.signature[8:]):
            raise InvalidNote(f"cosignature by {w.name} does not verify")
        if all(c.name != w.name for c in out):
            out.append(Cosignature(w.name, ts))
    return out


class NotWitnessed(InvalidCheckpoint):
    """A checkpoint carries fewer valid cosignatures by the required witnesses than asked."""

    def __init__(self, message: str, found: Sequence[Cosignature]) -> None:
        super().__init__(message)
        self.found = tuple(found)


@dataclass(frozen=True, slots=True)
class WitnessedCheckpoint:
    """A checkpoint signed by its log and cosigned by at least the required witnesses."""

    checkpoint: Checkpoint
    note: Note
    cosignatures: tuple[Cosignature, ...]


def verify_witnessed(
    data: bytes,
    log: Verifier,
    witnesses: Sequence[Verifier],
    k: int,
    *,
    origin: str | None = None,
    now: int | None = None,
) -> WitnessedCheckpoint:
    """Verify a checkpoint's log signature and that at least ``k`` of ``witnesses`` cosigned it.

    Each witness counts once however many lines or keys it has (distinct key names, as
    :func:`verify_cosignatures` counts them), so listing a witness twice, or a witness
    signing twice, never makes up a quorum. Lines by keys not in ``witnesses`` are ignored
    (signed-note: unknown keys are skipped). Raises InvalidNote or InvalidCheckpoint for a
    bad note or log signature, InvalidNote for an invalid line by a listed witness, and
    NotWitnessed when fewer than ``k`` witnesses cosigned.
    """
    if not 0 <= k <= len({w.name for w in witnesses}):
        raise ValueError(f"a quorum of {k} cannot be met by {len(witnesses)} witness key(s)")
    if any(w.alg != ALG_COSIGNATURE_V1 for w in witnesses):
        raise InvalidNote("witness keys must be tlog-cosignature/v1 (type 0x04) vkeys")
    signed = open_checkpoint(data, log, origin=origin)
    found = verify_cosignatures(signed.note, witnesses, now=now)
    if len(found) < k:
        names = ", ".join(c.name for c in found) or "none"
        raise NotWitnessed(
            f"{len(found)} of the {k} required witness cosignatures (found: {names})", found
        )
    return WitnessedCheckpoint(signed.checkpoint, signed.note, tuple(found))
