"""Holder keys: the algorithm a JWK may name is pinned by its key type."""

from __future__ import annotations

import pytest

from gateway.auth.jwk import HolderKey, InvalidKey
from tests.gateway.idclient import Holder


def test_an_ed25519_key_may_name_eddsa_or_rfc9864_ed25519() -> None:
    jwk = Holder().jwk
    for alg in ("EdDSA", "Ed25519"):  # WebCrypto exports "Ed25519" (RFC 9864)
        assert HolderKey.from_jwk({**jwk, "alg": alg}).alg == "EdDSA"
    for alg in ("ES256", "HS256", "none", "Ed448"):
        with pytest.raises(InvalidKey):
            HolderKey.from_jwk({**jwk, "alg": alg})


def test_a_p256_key_is_es256_only() -> None:
    jwk = Holder("ES256").jwk
    assert HolderKey.from_jwk({**jwk, "alg": "ES256"}).alg == "ES256"
    for alg in ("EdDSA", "Ed25519", "ES384"):
        with pytest.raises(InvalidKey):
            HolderKey.from_jwk({**jwk, "alg": alg})


def test_one_key_has_one_spelling_and_so_one_thumbprint() -> None:
    """Found by fuzz/jws.py: base64url with non-zero padding bits decoded to the same
    public key under another x, so one key had several RFC 7638 thumbprints (jkt)."""
    jwk = Holder().jwk
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet[alphabet.index(jwk["x"][-1]) ^ 1]
    HolderKey.from_jwk(jwk)
    with pytest.raises(InvalidKey):
        HolderKey.from_jwk({**jwk, "x": jwk["x"][:-1] + last})
