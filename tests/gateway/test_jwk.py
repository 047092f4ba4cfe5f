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
