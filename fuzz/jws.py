"""Compact JWS headers, DPoP proofs (``gateway.auth.dpop``) and JWKs (``gateway.auth.jwk``).

The first byte picks what the rest is: (0) a DPoP header value as a client sends it, (1) the
claims of a proof that the harness signs with a fixed holder key, so the fuzzer reaches
everything after the signature check, or (2) a JWK as JSON. Properties: a proof is refused
with ``DPoPError`` or accepted with a fresh ``iat``, a well-formed ``jti`` and the
thumbprint of the key that signed it; a JWK is refused with ``InvalidKey`` (or the JSON
with ``InvalidJSON``) or accepted as a key whose public part parses back to itself and is
the canonical encoding of the key (one key, one thumbprint).
"""

from __future__ import annotations

import contextlib
import sys

from fuzz._harness import instrumented, main, text

with instrumented(__name__, "jwt"):
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    from yarl import URL

    from fuzz._keys import HOLDER, HOLDER_JWK, compact_jws
    from gateway.auth.dpop import DPoPError, NonceSource, check_proof
    from gateway.auth.jwk import HolderKey, InvalidKey, b64u, thumbprint
    from gateway.jsonio import InvalidJSON, loads

URL_ = URL("https://gw.example/v1/token")
NOW, WINDOW, SKEW = 1_800_000_000, 60, 5
NONCES = NonceSource(b"n" * 32)
HEADER = {"typ": "dpop+jwt", "alg": "EdDSA", "jwk": HOLDER_JWK}


def _proof(proof: str) -> None:
    for token, nonces in ((None, None), ("an-access-token", NONCES)):
        try:
            got = check_proof(
                [proof],
                method="POST",
                url=URL_,
                now=NOW,
                window=WINDOW,
                skew=SKEW,
                access_token=token,
                nonces=nonces,
            )
        except DPoPError:
            continue
        assert NOW - WINDOW - SKEW <= got.iat <= NOW + SKEW
        assert 8 <= len(got.jti) <= 256 and got.jkt == thumbprint(got.key.jwk)


def _jwk(data: bytes) -> None:
    try:
        value = loads(data)
    except InvalidJSON:
        return
    if isinstance(value, dict):
        with contextlib.suppress(InvalidKey):
            thumbprint(value)
    try:
        key = HolderKey.from_jwk(value)
    except InvalidKey:
        return
    again = HolderKey.from_jwk(key.jwk)
    assert (again.jwk, again.alg, again.jkt) == (key.jwk, key.alg, key.jkt)
    # One key, one thumbprint: the JWK is the canonical encoding of the key itself.
    if key.alg == "EdDSA":
        coordinates = [key.key.public_bytes(Encoding.Raw, PublicFormat.Raw)]
    else:
        point = key.key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        coordinates = [point[1:33], point[33:]]
    assert [key.jwk[c] for c in ("x", "y")[: len(coordinates)]] == [b64u(c) for c in coordinates]


def check(data: bytes) -> None:
    if not data:
        return
    mode, rest = data[0] % 3, data[1:]
    if mode == 0:
        _proof(text(rest))
    elif mode == 1:
        _proof(compact_jws(HEADER, rest, HOLDER))
    else:
        _jwk(rest)


if __name__ == "__main__":
    main(check)
    sys.exit(0)
