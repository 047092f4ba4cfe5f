"""A peer's signing keys: JWKS parsing (one algorithm per key, RFC 8725 3.1) and the TOFU
rotation rule."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.auth.jwk import InvalidKey, b64u
from gateway.federation import KeyContinuityBroken, parse_jwks, rotate


def okp(kid: str, seed: int) -> dict[str, Any]:
    return {"kty": "OKP", "crv": "Ed25519", "x": b64u(bytes([seed]) * 32), "kid": kid}


RSA = {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "r"}
ENC = {**okp("e", 9), "use": "enc"}


def test_a_fetched_set_keeps_only_what_is_accepted_here() -> None:
    keys = parse_jwks({"keys": [okp("a", 1), RSA, ENC]}, strict=False)
    assert [(k.kid, k.alg) for k in keys] == [("a", "EdDSA")]
    with pytest.raises(InvalidKey, match="key 'r'"):
        parse_jwks({"keys": [okp("a", 1), RSA]}, strict=True)
    with pytest.raises(InvalidKey, match="private key"):
        parse_jwks({"keys": [{**okp("a", 1), "d": b64u(bytes(32))}]}, strict=True)
    for bad in (None, [], {"keys": "x"}, {"keys": [okp(f"k{i}", i) for i in range(33)]}):
        with pytest.raises(InvalidKey):
            parse_jwks(bad, strict=False)


def test_rotation_with_overlap_is_followed() -> None:
    pinned = parse_jwks({"keys": [okp("a", 1)]}, strict=True)
    both = parse_jwks({"keys": [okp("a", 1), okp("b", 2)]}, strict=True)
    assert [k.kid for k in rotate(pinned, both)] == ["a", "b"]
    # The peer then drops the old key: the new set still holds a pinned one (b).
    only_b = parse_jwks({"keys": [okp("b", 2)]}, strict=True)
    assert [k.kid for k in rotate(rotate(pinned, both), only_b)] == ["b"]


@pytest.mark.parametrize(
    ("fetched", "message"),
    [
        ([okp("b", 2)], "none of the pinned keys"),
        ([okp("a", 7), okp("b", 2)], "gives kid 'a' another key"),
    ],
    ids=["no-overlap", "same-kid-other-key"],
)
def test_rotation_without_continuity_is_refused(fetched: list[Any], message: str) -> None:
    pinned = parse_jwks({"keys": [okp("a", 1)]}, strict=True)
    with pytest.raises(KeyContinuityBroken, match=message):
        rotate(pinned, parse_jwks({"keys": fetched}, strict=True))
