"""JWKs limited to what telegate accepts: Ed25519 (EdDSA) and P-256 (ES256) public keys.

RFC 7638 thumbprints are hand-written (a few lines; PyJWT has none). Algorithms are pinned
by key type: an OKP key only ever verifies EdDSA, an EC key only ES256; ``none`` and HMAC
are never accepted anywhere.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..errors import GatewayError
from ..jsonio import loads

__all__ = [
    "ALGORITHMS",
    "HolderKey",
    "InvalidKey",
    "b64u",
    "b64u_decode",
    "b64u_strict",
    "thumbprint",
    "unverified_part",
]

ALGORITHMS = ("EdDSA", "ES256")


class InvalidKey(GatewayError):
    status = 400
    slug = "invalid-key"
    title = "Unsupported or malformed public key"


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_decode(s: str) -> bytes:
    if not isinstance(s, str) or len(s) > 4096 or "=" in s:
        raise InvalidKey("malformed base64url")
    try:
        out = base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    except (ValueError, TypeError) as e:
        raise InvalidKey("malformed base64url") from e
    # One spelling per value: non-zero padding bits would give one key several thumbprints.
    if b64u(out) != s:
        raise InvalidKey("malformed base64url")
    return out


_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")


def b64u_strict(segment: str) -> bytes:
    """Strict base64url without padding (RFC 7515 section 2), of any length: checked by
    one regex rather than a per-character loop (a batch payload is tens of kilobytes).
    Raises ValueError."""
    if not _B64URL.match(segment) or len(segment) % 4 == 1:
        raise ValueError("not base64url without padding")
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def unverified_part(jws: str, part: int, limit: int = 2048) -> dict[str, Any]:
    """Decode one segment (0 header, 1 payload) of a compact JWS without verifying it.

    Only for choosing the verification key; PyJWT's full parse checks everything again.
    Raises InvalidKey when the segment is oversized or not a JSON object.
    """
    segments = jws.split(".")
    if len(segments) != 3 or len(segments[part]) > limit:
        raise InvalidKey("malformed JWS")
    try:
        value = loads(b64u_decode(segments[part]), "the JWS segment")
    except ValueError as e:
        raise InvalidKey("malformed JWS") from e
    if not isinstance(value, dict):
        raise InvalidKey("malformed JWS")
    return value


# RFC 7638 section 3.2: the required members of each key type, in lexicographic order.
# RSA is here only so thumbprints of any key can be computed (RFC 7638's own example is
# RSA); HolderKey never accepts one.
_REQUIRED = {"OKP": ("crv", "kty", "x"), "EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n")}


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url), over the required members only."""
    kty = jwk.get("kty")
    if kty not in _REQUIRED:
        raise InvalidKey("only OKP, EC and RSA keys have thumbprints here")
    members = {k: jwk.get(k) for k in _REQUIRED[kty]}
    if not all(isinstance(v, str) for v in members.values()):
        raise InvalidKey("JWK is missing a required member")
    # RFC 7638 3.3: no whitespace, members sorted, UTF-8.
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True)
    return b64u(hashlib.sha256(canonical.encode()).digest())


@dataclass(frozen=True, slots=True)
class HolderKey:
    """A holder's public key with the one algorithm it may verify."""

    jwk: dict[str, str]
    alg: str
    key: Ed25519PublicKey | ec.EllipticCurvePublicKey
    jkt: str

    @classmethod
    def from_jwk(cls, jwk: Any) -> HolderKey:
        """Parse a public JWK. Raises InvalidKey for private keys, other curves or types.

        Parsed keys are cached (bounded) by their exact JSON: the same holder key arrives
        with every DPoP proof, and building a key object is not free.
        """
        if not isinstance(jwk, dict):
            raise InvalidKey("JWK must be a small JSON object")
        try:
            text = json.dumps(jwk, sort_keys=True)
        except (TypeError, ValueError) as e:
            raise InvalidKey("JWK must be a small JSON object") from e
        if len(text) > 1024:
            raise InvalidKey("JWK must be a small JSON object")
        hit = _CACHE.get(text)
        if hit is None:
            hit = cls._parse(jwk)
            if len(_CACHE) >= _CACHE_MAX:
                _CACHE.pop(next(iter(_CACHE)))
            _CACHE[text] = hit
        return hit

    @classmethod
    def _parse(cls, jwk: dict[str, Any]) -> HolderKey:
        if "d" in jwk:
            raise InvalidKey("that is a private key: send only the public part")
        kty, crv = jwk.get("kty"), jwk.get("crv")
        pub: Ed25519PublicKey | ec.EllipticCurvePublicKey
        if kty == "OKP" and crv == "Ed25519":
            x = b64u_decode(jwk.get("x", ""))
            if len(x) != 32:
                raise InvalidKey("Ed25519 x must be 32 bytes")
            pub, alg = Ed25519PublicKey.from_public_bytes(x), "EdDSA"
            clean = {"kty": "OKP", "crv": "Ed25519", "x": jwk["x"]}
        elif kty == "EC" and crv == "P-256":
            x, y = b64u_decode(jwk.get("x", "")), b64u_decode(jwk.get("y", ""))
            if len(x) != 32 or len(y) != 32:
                raise InvalidKey("P-256 coordinates must be 32 bytes")
            try:
                pub = ec.EllipticCurvePublicNumbers(
                    int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
                ).public_key()
            except ValueError as e:
                raise InvalidKey("point is not on P-256") from e
            alg = "ES256"
            clean = {"kty": "EC", "crv": "P-256", "x": jwk["x"], "y": jwk["y"]}
        else:
            raise InvalidKey("only Ed25519 (EdDSA) and P-256 (ES256) keys are accepted")
        # RFC 9864 names the fully specified algorithm "Ed25519" (WebCrypto exports it);
        # it is the same signature as JOSE's "EdDSA" on an Ed25519 key.
        if "alg" in jwk and jwk["alg"] != alg and (alg, jwk["alg"]) != ("EdDSA", "Ed25519"):
            raise InvalidKey(f"a {crv} key is used with {alg} only")
        return cls(clean, alg, pub, thumbprint(clean))


_CACHE: dict[str, HolderKey] = {}
_CACHE_MAX = 4096
