"""Attacks on identity: forged and replayed credentials, confused tokens, abused invites,
oversized input and the DPoP nonce and status list machinery.

Every refusal must be RFC 9457 problem+json with the right status; every authentication or
authorization refusal (401, 403, invalid invite) must be an ``auth.refused`` ledger event
that names the route, method, status and problem but never the credential. Time is a fake
clock shared by the gateway and the test's holders: nothing sleeps.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import secrets
import time
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import jwt
import pytest
from aiohttp import ClientResponse
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa, x448, x25519
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PrivateKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from gateway.app import create_app
from gateway.auth.dpop import NonceSource
from gateway.auth.jwk import InvalidKey, thumbprint
from gateway.auth.keys import KeyRing
from gateway.auth.status import StatusList
from gateway.config import Config
from tests.gateway.idclient import (
    Client,
    Holder,
    b64u,
    call,
    enroll,
    get_token,
    invite_and_enroll,
    local_invite,
    token_response,
)

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://telegate.dev/problems/"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
NPI = "1234567893"  # passes the CMS Luhn check
BAD_NPI = "1234567890"  # fails it
DEVICE_FIELDS = {"serial": "SN-1", "model": "Oxi 2"}


# -- the world every attack starts from --------------------------------------------------
class FakeClock:
    """Epoch seconds that only move when a test moves them."""

    def __init__(self) -> None:
        # Near real time: local_invite() stamps invites with time.time().
        self.t = float(int(time.time()))

    def __call__(self) -> float:
        return self.t


@dataclasses.dataclass
class World:
    client: Client
    config: Config
    clock: FakeClock
    adm: Holder
    adm_token: str
    pat: Holder
    pat_token: str
    jwks: dict[str, Any] = dataclasses.field(default_factory=dict)

    def url(self, path: str) -> str:
        return str(self.client.make_url(path))

    @property
    def now(self) -> int:
        return int(self.clock())

    def holder(self, alg: str = "EdDSA") -> Holder:
        h = Holder(alg)
        h.clock = self.clock
        return h


async def _world(aiohttp_client: Any, config: Config) -> World:
    clock = FakeClock()
    client = await aiohttp_client(create_app(config, clock=clock))
    adm = Holder()
    adm.clock = clock
    await enroll(client, local_invite(config.data_dir), adm)
    adm_token = await get_token(client, adm)
    pat = Holder()
    pat.clock = clock
    await invite_and_enroll(client, adm, adm_token, "patient", pat)
    pat_token = await get_token(client, pat)
    return World(client, config, clock, adm, adm_token, pat, pat_token, await jwks(client))


@pytest.fixture
async def world(aiohttp_client: Any, config: Config) -> World:
    return await _world(aiohttp_client, config)


# -- helpers -------------------------------------------------------------------------------
def claims_of(token: str) -> dict[str, Any]:
    out: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return out


def forge(header: dict[str, Any], claims: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    """A compact JWS built by hand, for what PyJWT refuses to make (none, HMAC with a
    public key)."""
    h = b64u(json.dumps(header, separators=(",", ":")).encode())
    c = b64u(json.dumps(claims, separators=(",", ":")).encode())
    return f"{h}.{c}.{b64u(sign(f'{h}.{c}'.encode()))}"


def hs256(secret: bytes) -> Callable[[bytes], bytes]:
    return lambda msg: hmac.new(secret, msg, hashlib.sha256).digest()


def unsigned(_: bytes) -> bytes:
    return b""


def ath(token: str) -> str:
    return b64u(hashlib.sha256(token.encode()).digest())


def private_d(holder: Holder) -> str:
    raw = holder.key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    return b64u(raw)


async def problem(resp: ClientResponse, status: int, slug: str | None = None) -> dict[str, Any]:
    """Assert an RFC 9457 problem with this status (and problem type); return its body."""
    text = await resp.text()
    assert resp.status == status, text
    assert resp.content_type == PROBLEM_JSON, (resp.content_type, text)
    body: dict[str, Any] = json.loads(text)
    assert isinstance(body["type"], str) and body["type"].startswith(PROBLEM_BASE)
    assert isinstance(body["title"], str) and body["title"]
    assert body["status"] == status
    if slug is not None:
        assert body["type"] == PROBLEM_BASE + slug, body
    return body


async def ledger_size(client: Client) -> int:
    return int((await (await client.get("/readyz")).json())["ledger_size"])


async def entries(client: Client, start: int = 0) -> list[tuple[dict[str, Any], bytes]]:
    """(event, raw leaf bytes) for every entry from ``start``."""
    out = []
    for i in range(start, await ledger_size(client)):
        e = await (await client.get(f"/ledger/entries/{i}")).json()
        out.append((e["event"], base64.b64decode(e["data"])))
    return out


async def assert_refusal_recorded(
    client: Client,
    before: int,
    *,
    route: str,
    method: str,
    status: int,
    problem: str,
    credentials: tuple[str, ...] = (),
    actor: str = "anonymous",
    error: str | None = None,
) -> dict[str, Any]:
    """Exactly one new ledger event, an auth.refused naming the refusal, and no credential
    anywhere on the ledger (nor a JWT credential's signature)."""
    new = await entries(client, before)
    assert [e["type"] for e, _ in new] == ["auth.refused"], [e["type"] for e, _ in new]
    event = new[0][0]
    assert event["actor"] == actor
    data = event["data"]
    assert data["route"] == route
    assert data["method"] == method
    assert data["status"] == status
    assert data["problem"] == problem
    if error is not None:
        assert data["error"] == error
    raw = b"\n".join(r for _, r in await entries(client))
    for cred in credentials:
        assert cred.encode() not in raw
        if cred.count(".") == 2 and len(cred.rsplit(".", 1)[1]) >= 16:
            assert cred.rsplit(".", 1)[1].encode() not in raw
    return dict(data)


async def assert_nothing_recorded(client: Client, before: int) -> None:
    assert await ledger_size(client) == before


async def token_request(
    client: Client,
    form: dict[str, str] | list[tuple[str, str]],
    dpop: list[str] | None = None,
    **kw: Any,
) -> ClientResponse:
    headers = [("DPoP", p) for p in dpop or []]
    headers += list(kw.pop("headers", {}).items())
    return await client.post("/oauth/token", data=form, headers=headers, **kw)


def token_form(assertion: str, **over: str) -> dict[str, str]:
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
    }
    form.update(over)
    return {k: v for k, v in form.items() if v != "<omit>"}


async def me(w: World, token: str, proofs: list[str], scheme: str = "DPoP") -> ClientResponse:
    headers = [("Authorization", f"{scheme} {token}")] + [("DPoP", p) for p in proofs]
    return await w.client.get("/v1/me", headers=headers)


async def jwks(client: Client) -> dict[str, Any]:
    out: dict[str, Any] = await (await client.get("/.well-known/jwks.json")).json(content_type=None)
    return out


# -- access token forgeries on GET /v1/me -----------------------------------------------------
def _attacker_token(w: World, token: str, header: dict[str, Any], **claims: Any) -> str:
    attacker = Ed25519PrivateKey.generate()
    return jwt.encode({**claims_of(token), **claims}, attacker, algorithm="EdDSA", headers=header)


def _real_kid(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


def _gateway_public(w: World, token: str) -> dict[str, str]:
    keys: list[dict[str, str]] = w.jwks["keys"]
    return next(k for k in keys if k["kid"] == _real_kid(token))


def _raw_x(w: World, token: str) -> bytes:
    x = _gateway_public(w, token)["x"]
    return base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))


def _public_pem(w: World, token: str) -> bytes:
    return Ed25519PublicKey.from_public_bytes(_raw_x(w, token)).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _tampered(w: World, token: str) -> str:
    h, _, s = token.split(".")
    c = claims_of(token)
    c.update(role="admin", scope="enroll introspect revoke")
    return f"{h}.{b64u(json.dumps(c).encode())}.{s}"


def _at_header(token: str, **over: Any) -> dict[str, Any]:
    return {"alg": "EdDSA", "typ": "at+jwt", "kid": _real_kid(token), **over}


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


# -- the token endpoint --------------------------------------------------------------------
TokenCase = Callable[[World], tuple[dict[str, str] | list[tuple[str, str]], list[str]]]


def _tok(w: World, holder: Holder | None = None, **over: Any) -> str:
    return (holder or w.pat).assertion(w.url("/oauth/token"), **over)


def _dpop_tok(w: World, holder: Holder | None = None, **over: Any) -> list[str]:
    return [(holder or w.pat).dpop("POST", w.url("/oauth/token"), **over)]


def _impostor(w: World, sub: str) -> Holder:
    h = w.holder()
    h.sub = sub
    return h


def _assertion_claims(w: World, **over: Any) -> dict[str, Any]:
    c = {
        "iss": w.pat.sub,
        "sub": w.pat.sub,
        "aud": w.url("/oauth/token"),
        "exp": w.now + 60,
        "iat": w.now,
        "jti": secrets.token_urlsafe(12),
    }
    c.update(over)
    return c


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
        lambda w: (token_form(_tok(w), scope="call revoke"), _dpop_tok(w)),
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
        )
    else:
        await assert_nothing_recorded(w.client, before)
    # The patient can still get a token the ordinary way.
    assert (await token_response(w.client, w.pat)).status == 200


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
        w.adm,
        w.adm_token,
        "device",
        w.holder("ES256"),
        enroll_extra=DEVICE_FIELDS,
        patient=w.pat.sub,
    )
    for scope in ("call", "vitals.write call", "vitals.read", "enroll"):
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
        )
    token = await get_token(w.client, dev)
    assert claims_of(token)["scope"] == "vitals.write"


# -- enrollment and invites -----------------------------------------------------------------
async def _invite(w: World, by: Holder, token: str, **body: Any) -> ClientResponse:
    return await call(w.client, "POST", "/v1/invites", by, token, json=body)


async def _new_invite(w: World, **body: Any) -> str:
    resp = await _invite(w, w.adm, w.adm_token, **{"role": "patient", **body})
    out = await resp.json()
    assert resp.status == 201, out
    return str(out["invite"])


async def _enroll_raw(w: World, invite: str, jwk: Any) -> ClientResponse:
    return await w.client.post("/v1/enroll", json={"invite": invite, "jwk": jwk})


async def test_invalid_invites_are_indistinguishable(world: World) -> None:
    """Reused, expired, unknown and overlong codes: one problem type, one detail."""
    w = world
    used = await _new_invite(w)
    assert (await _enroll_raw(w, used, w.holder().jwk)).status == 201
    expired = await _new_invite(w, ttl=60)
    w.clock.t += 60
    unknown = secrets.token_urlsafe(32)
    bodies = []
    for code in (used, expired, unknown, "x" * 129):
        before = await ledger_size(w.client)
        resp = await _enroll_raw(w, code, w.holder().jwk)
        body = await problem(resp, 400, "invalid-invite")
        bodies.append(body)
        await assert_refusal_recorded(
            w.client,
            before,
            route="/v1/enroll",
            method="POST",
            status=400,
            problem="invalid-invite",
            credentials=(code,),
        )
    assert all(b == bodies[0] for b in bodies), bodies
    assert set(bodies[0]) <= {"type", "title", "status", "detail"}


async def test_invite_expires_exactly_at_its_ttl(world: World) -> None:
    w = world
    code = await _new_invite(w, ttl=60)
    w.clock.t += 59
    assert (await _enroll_raw(w, code, w.holder().jwk)).status == 201


async def test_invite_code_never_reaches_the_ledger(world: World) -> None:
    w = world
    code = await _new_invite(w)
    assert (await _enroll_raw(w, code, w.holder().jwk)).status == 201
    raw = b"".join(r for _, r in await entries(w.client))
    assert code.encode() not in raw
    assert hashlib.sha256(code.encode()).hexdigest().encode() not in raw


async def _role_holder(w: World, role: str) -> tuple[Holder, str]:
    if role == "patient":
        return w.pat, w.pat_token
    extra: dict[str, Any] = {}
    enroll_extra = None
    if role == "provider":
        extra["npi"] = NPI
    if role == "device":
        extra["patient"] = w.pat.sub
        enroll_extra = DEVICE_FIELDS
    h = await invite_and_enroll(
        w.client, w.adm, w.adm_token, role, w.holder(), enroll_extra=enroll_extra, **extra
    )
    return h, await get_token(w.client, h)


FORBIDDEN_INVITES = [
    ("patient", {"role": "patient"}),
    ("patient", {"role": "admin"}),
    ("device", {"role": "device", "patient": "pat:" + "1" * 32}),
    ("auditor", {"role": "patient"}),
    ("provider", {"role": "provider", "npi": NPI}),
    ("provider", {"role": "admin"}),
    ("provider", {"role": "auditor"}),
]


@pytest.mark.parametrize(
    ("inviter", "body"),
    FORBIDDEN_INVITES,
    ids=[f"{r}-invites-{b['role']}" for r, b in FORBIDDEN_INVITES],
)
async def test_forbidden_invites(world: World, inviter: str, body: dict[str, Any]) -> None:
    w = world
    h, token = await _role_holder(w, inviter)
    before = await ledger_size(w.client)
    resp = await _invite(w, h, token, **body)
    await problem(resp, 403, "forbidden")
    await assert_refusal_recorded(
        w.client,
        before,
        route="/v1/invites",
        method="POST",
        status=403,
        problem="forbidden",
        actor=h.sub,
        credentials=(token,),
    )


BAD_INVITES = {
    "provider-without-npi": {"role": "provider"},
    "provider-npi-fails-luhn": {"role": "provider", "npi": BAD_NPI},
    "provider-npi-nine-digits": {"role": "provider", "npi": NPI[:9]},
    "provider-npi-as-number": {"role": "provider", "npi": int(NPI)},
    "device-without-patient": {"role": "device"},
    "device-patient-malformed": {"role": "device", "patient": "pat:xyz"},
    "device-patient-not-a-patient": {"role": "device", "patient": "prov:" + "1" * 32},
    "unknown-role": {"role": "root"},
    "unknown-field": {"role": "patient", "scope": "revoke"},
    "ttl-too-long": {"role": "patient", "ttl": 30 * 86400},
    "ttl-too-short": {"role": "patient", "ttl": 59},
    "ttl-boolean": {"role": "patient", "ttl": True},
    "display-name-markup": {"role": "patient", "display_name": "<script>"},
}


@pytest.mark.parametrize("case", list(BAD_INVITES))
async def test_malformed_invites_are_400(world: World, case: str) -> None:
    w = world
    before = await ledger_size(w.client)
    resp = await _invite(w, w.adm, w.adm_token, **BAD_INVITES[case])
    await problem(resp, 400, "bad-request")
    await assert_nothing_recorded(w.client, before)


async def test_provider_invite_with_valid_npi_is_accepted(world: World) -> None:
    w = world
    resp = await _invite(w, w.adm, w.adm_token, role="provider", npi=NPI)
    assert resp.status == 201, await resp.text()


def _okp(crv: str, raw: bytes) -> dict[str, str]:
    return {"kty": "OKP", "crv": crv, "x": b64u(raw)}


def _ec_jwk(curve: ec.EllipticCurve, crv: str, size: int) -> dict[str, str]:
    n = ec.generate_private_key(curve).public_key().public_numbers()
    return {
        "kty": "EC",
        "crv": crv,
        "x": b64u(n.x.to_bytes(size, "big")),
        "y": b64u(n.y.to_bytes(size, "big")),
    }


def _rsa_jwk() -> dict[str, str]:
    n = rsa.generate_private_key(65537, 2048).public_key().public_numbers()
    return {"kty": "RSA", "n": b64u(n.n.to_bytes(256, "big")), "e": "AQAB"}


def _raw_public(key: Any) -> bytes:
    out: bytes = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return out


def _with_d() -> dict[str, str]:
    h = Holder()
    return {**h.jwk, "d": private_d(h)}


def _off_curve() -> dict[str, str]:
    jwk = Holder("ES256").jwk
    y = bytearray(base64.urlsafe_b64decode(jwk["y"] + "="))
    y[-1] ^= 1
    return {**jwk, "y": b64u(bytes(y))}


BAD_KEYS: dict[str, Callable[[], Any]] = {
    "private-okp-with-d": _with_d,
    "private-ec-with-d": lambda: {**Holder("ES256").jwk, "d": b64u(b"\1" * 32)},
    "rsa": _rsa_jwk,
    "secp256k1": lambda: _ec_jwk(ec.SECP256K1(), "secp256k1", 32),
    "p-384": lambda: _ec_jwk(ec.SECP384R1(), "P-384", 48),
    "x25519": lambda: _okp("X25519", _raw_public(x25519.X25519PrivateKey.generate())),
    "x448": lambda: _okp("X448", _raw_public(x448.X448PrivateKey.generate())),
    "ed448": lambda: _okp("Ed448", _raw_public(Ed448PrivateKey.generate())),
    "oct": lambda: {"kty": "oct", "k": b64u(b"k" * 32)},
    "p-256-off-curve": _off_curve,
    "ed25519-short-x": lambda: _okp("Ed25519", b"\1" * 31),
    "ed25519-padded-x": lambda: {**Holder().jwk, "x": Holder().jwk["x"] + "="},
    "ed25519-alg-es256": lambda: {**Holder().jwk, "alg": "ES256"},
    "jwk-a-string": lambda: json.dumps(Holder().jwk),
    "jwk-missing": lambda: None,
    "jwk-huge": lambda: {**Holder().jwk, "kid": "k" * 2000},
}


@pytest.mark.parametrize("case", list(BAD_KEYS))
async def test_enroll_refuses_unsupported_keys_without_burning_the_invite(
    world: World, case: str
) -> None:
    w = world
    code = await _new_invite(w)
    before = await ledger_size(w.client)
    resp = await _enroll_raw(w, code, BAD_KEYS[case]())
    await problem(resp, 400, "invalid-key")
    await assert_nothing_recorded(w.client, before)
    # The key is checked before the invite is redeemed: the invite still works.
    assert (await _enroll_raw(w, code, w.holder().jwk)).status == 201


async def test_same_public_key_cannot_enroll_twice(world: World) -> None:
    """One key, one identity: a second enrollment of a key is a 409, for either key type."""
    w = world
    for h in (w.holder(), w.holder("ES256")):
        assert (await _enroll_raw(w, await _new_invite(w), h.jwk)).status == 201
        code = await _new_invite(w)
        before = await ledger_size(w.client)
        resp = await _enroll_raw(w, code, h.jwk)
        await problem(resp, 409, "conflict")
        await assert_nothing_recorded(w.client, before)
    # Not even as another role, nor with the already-enrolled admin key.
    resp = await _enroll_raw(w, await _new_invite(w, role="auditor"), w.adm.jwk)
    await problem(resp, 409, "conflict")


DEVICE_FIELD_ERRORS = {
    "serial-missing": {"model": "Oxi 2"},
    "serial-markup": {"serial": "<x>", "model": "Oxi 2"},
    "model-not-a-string": {"serial": "SN-1", "model": 2},
}


@pytest.mark.parametrize("case", list(DEVICE_FIELD_ERRORS))
async def test_device_enrollment_needs_device_fields(world: World, case: str) -> None:
    w = world
    resp = await _invite(w, w.adm, w.adm_token, role="device", patient=w.pat.sub)
    code = (await resp.json())["invite"]
    body = {"invite": code, "jwk": w.holder().jwk, **DEVICE_FIELD_ERRORS[case]}
    await problem(await w.client.post("/v1/enroll", json=body), 400, "bad-request")


async def test_refused_device_enrollment_does_not_burn_the_invite(world: World) -> None:
    w = world
    resp = await _invite(w, w.adm, w.adm_token, role="device", patient=w.pat.sub)
    code = (await resp.json())["invite"]
    h = w.holder()
    bad = {"invite": code, "jwk": h.jwk, "serial": "<x>", "model": "Oxi 2"}
    await problem(await w.client.post("/v1/enroll", json=bad), 400, "bad-request")
    good = await w.client.post("/v1/enroll", json={"invite": code, "jwk": h.jwk, **DEVICE_FIELDS})
    assert good.status == 201, await good.text()


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
    w = world
    form = token_form(_tok(w), pad="x" * 100_000)
    resp = await token_request(w.client, form, _dpop_tok(w))
    body = await problem(resp, resp.status)
    assert resp.status in (400, 413), body


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
    ],
    ids=["text-plain", "form", "not-json", "not-utf8", "array", "string"],
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


# -- DPoP server nonces ------------------------------------------------------------------------
@pytest.fixture
async def nonce_world(aiohttp_client: Any, config: Config) -> tuple[World, NonceSource]:
    """A gateway that requires RFC 9449 nonces; the holders learn them the way any client
    does, from the ``DPoP-Nonce`` header of a refusal."""
    cfg = dataclasses.replace(config, dpop_require_nonce=True)
    clock = FakeClock()
    client = await aiohttp_client(create_app(cfg, clock=clock))
    nonces = NonceSource((cfg.key_dir / "dpop-nonce.key").read_bytes())
    url = str(client.make_url("/oauth/token"))

    async def token_for(h: Holder) -> str:
        first = await token_response(client, h)
        assert first.status == 400, await first.text()
        nonce = first.headers["DPoP-Nonce"]
        r = await token_response(client, h, dpop=h.dpop("POST", url, nonce=nonce))
        assert r.status == 200, await r.text()
        return str((await r.json())["access_token"])

    adm = Holder()
    adm.clock = clock
    await enroll(client, local_invite(cfg.data_dir), adm)
    adm_token = await token_for(adm)
    inv = await call_with_nonce(
        client,
        "POST",
        "/v1/invites",
        adm,
        adm_token,
        nonces.current(int(clock())),
        json={"role": "patient"},
    )
    assert inv.status == 201, await inv.text()
    pat = Holder()
    pat.clock = clock
    await enroll(client, (await inv.json())["invite"], pat)
    pat_token = await token_for(pat)
    return World(client, cfg, clock, adm, adm_token, pat, pat_token), nonces


async def call_with_nonce(
    client: Client, method: str, path: str, holder: Holder, token: str, nonce: str, **kw: Any
) -> ClientResponse:
    url = str(client.make_url(path))
    headers = {
        "Authorization": f"DPoP {token}",
        "DPoP": holder.dpop(method, url, token, nonce=nonce),
    }
    return await client.request(method, path, headers=headers, **kw)


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
