"""Forged, expired, revoked and misdirected access tokens; the Authorization scheme.

See world.py: every refusal is problem+json and, for 401/403, an auth.refused ledger
event that never contains the credential."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import jwt
import pytest

from gateway.app import create_app
from gateway.config import Config
from tests.gateway.attacks.world import (
    NPI,
    World,
    _at_header,
    _attacker_token,
    _dpop_tok,
    _gateway_public,
    _public_pem,
    _raw_x,
    _real_kid,
    _tampered,
    _tok,
    _world,
    assert_refusal_recorded,
    claims_of,
    forge,
    hs256,
    ledger_size,
    me,
    problem,
    token_form,
    token_request,
    unsigned,
)
from tests.gateway.idclient import (
    b64u,
    call,
    get_token,
    invite_and_enroll,
    token_response,
)

# -- access token forgeries on GET /v1/me -----------------------------------------------------


FORGED_TOKENS: dict[str, Callable[[World, str], str]] = {
    "alg-none": lambda w, t: forge(_at_header(t, alg="none"), claims_of(t), unsigned),
    "alg-none-no-kid": lambda w, t: forge({"alg": "none", "typ": "at+jwt"}, claims_of(t), unsigned),
    "hs256-secret-raw-public-key": lambda w, t: forge(
        _at_header(t, alg="HS256"), claims_of(t), hs256(_raw_x(w, t))
    ),
    "hs256-secret-jwk-x": lambda w, t: forge(
        _at_header(t, alg="HS256"), claims_of(t), hs256(_gateway_public(w, t)["x"].encode())
    ),
    "hs256-secret-public-pem": lambda w, t: forge(
        _at_header(t, alg="HS256"), claims_of(t), hs256(_public_pem(w, t))
    ),
    "hs256-secret-jwks-json": lambda w, t: forge(
        _at_header(t, alg="HS256"),
        claims_of(t),
        hs256(json.dumps(_gateway_public(w, t)).encode()),
    ),
    "unknown-kid": lambda w, t: _attacker_token(w, t, _at_header(t, kid="k1")),
    "attacker-key-real-kid": lambda w, t: _attacker_token(w, t, _at_header(t)),
    "attacker-key-real-kid-embedded-jwk": lambda w, t: _attacker_token(
        w, t, _at_header(t, jwk={"kty": "OKP", "crv": "Ed25519", "x": b64u(b"\0" * 32)})
    ),
    "attacker-key-real-kid-jku": lambda w, t: _attacker_token(
        w, t, _at_header(t, jku="https://evil.example/jwks.json")
    ),
    "tampered-claims-real-signature": _tampered,
    "real-token-signature-stripped": lambda w, t: t.rsplit(".", 1)[0] + ".",
    "attacker-key-typ-jwt": lambda w, t: _attacker_token(w, t, _at_header(t, typ="JWT")),
    "client-assertion-as-token": lambda w, t: w.pat.assertion(w.url("/oauth/token")),
    "dpop-proof-as-token": lambda w, t: w.pat.dpop("GET", w.url("/v1/me")),
    "not-a-jwt": lambda w, t: "not-a-jwt",
    "four-segments": lambda w, t: t + ".x",
    "garbage-header": lambda w, t: "e30." + t.split(".", 1)[1].replace(".", "!", 1) + ".x",
}


@pytest.mark.parametrize("case", list(FORGED_TOKENS))
async def test_forged_access_token_is_refused_and_recorded(world: World, case: str) -> None:
    w = world
    forged = FORGED_TOKENS[case](w, w.pat_token)
    assert forged != w.pat_token
    # The proof itself is perfect (the patient's key, this request, ath of the forged token).
    proof = w.pat.dpop("GET", w.url("/v1/me"), forged)
    before = await ledger_size(w.client)
    resp = await me(w, forged, [proof])
    await problem(resp, 401, "unauthorized")
    assert resp.headers["WWW-Authenticate"].startswith("DPoP")
    await assert_refusal_recorded(
        w.client,
        before,
        route="/v1/me",
        method="GET",
        status=401,
        problem="unauthorized",
        credentials=(forged, proof),
    )
    # The real token still works: nothing about the attack disturbed the holder.
    assert (await call(w.client, "GET", "/v1/me", w.pat, w.pat_token)).status == 200


async def test_status_list_jwt_is_not_an_access_token(world: World) -> None:
    """Signed by the gateway's own key with the real kid, but typ statuslist+jwt."""
    w = world
    sl = await (await w.client.get("/v1/status/1")).text()
    assert jwt.get_unverified_header(sl)["kid"] == _real_kid(w.pat_token)
    before = await ledger_size(w.client)
    resp = await me(w, sl, [w.pat.dpop("GET", w.url("/v1/me"), sl)])
    body = await problem(resp, 401, "unauthorized")
    assert "type" in body["detail"]
    await assert_refusal_recorded(
        w.client,
        before,
        route="/v1/me",
        method="GET",
        status=401,
        problem="unauthorized",
        credentials=(sl,),
    )


# -- time ------------------------------------------------------------------------------------
async def test_expired_token_refused_exactly_after_exp_plus_skew(world: World) -> None:
    w = world
    exp = claims_of(w.pat_token)["exp"]
    assert exp == w.now + w.config.token_lifetime
    w.clock.t = exp + w.config.clock_skew - 1
    assert (await call(w.client, "GET", "/v1/me", w.pat, w.pat_token)).status == 200
    w.clock.t = exp + w.config.clock_skew
    before = await ledger_size(w.client)
    resp = await call(w.client, "GET", "/v1/me", w.pat, w.pat_token)
    body = await problem(resp, 401, "unauthorized")
    assert "expired" in body["detail"]
    await assert_refusal_recorded(
        w.client,
        before,
        route="/v1/me",
        method="GET",
        status=401,
        problem="unauthorized",
        credentials=(w.pat_token,),
    )


async def test_token_not_yet_valid_when_clock_moves_back_beyond_skew(world: World) -> None:
    w = world
    nbf = claims_of(w.pat_token)["nbf"]
    w.clock.t = nbf - w.config.clock_skew
    assert (await call(w.client, "GET", "/v1/me", w.pat, w.pat_token)).status == 200
    w.clock.t = nbf - w.config.clock_skew - 1
    before = await ledger_size(w.client)
    resp = await call(w.client, "GET", "/v1/me", w.pat, w.pat_token)
    body = await problem(resp, 401, "unauthorized")
    assert "not valid yet" in body["detail"]
    await assert_refusal_recorded(
        w.client,
        before,
        route="/v1/me",
        method="GET",
        status=401,
        problem="unauthorized",
        credentials=(w.pat_token,),
    )


async def test_token_for_another_origin_is_refused(world: World) -> None:
    """The token's iss/aud are this gateway's origin; presented to another origin (here
    the same process reached as evil.example, with a proof made for that URL) it is
    refused on the audience/issuer."""
    w = world
    evil = "http://evil.example/v1/me"
    proof = w.pat.dpop("GET", evil, w.pat_token)
    before = await ledger_size(w.client)
    resp = await w.client.get(
        "/v1/me",
        headers={"Host": "evil.example", "Authorization": f"DPoP {w.pat_token}", "DPoP": proof},
    )
    body = await problem(resp, 401, "unauthorized")
    assert "audience" in body["detail"].lower() or "issuer" in body["detail"].lower()
    await assert_refusal_recorded(
        w.client,
        before,
        route="/v1/me",
        method="GET",
        status=401,
        problem="unauthorized",
        credentials=(w.pat_token, proof),
    )


# -- revocation ------------------------------------------------------------------------------
async def test_revoked_token_is_refused(world: World) -> None:
    w = world
    jti = claims_of(w.pat_token)["jti"]
    other = await get_token(w.client, w.pat)
    r = await call(
        w.client,
        "POST",
        "/v1/revocations",
        w.adm,
        w.adm_token,
        json={"jti": jti, "reason": "key_compromise"},
    )
    assert r.status == 200, await r.text()
    before = await ledger_size(w.client)
    resp = await call(w.client, "GET", "/v1/me", w.pat, w.pat_token)
    body = await problem(resp, 401, "unauthorized")
    assert "revoked" in body["detail"]
    await assert_refusal_recorded(
        w.client,
        before,
        route="/v1/me",
        method="GET",
        status=401,
        problem="unauthorized",
        credentials=(w.pat_token,),
    )
    # Only that token: the holder's other token and identity are fine.
    assert (await call(w.client, "GET", "/v1/me", w.pat, other)).status == 200
    # Revoking it again finds no live attestation.
    again = await call(
        w.client,
        "POST",
        "/v1/revocations",
        w.adm,
        w.adm_token,
        json={"jti": jti, "reason": "key_compromise"},
    )
    await problem(again, 404, "not-found")


async def test_revoked_subject_loses_every_token_and_cannot_get_more(world: World) -> None:
    w = world
    second = await get_token(w.client, w.pat)
    r = await call(
        w.client,
        "POST",
        "/v1/revocations",
        w.adm,
        w.adm_token,
        json={"sub": w.pat.sub, "reason": "key_compromise"},
    )
    body = await r.json()
    assert r.status == 200, body
    idx = {claims_of(t)["status"]["status_list"]["idx"] for t in (w.pat_token, second)}
    assert set(body["revoked"]) == idx
    for token in (w.pat_token, second):
        before = await ledger_size(w.client)
        await problem(await call(w.client, "GET", "/v1/me", w.pat, token), 401, "unauthorized")
        await assert_refusal_recorded(
            w.client,
            before,
            route="/v1/me",
            method="GET",
            status=401,
            problem="unauthorized",
            credentials=(token,),
        )
    assertion = w.pat.assertion(w.url("/oauth/token"))
    before = await ledger_size(w.client)
    resp = await token_response(w.client, w.pat, assertion=assertion)
    body = await problem(resp, 401, "oauth-error")
    assert body["error"] == "invalid_client"
    await assert_refusal_recorded(
        w.client,
        before,
        route="/oauth/token",
        method="POST",
        status=401,
        problem="oauth-error",
        error="invalid_client",
        credentials=(assertion,),
    )
    # Other subjects are untouched.
    assert (await call(w.client, "GET", "/v1/me", w.adm, w.adm_token)).status == 200


async def test_revocations_and_spent_assertions_survive_a_restart(
    aiohttp_client: Any, config: Config
) -> None:
    w = await _world(aiohttp_client, config)
    doomed = await get_token(w.client, w.pat)
    other = await invite_and_enroll(w.client, w.adm, w.adm_token, "patient", w.holder())
    other_token = await get_token(w.client, other)
    for body in ({"jti": claims_of(doomed)["jti"]}, {"sub": other.sub}):
        r = await call(
            w.client,
            "POST",
            "/v1/revocations",
            w.adm,
            w.adm_token,
            json={**body, "reason": "key_compromise"},
        )
        assert r.status == 200, await r.text()
    spent = _tok(w)
    assert (await token_request(w.client, token_form(spent), _dpop_tok(w))).status == 200
    port = w.client.port
    await w.client.close()
    # Same origin (dev mode takes it from the request), so the same iss/aud and htu.
    restarted = await aiohttp_client(
        create_app(config, clock=w.clock), server_kwargs={"port": port}
    )
    w = dataclasses.replace(w, client=restarted)
    for h, token in ((w.pat, doomed), (other, other_token)):
        body = await problem(await call(w.client, "GET", "/v1/me", h, token), 401)
        assert "revoked" in body["detail"]
    r = await token_response(w.client, other)
    assert (await problem(r, 401, "oauth-error"))["error"] == "invalid_client"
    r = await token_request(w.client, token_form(spent), _dpop_tok(w))
    assert "already used" in (await problem(r, 401, "oauth-error"))["detail"]
    # The survivors carry on, and new tokens get fresh status indexes.
    assert (await call(w.client, "GET", "/v1/me", w.pat, w.pat_token)).status == 200
    fresh = await get_token(w.client, w.pat)
    used = {claims_of(t)["status"]["status_list"]["idx"] for t in (doomed, other_token)}
    assert claims_of(fresh)["status"]["status_list"]["idx"] not in used
    assert (await call(w.client, "GET", "/v1/me", w.pat, fresh)).status == 200


@pytest.mark.parametrize("role", ["patient", "provider"])
async def test_only_admins_revoke(world: World, role: str) -> None:
    w = world
    if role == "patient":
        h, token = w.pat, w.pat_token
    else:
        h = await invite_and_enroll(w.client, w.adm, w.adm_token, "provider", w.holder(), npi=NPI)
        token = await get_token(w.client, h)
    before = await ledger_size(w.client)
    resp = await call(
        w.client,
        "POST",
        "/v1/revocations",
        h,
        token,
        json={"sub": w.adm.sub, "reason": "key_compromise"},
    )
    await problem(resp, 403, "forbidden")
    await assert_refusal_recorded(
        w.client,
        before,
        route="/v1/revocations",
        method="POST",
        status=403,
        problem="forbidden",
        actor=h.sub,
        credentials=(token,),
    )
    assert (await call(w.client, "GET", "/v1/me", w.adm, w.adm_token)).status == 200


# -- Authorization scheme and DPoP header count ---------------------------------------------
SCHEMES: dict[str, Callable[[World], list[tuple[str, str]]]] = {
    "bearer-scheme": lambda w: [
        ("Authorization", f"Bearer {w.pat_token}"),
        ("DPoP", w.pat.dpop("GET", w.url("/v1/me"), w.pat_token)),
    ],
    "bearer-scheme-no-proof": lambda w: [("Authorization", f"Bearer {w.pat_token}")],
    "no-authorization": lambda w: [("DPoP", w.pat.dpop("GET", w.url("/v1/me"), w.pat_token))],
    "empty-dpop-scheme": lambda w: [
        ("Authorization", "DPoP "),
        ("DPoP", w.pat.dpop("GET", w.url("/v1/me"), w.pat_token)),
    ],
    "missing-dpop-header": lambda w: [("Authorization", f"DPoP {w.pat_token}")],
    "empty-dpop-header": lambda w: [("Authorization", f"DPoP {w.pat_token}"), ("DPoP", "")],
    "two-dpop-headers": lambda w: [
        ("Authorization", f"DPoP {w.pat_token}"),
        ("DPoP", w.pat.dpop("GET", w.url("/v1/me"), w.pat_token)),
        ("DPoP", w.pat.dpop("GET", w.url("/v1/me"), w.pat_token)),
    ],
    "two-proofs-in-one-header": lambda w: [
        ("Authorization", f"DPoP {w.pat_token}"),
        (
            "DPoP",
            w.pat.dpop("GET", w.url("/v1/me"), w.pat_token)
            + ", "
            + w.pat.dpop("GET", w.url("/v1/me"), w.pat_token),
        ),
    ],
}
SCHEME_PROBLEM = {
    "missing-dpop-header": "invalid-dpop-proof",
    "empty-dpop-header": "invalid-dpop-proof",
    "two-dpop-headers": "invalid-dpop-proof",
    "two-proofs-in-one-header": "invalid-dpop-proof",
}


@pytest.mark.parametrize("case", list(SCHEMES))
async def test_wrong_scheme_or_dpop_header_count(world: World, case: str) -> None:
    w = world
    headers = SCHEMES[case](w)
    slug = SCHEME_PROBLEM.get(case, "unauthorized")
    before = await ledger_size(w.client)
    resp = await w.client.get("/v1/me", headers=headers)
    await problem(resp, 401, slug)
    assert resp.headers["WWW-Authenticate"].startswith("DPoP")
    await assert_refusal_recorded(
        w.client,
        before,
        route="/v1/me",
        method="GET",
        status=401,
        problem=slug,
        credentials=(w.pat_token, *(v for k, v in headers if k == "DPoP" and v)),
    )
