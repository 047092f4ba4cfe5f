"""IETF Token Status List (draft-ietf-oauth-status-list), 1 bit per token, JWT form.

Bit ``i`` is bit ``i % 8`` (least significant first) of byte ``i // 8``; the byte array is
DEFLATE-compressed with the ZLIB format and base64url-encoded into ``lst``.
"""

from __future__ import annotations

import zlib

from .jwk import b64u, b64u_strict

__all__ = ["StatusList"]


class StatusList:
    """A growable list of 1-bit statuses: 0 valid, 1 invalid (revoked)."""

    def __init__(self, size: int = 0) -> None:
        self.bits = bytearray((size + 7) // 8)

    def set(self, index: int, revoked: bool = True) -> None:
        byte, bit = divmod(index, 8)
        if byte >= len(self.bits):
            self.bits.extend(bytes(byte + 1 - len(self.bits)))
        if revoked:
            self.bits[byte] |= 1 << bit
        else:
            self.bits[byte] &= ~(1 << bit) & 0xFF

    def get(self, index: int) -> int:
        byte, bit = divmod(index, 8)
        return (self.bits[byte] >> bit) & 1 if byte < len(self.bits) else 0

    def encode(self) -> dict[str, int | str]:
        """The ``status_list`` claim: ``{"bits": 1, "lst": ...}``."""
        return {"bits": 1, "lst": b64u(zlib.compress(bytes(self.bits), 9))}

    @classmethod
    def decode(cls, claim: dict[str, int | str], *, max_bytes: int = 1 << 20) -> StatusList:
        """Parse a ``status_list`` claim. Raises ValueError for anything malformed or a list
        that inflates beyond ``max_bytes`` (a deflate bomb)."""
        lst = claim.get("lst")
        if claim.get("bits") != 1 or not isinstance(lst, str):
            raise ValueError("only 1-bit status lists are supported")
        # Deflate cannot compress below ~1/1032, so a longer lst cannot be a list we accept.
        if len(lst) > max_bytes:
            raise ValueError("status list lst is longer than any list accepted")
        d = zlib.decompressobj()
        try:
            raw = d.decompress(b64u_strict(lst), max_bytes)
        except zlib.error as e:
            raise ValueError("status list lst is not ZLIB data") from e
        if d.unconsumed_tail:
            raise ValueError("status list too large")
        out = cls()
        out.bits = bytearray(raw)
        return out
