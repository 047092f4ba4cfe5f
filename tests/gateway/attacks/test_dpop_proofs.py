"""DPoP proofs: every check of RFC 9449 section 4.3, replay, and server nonces.

See world.py: every refusal is problem+json and, for 401/403, an auth.refused ledger
event that never contains the credential."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable
from typing import Any

import jwt
import pytest

from gateway.auth.dpop import NonceSource
from tests.gateway.attacks.world import (
    World,
    assert_nothing_recorded,
    assert_refusal_recorded,
    ath,
    call_with_nonce,
    claims_of,
    forge,
    hs256,
    ledger_size,
    me,
    private_d,
    problem,
    token_form,
    token_request,
    unsigned,
)
from tests.gateway.idclient import (
    Holder,
    b64u,
    call,
    token_response,
)


# -- DPoP proof attacks --------------------------------------------------------------------
def _proof_jwt(
    holder: Holder, claims: dict[str, Any], header: dict[str, Any], alg: str | None = None
) -> str:
    return jwt.encode(claims, holder.key, algorithm=alg or holder.alg, headers=header)


def _proof_claims(w: World, **over: Any) -> dict[str, Any]:
    c = {
        "jti": secrets.token_urlsafe(12),
        "htm": "GET",
        "htu": w.url("/v1/me"),
        "iat": w.now,
        "ath": ath(w.pat_token),
    }
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def _pat_header(w: World, **over: Any) -> dict[str, Any]:
    h = {"typ": "dpop+jwt", "jwk": w.pat.jwk}
    h.update(over)
    return {k: v for k, v in h.items() if v is not None}


def _flip_signature(proof: str) -> str:
    head, sig = proof.rsplit(".", 1)
    raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
    raw[0] ^= 1
    return f"{head}.{b64u(bytes(raw))}"


DPOP_ATTACKS: dict[str, Callable[[World], str]] = {
    "other-method": lambda w: w.pat.dpop("POST", w.url("/v1/me"), w.pat_token),
    "lowercase-method": lambda w: w.pat.dpop("get", w.url("/v1/me"), w.pat_token),
    "other-path": lambda w: w.pat.dpop("GET", w.url("/v1/status/1"), w.pat_token),
    "other-origin": lambda w: w.pat.dpop("GET", "http://evil.example/v1/me", w.pat_token),
    "other-scheme": lambda w: w.pat.dpop(
        "GET", w.url("/v1/me").replace("http://", "https://"), w.pat_token
    ),
    "htu-not-a-url": lambda w: w.pat.dpop("GET", "http://h:99999/v1/me", w.pat_token),
    "htu-bad-idna": lambda w: w.pat.dpop("GET", "http://xn--/v1/me", w.pat_token),
    "htu-not-a-string": lambda w: w.pat.dpop("GET", "x", w.pat_token, htu=["/v1/me"]),
    "signed-by-another-key": lambda w: w.holder().dpop("GET", w.url("/v1/me"), w.pat_token),
    "another-key-claims-pat-jwk": lambda w: _proof_jwt(
        w.holder(), _proof_claims(w), _pat_header(w)
    ),
    "no-ath": lambda w: w.pat.dpop("GET", w.url("/v1/me")),
    "wrong-ath": lambda w: w.pat.dpop("GET", w.url("/v1/me"), w.pat_token, ath=ath("other")),
    "ath-of-another-token": lambda w: w.pat.dpop(
        "GET", w.url("/v1/me"), w.pat_token, ath=ath(w.adm_token)
    ),
    "ath-not-a-string": lambda w: w.pat.dpop("GET", w.url("/v1/me"), w.pat_token, ath=1),
    "iat-too-old": lambda w: w.pat.dpop(
        "GET",
        w.url("/v1/me"),
        w.pat_token,
        iat=w.now - w.config.dpop_window - w.config.clock_skew - 1,
    ),
    "iat-in-the-future": lambda w: w.pat.dpop(
        "GET", w.url("/v1/me"), w.pat_token, iat=w.now + w.config.clock_skew + 1
    ),
    "iat-missing": lambda w: _proof_jwt(w.pat, _proof_claims(w, iat=None), _pat_header(w)),
    "iat-a-string": lambda w: w.pat.dpop("GET", w.url("/v1/me"), w.pat_token, iat=str(w.now)),
    "iat-a-float": lambda w: w.pat.dpop("GET", w.url("/v1/me"), w.pat_token, iat=w.now + 0.5),
    "jti-missing": lambda w: _proof_jwt(w.pat, _proof_claims(w, jti=None), _pat_header(w)),
    "jti-too-short": lambda w: w.pat.dpop("GET", w.url("/v1/me"), w.pat_token, jti="abc"),
    "typ-jwt": lambda w: _proof_jwt(w.pat, _proof_claims(w), _pat_header(w, typ="JWT")),
    "typ-missing": lambda w: _proof_jwt(w.pat, _proof_claims(w), {"jwk": w.pat.jwk}),
    "jwk-missing": lambda w: _proof_jwt(w.pat, _proof_claims(w), {"typ": "dpop+jwt"}),
    "alg-none": lambda w: forge({"alg": "none", **_pat_header(w)}, _proof_claims(w), unsigned),
    "alg-none-with-signature": lambda w: forge(
        {"alg": "none", **_pat_header(w)}, _proof_claims(w), lambda m: w.pat.key.sign(m)
    ),
    "hs256-secret-jwk-x": lambda w: forge(
        {"alg": "HS256", **_pat_header(w)},
        _proof_claims(w),
        hs256(w.pat.jwk["x"].encode()),
    ),
    "hs256-oct-jwk": lambda w: forge(
        {"alg": "HS256", **_pat_header(w, jwk={"kty": "oct", "k": b64u(b"k" * 32)})},
        _proof_claims(w),
        hs256(b"k" * 32),
    ),
    "alg-does-not-match-key": lambda w: forge(
        {"alg": "ES256", **_pat_header(w)}, _proof_claims(w), lambda m: w.pat.key.sign(m)
    ),
    "jwk-with-private-d": lambda w: _proof_jwt(
        w.pat, _proof_claims(w), _pat_header(w, jwk={**w.pat.jwk, "d": private_d(w.pat)})
    ),
    "jwk-rsa": lambda w: _proof_jwt(
        w.pat, _proof_claims(w), _pat_header(w, jwk={"kty": "RSA", "n": "AQAB", "e": "AQAB"})
    ),
    "bad-signature": lambda w: _flip_signature(w.pat.dpop("GET", w.url("/v1/me"), w.pat_token)),
    "oversized-proof": lambda w: w.pat.dpop("GET", w.url("/v1/me"), w.pat_token, pad="x" * 4200),
    "not-a-jwt": lambda w: "a.b.c",
}


@pytest.mark.parametrize("case", list(DPOP_ATTACKS))
async def test_bad_dpop_proof_is_refused_and_recorded(world: World, case: str) -> None:
    w = world
    proof = DPOP_ATTACKS[case](w)
    before = await ledger_size(w.client)
    resp = await me(w, w.pat_token, [proof])
    body = await problem(resp, 401, "invalid-dpop-proof")
    assert body["detail"]
    await assert_refusal_recorded(
        w.client,
        before,
        route="/v1/me",
        method="GET",
        status=401,
        problem="invalid-dpop-proof",
        credentials=(w.pat_token, proof),
    )
    # A refused proof spends nothing: the real holder carries on.
    assert (await call(w.client, "GET", "/v1/me", w.pat, w.pat_token)).status == 200


async def test_proof_time_window_boundaries_are_accepted(world: World) -> None:
    w = world
    oldest = w.now - w.config.dpop_window - w.config.clock_skew
    newest = w.now + w.config.clock_skew
    for iat in (oldest, newest):
        proof = w.pat.dpop("GET", w.url("/v1/me"), w.pat_token, iat=iat)
        assert (await me(w, w.pat_token, [proof])).status == 200


async def test_replayed_proof_is_refused(world: World) -> None:
    w = world
    proof = w.pat.dpop("GET", w.url("/v1/me"), w.pat_token)
    first = await me(w, w.pat_token, [proof])
    assert first.status == 200, await first.text()
    before = await ledger_size(w.client)
    second = await me(w, w.pat_token, [proof])
    body = await problem(second, 401, "invalid-dpop-proof")
    assert "replayed" in body["detail"]
    await assert_refusal_recorded(
        w.client,
        before,
        route="/v1/me",
        method="GET",
        status=401,
        problem="invalid-dpop-proof",
        credentials=(w.pat_token, proof),
    )


async def test_future_dated_proof_cannot_be_replayed_after_cache_expiry(world: World) -> None:
    w = world
    window, skew = w.config.dpop_window, w.config.clock_skew
    t0 = w.now
    proof = w.pat.dpop("GET", w.url("/v1/me"), w.pat_token, iat=t0 + skew)
    assert (await me(w, w.pat_token, [proof])).status == 200
    # One second after the replay-cache entry (t0 + window + skew) was dropped; the proof's
    # iat is still inside the accepted window (iat >= now - window - skew).
    w.clock.t = t0 + window + skew + 1
    assert claims_of(proof)["iat"] >= w.now - window - skew
    resp = await me(w, w.pat_token, [proof])
    assert resp.status == 401, "the same DPoP proof was accepted twice"


async def test_non_ascii_ath_is_a_401_not_a_500(world: World) -> None:
    w = world
    # Anyone holding the token (not the key) can send this: a self-signed proof suffices.
    proof = w.holder().dpop("GET", w.url("/v1/me"), w.pat_token, ath="\u00e9" * 43)
    before = await ledger_size(w.client)
    resp = await me(w, w.pat_token, [proof])
    await problem(resp, 401, "invalid-dpop-proof")
    await assert_refusal_recorded(
        w.client,
        before,
        route="/v1/me",
        method="GET",
        status=401,
        problem="invalid-dpop-proof",
        credentials=(w.pat_token, proof),
    )


async def test_nonce_required_at_token_endpoint(nonce_world: tuple[World, NonceSource]) -> None:
    w, nonces = nonce_world
    url = w.url("/oauth/token")
    before = await ledger_size(w.client)
    resp = await token_response(w.client, w.pat)
    body = await problem(resp, 400, "oauth-error")
    # RFC 9449 section 8: 400, error use_dpop_nonce, and the nonce to use in DPoP-Nonce.
    assert body["error"] == "use_dpop_nonce"
    assert resp.headers["DPoP-Nonce"] == nonces.current(w.now)
    await assert_nothing_recorded(w.client, before)
    # A stale nonce (two periods old) and a made-up one are refused the same way.
    for nonce in (nonces.current(w.now - 2 * nonces.period), "made-up-nonce"):
        r = await token_response(w.client, w.pat, dpop=w.pat.dpop("POST", url, nonce=nonce))
        assert (await problem(r, 400, "oauth-error"))["error"] == "use_dpop_nonce"
        assert r.headers["DPoP-Nonce"] == nonces.current(w.now)
    # The nonce handed out is accepted, and stays so into the next period (not beyond).
    handed_out = resp.headers["DPoP-Nonce"]
    r = await token_response(w.client, w.pat, dpop=w.pat.dpop("POST", url, nonce=handed_out))
    assert r.status == 200, await r.text()
    w.clock.t += nonces.period
    r = await token_response(w.client, w.pat, dpop=w.pat.dpop("POST", url, nonce=handed_out))
    assert r.status == 200, await r.text()
    w.clock.t += nonces.period
    r = await token_response(w.client, w.pat, dpop=w.pat.dpop("POST", url, nonce=handed_out))
    assert (await problem(r, 400, "oauth-error"))["error"] == "use_dpop_nonce"
    assert r.headers["DPoP-Nonce"] != handed_out


async def test_nonce_required_at_resource_endpoints(
    nonce_world: tuple[World, NonceSource],
) -> None:
    w, nonces = nonce_world
    before = await ledger_size(w.client)
    resp = await call(w.client, "GET", "/v1/me", w.pat, w.pat_token)
    await problem(resp, 401, "use-dpop-nonce")
    # RFC 9449 section 9: WWW-Authenticate names the error; DPoP-Nonce carries the nonce.
    assert 'error="use_dpop_nonce"' in resp.headers["WWW-Authenticate"]
    assert resp.headers["DPoP-Nonce"] == nonces.current(w.now)
    await assert_refusal_recorded(
        w.client,
        before,
        route="/v1/me",
        method="GET",
        status=401,
        problem="use-dpop-nonce",
        credentials=(w.pat_token,),
    )
    ok = await call_with_nonce(
        w.client, "GET", "/v1/me", w.pat, w.pat_token, resp.headers["DPoP-Nonce"]
    )
    assert ok.status == 200, await ok.text()
    assert (await ok.json())["sub"] == w.pat.sub


async def test_nonce_does_not_replace_the_other_proof_checks(
    nonce_world: tuple[World, NonceSource],
) -> None:
    """A valid nonce in a proof signed by the wrong key is still refused, as a bad proof."""
    w, nonces = nonce_world
    proof = w.holder().dpop("GET", w.url("/v1/me"), w.pat_token, nonce=nonces.current(w.now))
    resp = await me(w, w.pat_token, [proof])
    await problem(resp, 401, "invalid-dpop-proof")


async def test_non_ascii_nonce_is_a_400_not_a_500(nonce_world: tuple[World, NonceSource]) -> None:
    w, _ = nonce_world
    # No identity needed: a self-signed proof from any key reaches the nonce check.
    stranger = w.holder()
    proof = stranger.dpop("POST", w.url("/oauth/token"), nonce="\u00e9")
    resp = await token_request(w.client, token_form("a.b.c"), [proof])
    body = await problem(resp, 400, "oauth-error")
    assert body["error"] == "use_dpop_nonce"
