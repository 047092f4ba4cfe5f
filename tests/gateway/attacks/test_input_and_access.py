"""Oversized and malformed input; another subject's data; introspection rights.

See world.py: every refusal is problem+json and, for 401/403, an auth.refused ledger
event that never contains the credential."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.auth.jwk import thumbprint
from tests.gateway.attacks.world import (
    PROBLEM_JSON,
    World,
    _at_header,
    _attacker_token,
    _dpop_tok,
    _tampered,
    _tok,
    assert_refusal_recorded,
    claims_of,
    ledger_size,
    me,
    problem,
    token_form,
    token_request,
)
from tests.gateway.idclient import (
    call,
    get_token,
    invite_and_enroll,
)

# -- oversized and malformed input -----------------------------------------------------------
BIG = {"invite": "x", "jwk": {"kty": "OKP"}, "pad": "x" * 100_000}


async def test_oversized_json_to_enroll(world: World) -> None:
    w = world
    resp = await w.client.post("/v1/enroll", json=BIG)
    body = await problem(resp, resp.status)
    assert resp.status in (400, 413), body


async def test_oversized_chunked_json_to_enroll(world: World) -> None:
    """No Content-Length: the body is cut off while reading, not trusted from a header."""
    w = world

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"invite": "x", "pad": "'
        for _ in range(100):
            yield b"x" * 1024
        yield b'"}'

    resp = await w.client.post(
        "/v1/enroll", data=chunks(), headers={"Content-Type": "application/json"}
    )
    body = await problem(resp, resp.status)
    assert resp.status in (400, 413), body


async def test_oversized_json_to_invites(world: World) -> None:
    w = world
    resp = await call(w.client, "POST", "/v1/invites", w.adm, w.adm_token, json=BIG)
    body = await problem(resp, resp.status)
    assert resp.status in (400, 413), body


async def test_oversized_form_to_token_endpoint(world: World) -> None:
    """413 as for JSON bodies (it was a 400 invalid_request when declared, and a chunked
    body was read whole up to client_max_size before its fields were measured)."""
    w = world
    form = token_form(_tok(w), pad="x" * 100_000)
    resp = await token_request(w.client, form, _dpop_tok(w))
    await problem(resp, 413, "payload-too-large")

    async def chunks() -> AsyncIterator[bytes]:
        yield b"grant_type=client_credentials&pad="
        for _ in range(100):
            yield b"x" * 1024

    headers = {"Content-Type": "application/x-www-form-urlencoded", "DPoP": _dpop_tok(w)[0]}
    resp = await w.client.post("/oauth/token", data=chunks(), headers=headers)
    await problem(resp, 413, "payload-too-large")


async def test_introspection_wants_a_form(world: World) -> None:
    """Not the token endpoint: a wrong content type is the 415 its description promises
    (it was a 400 oauth-error)."""
    w = world
    aud = await invite_and_enroll(w.client, w.adm, w.adm_token, "auditor", w.holder())
    aud_token = await get_token(w.client, aud)
    r = await call(w.client, "POST", "/oauth/introspect", aud, aud_token, json={"token": "x"})
    await problem(r, 415, "unsupported-media-type")
    r = await call(
        w.client, "POST", "/oauth/introspect", aud, aud_token, data={"token": "x" * 20_000}
    )
    await problem(r, 413, "payload-too-large")
    r = await call(w.client, "POST", "/oauth/introspect", aud, aud_token, data={"token": "x"})
    assert (await r.json()) == {"active": False}


@pytest.mark.parametrize("path", ["/v1/enroll", "/v1/invites"])
@pytest.mark.parametrize(
    ("content_type", "data", "status"),
    [
        ("text/plain", b'{"role": "patient"}', 415),
        ("application/x-www-form-urlencoded", b"role=patient", 415),
        ("application/json", b"{not json", 400),
        ("application/json", b"\xff\xfe", 400),
        ("application/json", b"[]", 400),
        ("application/json", b'"role"', 400),
        # Python's json recurses once a level: 2,500 levels ended in RecursionError (500).
        ("application/json", b'{"role": ' + b"[" * 2500 + b"]" * 2500 + b"}", 400),
        ("application/json", b'{"role": "patient", "ttl": NaN}', 400),
        ("application/json", b'{"role": "patient", "ttl": 1' + b"0" * 400 + b"}", 400),
        ("application/json", b'{"role": []}', 400),  # `[] in a dict` is a TypeError
    ],
    ids=[
        *("text-plain", "form", "not-json", "not-utf8", "array", "string"),
        *("deep", "nan", "huge", "unhashable"),
    ],
)
async def test_malformed_bodies(
    world: World, path: str, content_type: str, data: bytes, status: int
) -> None:
    w = world
    headers = {"Content-Type": content_type}
    if path == "/v1/invites":
        resp = await call(w.client, "POST", path, w.adm, w.adm_token, data=data, headers=headers)
    else:
        resp = await w.client.post(path, data=data, headers=headers)
    await problem(resp, status)


async def test_token_endpoint_wants_a_form(world: World) -> None:
    w = world
    resp = await w.client.post(
        "/oauth/token",
        json=token_form(_tok(w)),
        headers={"DPoP": _dpop_tok(w)[0]},
    )
    body = await problem(resp, 400, "oauth-error")
    assert body["error"] == "invalid_request"


async def test_huge_authorization_header_is_never_a_5xx(world: World) -> None:
    w = world
    token = "a" * 20_000
    resp = await w.client.get(
        "/v1/me", headers={"Authorization": f"DPoP {token}", "DPoP": w.pat.dpop("GET", "x")}
    )
    assert 400 <= resp.status < 500
    if resp.content_type == PROBLEM_JSON:
        await problem(resp, 401)


async def test_access_token_over_8k_is_refused(world: World) -> None:
    w = world
    long = _attacker_token(w, w.pat_token, _at_header(w.pat_token), pad="x" * 8200)
    assert len(long) > 8192
    resp = await me(w, long, [w.pat.dpop("GET", w.url("/v1/me"), long)])
    # aiohttp's parser may refuse a header this long itself (400); never a 5xx.
    assert resp.status in (400, 401)
    if resp.content_type == PROBLEM_JSON:
        await problem(resp, 401, "unauthorized")
    # Where the gateway sees it whole (introspection), it is inactive, not an error.
    r = await w.client.post("/oauth/introspect", data={"token": long})
    assert r.status == 401  # the introspection itself needs a caller
    aud = await invite_and_enroll(w.client, w.adm, w.adm_token, "auditor", w.holder())
    aud_token = await get_token(w.client, aud)
    r = await call(w.client, "POST", "/oauth/introspect", aud, aud_token, data={"token": long})
    assert (await r.json()) == {"active": False}


async def test_dpop_proof_over_4k_is_refused(world: World) -> None:
    w = world
    proof = w.pat.dpop("GET", w.url("/v1/me"), w.pat_token, pad="p" * 3000)
    assert len(proof) > 4096
    before = await ledger_size(w.client)
    resp = await me(w, w.pat_token, [proof])
    body = await problem(resp, 401, "invalid-dpop-proof")
    assert "malformed" in body["detail"]
    await assert_refusal_recorded(
        w.client,
        before,
        route="/v1/me",
        method="GET",
        status=401,
        problem="invalid-dpop-proof",
        credentials=(w.pat_token, proof),
    )


# -- another subject's data -------------------------------------------------------------------
async def test_receipt_of_another_subject_is_indistinguishable_from_unknown(world: World) -> None:
    w = world
    other = await invite_and_enroll(w.client, w.adm, w.adm_token, "patient", w.holder())
    other_token = await get_token(w.client, other)
    other_jti = claims_of(other_token)["jti"]
    own = await call(
        w.client,
        "GET",
        f"/v1/attestations/{claims_of(w.pat_token)['jti']}/receipt",
        w.pat,
        w.pat_token,
    )
    assert own.status == 200
    theirs = await call(
        w.client, "GET", f"/v1/attestations/{other_jti}/receipt", w.pat, w.pat_token
    )
    unknown = await call(
        w.client, "GET", f"/v1/attestations/{'A' * 24}/receipt", w.pat, w.pat_token
    )
    a = await problem(theirs, 404, "not-found")
    b = await problem(unknown, 404, "not-found")
    assert a == b
    # An auditor (or admin) may read it.
    r = await call(w.client, "GET", f"/v1/attestations/{other_jti}/receipt", w.adm, w.adm_token)
    assert (await r.json())["sub"] == other.sub


async def test_patient_cannot_introspect(world: World) -> None:
    w = world
    before = await ledger_size(w.client)
    resp = await call(
        w.client, "POST", "/oauth/introspect", w.pat, w.pat_token, data={"token": w.adm_token}
    )
    await problem(resp, 403, "forbidden")
    await assert_refusal_recorded(
        w.client,
        before,
        route="/oauth/introspect",
        method="POST",
        status=403,
        problem="forbidden",
        actor=w.pat.sub,
        credentials=(w.pat_token, w.adm_token),
    )


async def test_auditor_introspection(world: World) -> None:
    w = world
    aud = await invite_and_enroll(w.client, w.adm, w.adm_token, "auditor", w.holder("ES256"))
    aud_token = await get_token(w.client, aud)

    async def introspect(token: str) -> dict[str, Any]:
        r = await call(w.client, "POST", "/oauth/introspect", aud, aud_token, data={"token": token})
        assert r.status == 200, await r.text()
        out: dict[str, Any] = await r.json()
        return out

    live = await introspect(w.pat_token)
    assert live["active"] is True
    assert live["sub"] == w.pat.sub
    assert live["role"] == "patient"
    assert live["jti"] == claims_of(w.pat_token)["jti"]
    assert live["cnf"]["jkt"] == thumbprint(w.pat.jwk)
    revoked = await get_token(w.client, w.pat)
    r = await call(
        w.client,
        "POST",
        "/v1/revocations",
        w.adm,
        w.adm_token,
        json={"jti": claims_of(revoked)["jti"], "reason": "superseded"},
    )
    assert r.status == 200
    assert await introspect(revoked) == {"active": False}
    assert await introspect("garbage") == {"active": False}
    assert await introspect(_tampered(w, w.pat_token)) == {"active": False}
    w.clock.t += w.config.token_lifetime + w.config.clock_skew
    aud_token2 = await get_token(w.client, aud)
    r = await call(
        w.client, "POST", "/oauth/introspect", aud, aud_token2, data={"token": w.pat_token}
    )
    assert await r.json() == {"active": False}


@pytest.mark.parametrize(
    "host", ["127.0.0.1:notaport", "127.0.0.1:99999", "", "user@127.0.0.1", "a b"]
)
@pytest.mark.parametrize("path", ["/v1/me", "/.well-known/smart-configuration"])
async def test_a_malformed_host_header_is_a_400_not_a_500(
    world: World, path: str, host: str
) -> None:
    # Without TELEGATE_PUBLIC_URL the origin comes from Host, which yarl cannot parse.
    w = world
    assert not w.config.public_url
    headers = {"Host": host, "Authorization": f"DPoP {w.pat_token}"}
    headers["DPoP"] = w.pat.dpop("GET", w.url(path), w.pat_token)
    resp = await w.client.get(path, headers=headers)
    body = await problem(resp, 400)
    assert "Host" in body["detail"]
