"""C2SP signed-note (https://c2sp.org/signed-note): Ed25519 signers, verifiers and notes.

Pure: no I/O. Hand-written because no maintained Python library implements signed notes;
the format is small and the tests pin it to the specification's own example and to Go's
``golang.org/x/mod/sumdb/note``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import InvalidNote

__all__ = [
    "ALG_COSIGNATURE_V1",
    "ALG_ED25519",
    "MAX_NOTE_SIZE",
    "MAX_SIGNATURES",
    "Note",
    "NoteSignature",
    "Signer",
    "Verifier",
    "format_note",
    "key_id",
    "open_note",
    "parse_note",
]

ALG_ED25519 = 0x01
ALG_COSIGNATURE_V1 = 0x04

# The spec requires accepting at least 16 signatures and warns that post-quantum ones
# approach 5 kB; 64 KiB and 100 signatures leave room for both while bounding parse work.
MAX_NOTE_SIZE = 64 * 1024
MAX_SIGNATURES = 100

_EM_DASH = "\u2014 "


def _check_name(name: str) -> None:
    # signed-note: key names are non-empty and contain no Unicode spaces or '+'.
    if not name or "+" in name or any(c.isspace() for c in name):
        raise InvalidNote(f"invalid key name {name!r}")
    # A name is hashed as UTF-8 into the key ID; a lone surrogate (what os.environ and
    # surrogateescape make of bytes that are not UTF-8) cannot be.
    if not name.isascii() and any("\ud800" <= c <= "\udfff" for c in name):
        raise InvalidNote("key name is not UTF-8")


def key_id(name: str, alg: int, public: bytes) -> int:
    """``SHA-256(name || 0x0A || alg || public)[:4]`` as a big-endian uint32."""
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([alg]) + public).digest()
    return int(struct.unpack(">I", digest[:4])[0])


def _b64decode(s: str) -> bytes:
    try:
        blob = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError) as e:
        raise InvalidNote("invalid base64") from e
    # One spelling per value: Python also takes padding after a full quantum and non-zero
    # padding bits, which Go's decoder (the other side of every note) does not all take.
    if base64.b64encode(blob).decode() != s:
        raise InvalidNote("non-canonical base64")
    return blob


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line: key name, key ID and the raw signature bytes."""

    name: str
    key_id: int
    signature: bytes

    def line(self) -> str:
        blob = struct.pack(">I", self.key_id) + self.signature
        return f"{_EM_DASH}{self.name} {base64.b64encode(blob).decode()}\n"


@dataclass(frozen=True, slots=True)
class Note:
    """A parsed note: its text (ending in newline) and every signature line it carries."""

    text: str
    signatures: tuple[NoteSignature, ...]

    def encode(self) -> bytes:
        return format_note(self.text, self.signatures)


class Verifier:
    """Verifies Ed25519 (0x01) note signatures, or tlog-cosignature/v1 (0x04) lines."""

    def __init__(self, name: str, public: bytes, alg: int = ALG_ED25519) -> None:
        _check_name(name)
        if alg not in (ALG_ED25519, ALG_COSIGNATURE_V1) or len(public) != 32:
            raise InvalidNote("only Ed25519 verifier keys are supported")
        self.name = name
        self.alg = alg
        self.public = public
        self.key_id = key_id(name, alg, public)
        self._key = Ed25519PublicKey.from_public_bytes(public)

    @classmethod
    def from_vkey(cls, vkey: str) -> Verifier:
        """Parse ``name+hexid+base64(alg || public)``. Raises InvalidNote."""
        parts = vkey.strip().split("+", 2)
        if len(parts) != 3 or len(parts[1]) != 8:
            raise InvalidNote("malformed verifier key")
        name, hexid, b64 = parts
        blob = _b64decode(b64)
        if not blob:
            raise InvalidNote("malformed verifier key")
        try:
            kid = int(hexid, 16)
        except ValueError as e:
            raise InvalidNote("malformed verifier key id") from e
        v = cls(name, blob[1:], blob[0])
        if v.key_id != kid:
            raise InvalidNote("verifier key id does not match its key")
        return v

    @property
    def vkey(self) -> str:
        blob = base64.b64encode(bytes([self.alg]) + self.public).decode()
        return f"{self.name}+{self.key_id:08x}+{blob}"

    def verify(self, msg: bytes, sig: bytes) -> bool:
        try:
            self._key.verify(sig, msg)
        except InvalidSignature:
            return False
        return True


class Signer:
    """An Ed25519 note signer. ``skey`` is Go's ``PRIVATE+KEY+name+hexid+base64`` form."""

    def __init__(self, name: str, private: Ed25519PrivateKey) -> None:
        _check_name(name)
        self.name = name
        self._key = private
        self.verifier = Verifier(name, private.public_key().public_bytes_raw())
        self.key_id = self.verifier.key_id

    @classmethod
    def generate(cls, name: str) -> Signer:
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_skey(cls, skey: str) -> Signer:
        """Parse a private key in the ``PRIVATE+KEY+name+hexid+base64(0x01||seed)`` form."""
        parts = skey.strip().split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise InvalidNote("malformed signer key")
        blob = _b64decode(parts[4])
        if len(blob) != 33 or blob[0] != ALG_ED25519:
            raise InvalidNote("signer key is not Ed25519")
        s = cls(parts[2], Ed25519PrivateKey.from_private_bytes(blob[1:]))
        if f"{s.key_id:08x}" != parts[3]:
            raise InvalidNote("signer key id does not match its key")
        return s

    @property
    def skey(self) -> str:
        seed = self._key.private_bytes_raw()
        blob = base64.b64encode(bytes([ALG_ED25519]) + seed).decode()
        return f"PRIVATE+KEY+{self.name}+{self.key_id:08x}+{blob}"

    @property
    def vkey(self) -> str:
        return self.verifier.vkey

    def sign_raw(self, msg: bytes) -> bytes:
        return self._key.sign(msg)

    def sign(self, text: str) -> NoteSignature:
        """Sign a note text; the text must end in a newline."""
        _check_text(text)
        return NoteSignature(self.name, self.key_id, self._key.sign(text.encode()))


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise InvalidNote("note text must end in a newline")
    # signed-note: no ASCII control characters other than newline.
    if any(c < " " and c != "\n" for c in text):
        raise InvalidNote("note contains control characters")


def format_note(text: str, signatures: Iterable[NoteSignature]) -> bytes:
    """Encode a note: text, a blank line, then one line per signature."""
    _check_text(text)
    lines = "".join(s.line() for s in signatures)
    if not lines:
        raise InvalidNote("a note needs at least one signature")
    return (text + "\n" + lines).encode()


def parse_note(data: bytes, *, max_size: int = MAX_NOTE_SIZE) -> Note:
    """Split a signed note into text and signature lines, checking form only.

    Raises InvalidNote for notes larger than ``max_size``, not UTF-8, with control
    characters, no signatures, or malformed signature lines.
    """
    if len(data) > max_size:
        raise InvalidNote(f"note is larger than {max_size} bytes")
    try:
        s = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidNote("note is not UTF-8") from e
    if any(c < " " and c != "\n" for c in s):
        raise InvalidNote("note contains control characters")
    # The text is separated from the signatures by the last empty line.
    split = s.rfind("\n\n")
    if split < 0 or not s.endswith("\n"):
        raise InvalidNote("note has no signature block")
    text, block = s[: split + 1], s[split + 2 :]
    sigs: list[NoteSignature] = []
    for line in block.split("\n")[:-1]:
        if len(sigs) >= MAX_SIGNATURES:
            raise InvalidNote("too many signatures")
        if not line.startswith(_EM_DASH):
            raise InvalidNote("malformed signature line")
        name, sep, b64 = line[len(_EM_DASH) :].partition(" ")
        if not sep or " " in b64:
            raise InvalidNote("malformed signature line")
        _check_name(name)
        blob = _b64decode(b64)
        if len(blob) < 5:
            raise InvalidNote("signature too short")
        sigs.append(NoteSignature(name, struct.unpack(">I", blob[:4])[0], blob[4:]))
    if not sigs:
        raise InvalidNote("note has no signatures")
    return Note(text, tuple(sigs))


def open_note(
    data: bytes, verifiers: Sequence[Verifier], *, max_size: int = MAX_NOTE_SIZE
) -> tuple[Note, list[Verifier]]:
    """Parse a note and verify it against known keys.

    Returns the note and the verifiers whose signatures verified. Signatures by unknown keys
    (name and key ID not both matching) are ignored, as the spec requires; a signature by a
    known key that fails to verify rejects the whole note. Cosignature (0x04) verifiers are
    skipped here: their message is not the note text (see :mod:`ledger.checkpoint`).
    Raises InvalidNote if no known Ed25519 key signed the note.
    """
    note = parse_note(data, max_size=max_size)
    known = {(v.name, v.key_id): v for v in verifiers if v.alg == ALG_ED25519}
    msg = note.text.encode()
    good: list[Verifier] = []
    for sig in note.signatures:
        v = known.get((sig.name, sig.key_id))
        if v is None:
            continue
        if not v.verify(msg, sig.signature):
            raise InvalidNote(f"signature by {v.name} does not verify")
        if v not in good:
            good.append(v)
    if not good:
        raise InvalidNote("no signature by a known key")
    return note, good
