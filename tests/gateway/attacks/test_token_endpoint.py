"""The token endpoint: client assertions, DPoP at issuance, grant types and scopes.

See world.py: every refusal is problem+json and, for 401/403, an auth.refused ledger
event that never contains the credential."""

from __future__ import annotations

from collections.abc import Callable

import jwt
import pytest

from tests.gateway.attacks.world import (
    DEVICE_FIELDS,
    World,
    _assertion_claims,
    _dpop_tok,
    _impostor,
    _tok,
    assert_nothing_recorded,
    assert_refusal_recorded,
    claims_of,
    forge,
    hs256,
    ledger_size,
    problem,
    token_form,
    token_request,
    unsigned,
)
from tests.gateway.idclient import (
    b64u,
    get_token,
    invite_and_enroll,
    token_response,
)

# -- the token endpoint --------------------------------------------------------------------
TokenCase = Callable[[World], tuple[dict[str, str] | list[tuple[str, str]], list[str]]]


UNKNOWN_PAT = "pat:" + "0" * 32
#: case -> (status, OAuth error, builder)
TOKEN_ATTACKS: dict[str, tuple[int, str, TokenCase]] = {
    "assertion-exp-beyond-five-minutes": (
        401,
        "invalid_client",
        lambda w: (
            token_form(_tok(w, exp=w.now + 300 + w.config.clock_skew + 1)),
            _dpop_tok(w),
        ),
    ),
    "assertion-expired": (
        401,
        "invalid_client",
        lambda w: (token_form(_tok(w, exp=w.now - w.config.clock_skew)), _dpop_tok(w)),
    ),
    "assertion-exp-not-an-integer": (
        401,
        "invalid_client",
        lambda w: (token_form(_tok(w, exp=w.now + 60.5)), _dpop_tok(w)),
    ),
    "assertion-wrong-aud": (
        401,
        "invalid_client",
        lambda w: (token_form(_tok(w, aud="http://evil.example/oauth/token")), _dpop_tok(w)),
    ),
    "assertion-aud-is-the-origin": (
        401,
        "invalid_client",
        lambda w: (token_form(_tok(w, aud=w.url("/"))), _dpop_tok(w)),
    ),
    "assertion-iss-not-sub": (
        401,
        "invalid_client",
        lambda w: (token_form(_tok(w, sub=w.adm.sub)), _dpop_tok(w)),
    ),
    "client-id-not-iss": (
        401,
        "invalid_client",
        lambda w: (token_form(_tok(w), client_id=w.adm.sub), _dpop_tok(w)),
    ),
    "assertion-signed-by-another-key": (
        401,
        "invalid_client",
        lambda w: (token_form(_tok(w, _impostor(w, w.pat.sub))), _dpop_tok(w)),
    ),
    "impersonate-admin": (
        401,
        "invalid_client",
        lambda w: (token_form(_tok(w, _impostor(w, w.adm.sub))), _dpop_tok(w)),
    ),
    "unknown-client": (
        401,
        "invalid_client",
        lambda w: (token_form(_tok(w, _impostor(w, UNKNOWN_PAT))), _dpop_tok(w)),
    ),
    "assertion-alg-none": (
        401,
        "invalid_client",
        lambda w: (
            token_form(forge({"alg": "none", "typ": "JWT"}, _assertion_claims(w), unsigned)),
            _dpop_tok(w),
        ),
    ),
    "assertion-hs256-with-public-key": (
        401,
        "invalid_client",
        lambda w: (
            token_form(
                forge(
                    {"alg": "HS256", "typ": "JWT"},
                    _assertion_claims(w),
                    hs256(w.pat.jwk["x"].encode()),
                )
            ),
            _dpop_tok(w),
        ),
    ),
    "assertion-jti-missing": (
        401,
        "invalid_client",
        lambda w: (
            token_form(jwt.encode(_assertion_claims(w, jti=None) | {}, w.pat.key, "EdDSA")),
            _dpop_tok(w),
        ),
    ),
    "assertion-jti-too-short": (
        401,
        "invalid_client",
        lambda w: (token_form(_tok(w, jti="short")), _dpop_tok(w)),
    ),
    "assertion-missing": (
        401,
        "invalid_client",
        lambda w: (token_form("<omit>", client_assertion="<omit>"), _dpop_tok(w)),
    ),
    "assertion-not-a-jwt": (
        401,
        "invalid_client",
        lambda w: (token_form("a.b.c"), _dpop_tok(w)),
    ),
    "wrong-assertion-type": (
        401,
        "invalid_client",
        lambda w: (
            token_form(
                _tok(w), client_assertion_type="urn:ietf:params:oauth:client-assertion-type:saml2"
            ),
            _dpop_tok(w),
        ),
    ),
    "access-token-as-assertion": (
        401,
        "invalid_client",
        lambda w: (token_form(w.pat_token), _dpop_tok(w)),
    ),
    "grant-type-password": (
        400,
        "unsupported_grant_type",
        lambda w: (token_form(_tok(w), grant_type="password"), _dpop_tok(w)),
    ),
    "grant-type-missing": (
        400,
        "unsupported_grant_type",
        lambda w: (token_form(_tok(w), grant_type="<omit>"), _dpop_tok(w)),
    ),
    "scope-of-another-role": (
        400,
        "invalid_scope",
        lambda w: (token_form(_tok(w), scope="revoke introspect"), _dpop_tok(w)),
    ),
    "scope-unknown": (
        400,
        "invalid_scope",
        lambda w: (token_form(_tok(w), scope="openid"), _dpop_tok(w)),
    ),
    "missing-dpop": (400, "invalid_dpop_proof", lambda w: (token_form(_tok(w)), [])),
    "two-dpop-headers": (
        400,
        "invalid_dpop_proof",
        lambda w: (token_form(_tok(w)), _dpop_tok(w) + _dpop_tok(w)),
    ),
    "dpop-for-another-url": (
        400,
        "invalid_dpop_proof",
        lambda w: (token_form(_tok(w)), [w.pat.dpop("POST", w.url("/v1/me"))]),
    ),
    "dpop-for-get": (
        400,
        "invalid_dpop_proof",
        lambda w: (token_form(_tok(w)), [w.pat.dpop("GET", w.url("/oauth/token"))]),
    ),
    "dpop-too-old": (
        400,
        "invalid_dpop_proof",
        lambda w: (
            token_form(_tok(w)),
            _dpop_tok(w, iat=w.now - w.config.dpop_window - w.config.clock_skew - 1),
        ),
    ),
    "duplicate-parameter": (
        400,
        "invalid_request",
        lambda w: (
            [*token_form(_tok(w)).items(), ("grant_type", "client_credentials")],
            _dpop_tok(w),
        ),
    ),
}


@pytest.mark.parametrize("case", list(TOKEN_ATTACKS))
async def test_token_endpoint_attack(world: World, case: str) -> None:
    w = world
    status, error, build = TOKEN_ATTACKS[case]
    form, dpop = build(w)
    assertion = dict(form).get("client_assertion", "")
    before = await ledger_size(w.client)
    resp = await token_request(w.client, form, dpop)
    body = await problem(resp, status, "oauth-error")
    assert body["error"] == error
    assert "access_token" not in body
    if status == 401:
        assert resp.headers["WWW-Authenticate"]
    # Refusals about credentials or rights are recorded; malformed requests are not.
    if error in ("invalid_client", "invalid_dpop_proof", "invalid_scope"):
        await assert_refusal_recorded(
            w.client,
            before,
            route="/oauth/token",
            method="POST",
            status=status,
            problem="oauth-error",
            error=error,
            credentials=tuple(c for c in (assertion,) if len(c) > 10),
            # A scope is refused to a client that proved its key: its own event. Everything
            # else here is refused before anyone is authenticated: counted in a summary.
            actor=w.pat.sub if error == "invalid_scope" else "anonymous",
        )
    else:
        await assert_nothing_recorded(w.client, before)
    # The patient can still get a token the ordinary way.
    assert (await token_response(w.client, w.pat)).status == 200


async def test_a_deeply_nested_client_assertion_is_a_401_not_a_500(world: World) -> None:
    # The unverified claims (read to find the client's key) allow 4 KiB of base64url:
    # 1,500 nested arrays, and json.loads raised RecursionError.
    w = world
    claims = b"[" * 1500 + b"]" * 1500
    assertion = f"{b64u(b'{}')}.{b64u(claims)}.{b64u(b'x' * 64)}"
    resp = await token_request(w.client, token_form(assertion), _dpop_tok(w))
    body = await problem(resp, 401, "oauth-error")
    assert body["error"] == "invalid_client"


async def test_client_assertion_replay_is_refused(world: World) -> None:
    w = world
    assertion = _tok(w)
    first = await token_request(w.client, token_form(assertion), _dpop_tok(w))
    assert first.status == 200, await first.text()
    before = await ledger_size(w.client)
    second = await token_request(w.client, token_form(assertion), _dpop_tok(w))
    body = await problem(second, 401, "oauth-error")
    assert body["error"] == "invalid_client"
    assert "already used" in body["detail"]
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
    # Still refused once the assertion's own lifetime is nearly over.
    w.clock.t = claims_of(assertion)["exp"] + w.config.clock_skew - 1
    third = await token_request(w.client, token_form(assertion), _dpop_tok(w))
    assert (await problem(third, 401, "oauth-error"))["error"] == "invalid_client"


async def test_token_endpoint_dpop_proof_replay_is_refused(world: World) -> None:
    w = world
    proof = _dpop_tok(w)
    assert (await token_request(w.client, token_form(_tok(w)), proof)).status == 200
    resp = await token_request(w.client, token_form(_tok(w)), proof)
    body = await problem(resp, 400, "oauth-error")
    assert body["error"] == "invalid_dpop_proof"


async def test_assertion_lifetime_limits_are_inclusive(world: World) -> None:
    w = world
    longest = w.now + 300 + w.config.clock_skew
    assert (await token_request(w.client, token_form(_tok(w, exp=longest)), _dpop_tok(w))).ok
    oldest = w.now - w.config.clock_skew + 1
    assert (await token_request(w.client, token_form(_tok(w, exp=oldest)), _dpop_tok(w))).ok


async def test_assertion_not_valid_before_its_nbf(world: World) -> None:
    w = world
    assertion = _tok(w, nbf=w.now + w.config.clock_skew + 60, exp=w.now + 200)
    resp = await token_request(w.client, token_form(assertion), _dpop_tok(w))
    body = await problem(resp, 401, "oauth-error")
    assert body["error"] == "invalid_client"


async def test_device_cannot_get_provider_scopes(world: World) -> None:
    w = world
    dev = await invite_and_enroll(
        w.client,
        w.pat,
        w.pat_token,
        "device",
        w.holder("ES256"),
        enroll_extra=DEVICE_FIELDS,
        patient=w.pat.sub,
    )
    for scope in ("call", "vitals.read call", "vitals.read", "enroll"):
        before = await ledger_size(w.client)
        resp = await token_response(w.client, dev, scope)
        body = await problem(resp, 400, "oauth-error")
        assert body["error"] == "invalid_scope"
        await assert_refusal_recorded(
            w.client,
            before,
            route="/oauth/token",
            method="POST",
            status=400,
            problem="oauth-error",
            error="invalid_scope",
            actor=dev.sub,
        )
    token = await get_token(w.client, dev)
    assert claims_of(token)["scope"] == "vitals.write"
    # Asked for more than its role allows, it gets what the role allows of it, and the
    # answer says so (RFC 6749 3.3, SMART App Launch v2).
    resp = await token_response(w.client, dev, "vitals.write call openid")
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["scope"] == "vitals.write" == claims_of(body["access_token"])["scope"]
