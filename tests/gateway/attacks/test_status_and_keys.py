"""The token status list, RFC 7638/8037 thumbprints and signing key rotation.

See world.py: every refusal is problem+json and, for 401/403, an auth.refused ledger
event that never contains the credential."""

from __future__ import annotations

import base64
import zlib

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from gateway.auth.jwk import InvalidKey, thumbprint
from gateway.auth.keys import KeyRing
from gateway.auth.status import StatusList
from tests.gateway.attacks.world import (
    World,
    _real_kid,
    claims_of,
    jwks,
    problem,
)
from tests.gateway.idclient import (
    b64u,
    call,
    get_token,
)


# -- the token status list ------------------------------------------------------------------------
def _bit(lst: bytes, idx: int) -> int:
    return (lst[idx // 8] >> (idx % 8)) & 1 if idx // 8 < len(lst) else 0


async def test_status_list_marks_revoked_tokens(world: World) -> None:
    w = world
    live = await get_token(w.client, w.pat)
    revoked = w.pat_token
    r = await call(
        w.client,
        "POST",
        "/v1/revocations",
        w.adm,
        w.adm_token,
        json={"jti": claims_of(revoked)["jti"], "reason": "key_compromise"},
    )
    assert r.status == 200
    resp = await w.client.get("/v1/status/1")
    assert resp.status == 200
    assert resp.content_type == "application/statuslist+jwt"
    sl = await resp.text()
    header = jwt.get_unverified_header(sl)
    assert header["typ"] == "statuslist+jwt"
    keyset = await jwks(w.client)
    jwk = next(k for k in keyset["keys"] if k["kid"] == header["kid"])
    claims = jwt.decode(sl, jwt.PyJWK(jwk).key, algorithms=[jwk["alg"]])
    status = claims_of(revoked)["status"]["status_list"]
    assert claims["sub"] == status["uri"]
    assert claims["iat"] <= w.now < claims["exp"]
    lst_claim = claims["status_list"]
    assert lst_claim["bits"] == 1
    lst = zlib.decompress(base64.urlsafe_b64decode(lst_claim["lst"] + "=="))
    assert _bit(lst, status["idx"]) == 1
    live_idx = claims_of(live)["status"]["status_list"]["idx"]
    assert live_idx != status["idx"]
    assert _bit(lst, live_idx) == 0
    assert _bit(lst, claims_of(w.adm_token)["status"]["status_list"]["idx"]) == 0
    # Exactly one token is revoked.
    assert sum(bin(b).count("1") for b in lst) == 1


async def test_unknown_status_list_is_404(world: World) -> None:
    resp = await world.client.get("/v1/status/2")
    await problem(resp, 404, "not-found")


# draft-ietf-oauth-status-list, section "Status List" example (1-bit statuses).
DRAFT_STATUSES = [1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1]
DRAFT_LST = "eNrbuRgAAhcBXQ"


def test_status_list_matches_the_draft_example() -> None:
    sl = StatusList()
    for i, s in enumerate(DRAFT_STATUSES):
        sl.set(i, bool(s))
    assert bytes(sl.bits) == bytes([0xB9, 0xA3])
    assert sl.encode() == {"bits": 1, "lst": DRAFT_LST}
    back = StatusList.decode({"bits": 1, "lst": DRAFT_LST})
    assert [back.get(i) for i in range(len(DRAFT_STATUSES))] == DRAFT_STATUSES
    assert back.get(10_000) == 0
    back.set(0, False)
    assert back.get(0) == 0 and back.get(3) == 1


def test_status_list_decode_refuses_bombs_and_other_widths() -> None:
    bomb = b64u(zlib.compress(bytes(2 << 20), 9))
    with pytest.raises(ValueError, match="too large"):
        StatusList.decode({"bits": 1, "lst": bomb})
    with pytest.raises(ValueError, match="1-bit"):
        StatusList.decode({"bits": 2, "lst": DRAFT_LST})


# -- RFC 7638 / RFC 8037 thumbprints ---------------------------------------------------------
RFC8037_A3 = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
RFC7638_RSA = {
    "kty": "RSA",
    "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSo"
    "c_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_"
    "FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vM"
    "QFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
    "e": "AQAB",
    "alg": "RS256",
    "kid": "2011-04-29",
}


def test_thumbprint_rfc8037_ed25519_example() -> None:
    assert thumbprint(RFC8037_A3) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    # Only the required members count, in any order.
    noisy = {"x": RFC8037_A3["x"], "kid": "k", "use": "sig", "crv": "Ed25519", "kty": "OKP"}
    assert thumbprint(noisy) == thumbprint(RFC8037_A3)


def test_thumbprint_rfc7638_rsa_example() -> None:
    assert len(RFC7638_RSA["n"]) == 342
    assert thumbprint(RFC7638_RSA) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_thumbprint_refuses_incomplete_keys() -> None:

    with pytest.raises(InvalidKey):
        thumbprint({"kty": "OKP", "crv": "Ed25519"})
    with pytest.raises(InvalidKey):
        thumbprint({"kty": "oct", "k": "AAAA"})


# -- signing key rotation ----------------------------------------------------------------------
async def test_rotation_keeps_old_tokens_until_they_expire(world: World) -> None:
    """``telegate keys rotate`` (here: the KeyRing call it makes) under a running gateway."""
    w = world
    cfg = w.config
    keep = cfg.token_lifetime + cfg.clock_skew
    old_token, old_kid = w.pat_token, _real_kid(w.pat_token)
    t0 = w.now
    ring = KeyRing.open(cfg.key_dir / "signing", t0, alg=cfg.signing_alg, keep_seconds=keep)
    new_key = ring.rotate(t0)
    assert new_key.kid != old_kid
    new_token = await get_token(w.client, w.pat)
    assert _real_kid(new_token) == new_key.kid
    assert {k["kid"] for k in (await jwks(w.client))["keys"]} == {old_kid, new_key.kid}
    sl = await (await w.client.get("/v1/status/1")).text()
    assert jwt.get_unverified_header(sl)["kid"] == new_key.kid
    for token in (old_token, new_token):
        assert (await call(w.client, "GET", "/v1/me", w.pat, token)).status == 200
    # The old token lives out its lifetime, then expires as any other.
    exp = claims_of(old_token)["exp"]
    w.clock.t = exp + cfg.clock_skew - 1
    assert (await call(w.client, "GET", "/v1/me", w.pat, old_token)).status == 200
    w.clock.t = t0 + keep
    await problem(await call(w.client, "GET", "/v1/me", w.pat, old_token), 401, "unauthorized")
    # Past its retention the old key leaves the JWKS and verifies nothing, even a token
    # freshly signed with it (say, by someone holding the retired private key).
    assert {k["kid"] for k in (await jwks(w.client))["keys"]} == {new_key.kid}
    pem = (cfg.key_dir / "signing" / f"{old_kid}.pem").read_bytes()
    retired = serialization.load_pem_private_key(pem, password=None)
    now = w.now
    claims = {**claims_of(old_token), "iat": now, "nbf": now, "exp": now + 60}
    forged = jwt.encode(
        claims, retired, algorithm="EdDSA", headers={"kid": old_kid, "typ": "at+jwt"}
    )
    body = await problem(await call(w.client, "GET", "/v1/me", w.pat, forged), 401)
    assert "unknown key" in body["detail"]
    fresh = await get_token(w.client, w.pat)
    assert _real_kid(fresh) == new_key.kid
    assert (await call(w.client, "GET", "/v1/me", w.pat, fresh)).status == 200


def test_a_large_status_list_round_trips_and_junk_is_a_value_error() -> None:
    # Found by the federation work: lists over 4096 base64 characters were refused, with
    # the wrong error type. 200,000 tokens with a random tenth revoked compress to ~10 KB.
    import random

    rng = random.Random(7)
    sl = StatusList()
    revoked = sorted(rng.sample(range(200_000), 20_000))
    for i in revoked:
        sl.set(i)
    claim = sl.encode()
    assert len(str(claim["lst"])) > 4096
    back = StatusList.decode(claim)
    assert [i for i in range(200_000) if back.get(i)] == revoked
    for lst in ("not base64!", "A", b64u(b"not zlib at all")):
        with pytest.raises(ValueError):
            StatusList.decode({"bits": 1, "lst": lst})


async def test_the_status_list_is_signed_by_a_key_rotated_in_on_disk(world: World) -> None:
    # Found by the federation work: the list kept the old key until the next token issue.
    cfg = world.config
    keep = cfg.token_lifetime + cfg.clock_skew
    ring = KeyRing.open(cfg.key_dir / "signing", world.now, alg=cfg.signing_alg, keep_seconds=keep)
    new_key = ring.rotate(world.now)
    sl = await (await world.client.get("/v1/status/1")).text()
    assert jwt.get_unverified_header(sl)["kid"] == new_key.kid
