"""Fixed keys and signed objects the harnesses check against, so that the committed corpus
(made by ``python -m fuzz.seeds``) holds inputs that really verify, and the fuzzer starts
from there instead of from bytes that fail at the first signature check."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.auth.jwk import b64u
from ledger.checkpoint import Checkpoint, CosignatureSigner
from ledger.merkle import consistency_proof, leaf_hash, node_hash
from ledger.note import Signer, format_note

ORIGIN = "example.org/telegate/log"
LOG = Signer(ORIGIN, Ed25519PrivateKey.from_private_bytes(b"\x01" * 32))
WITNESS = CosignatureSigner(
    Signer("witness.example", Ed25519PrivateKey.from_private_bytes(b"\x02" * 32))
)
HOLDER = Ed25519PrivateKey.from_private_bytes(b"\x03" * 32)
HOLDER_JWK = {"kty": "OKP", "crv": "Ed25519", "x": b64u(HOLDER.public_key().public_bytes_raw())}

LEAVES = [leaf_hash(f"entry {i}".encode()) for i in range(8)]


def _read(nodes: Any) -> list[bytes]:
    """A NodeReader over LEAVES: the hash of each complete subtree ``(level, index)``."""
    out = []
    for level, index in nodes:
        hashes = LEAVES[index << level : (index + 1) << level]
        while len(hashes) > 1:
            hashes = [node_hash(a, b) for a, b in zip(hashes[::2], hashes[1::2], strict=True)]
        out.append(hashes[0])
    return out


def root(size: int) -> bytes:
    from ledger.merkle import tree_hash

    return tree_hash(size, _read)


def proof(old: int, new: int) -> list[bytes]:
    return consistency_proof(old, new, _read)


def checkpoint_note(size: int, extensions: tuple[str, ...] = ()) -> bytes:
    """The log's signed checkpoint of the first ``size`` LEAVES."""
    text = Checkpoint(ORIGIN, size, root(size), extensions).text()
    return format_note(text, [LOG.sign(text)])


def compact_jws(header: Mapping[str, Any], payload: bytes, key: Ed25519PrivateKey) -> str:
    """An EdDSA compact JWS over exactly ``payload`` (PyJWT would re-encode a dict)."""
    head = b64u(json.dumps(header, separators=(",", ":")).encode())
    body = b64u(payload)
    return f"{head}.{body}.{b64u(key.sign(f'{head}.{body}'.encode()))}"
