"""Shared setup for the identity attack tests: a gateway on a fake clock with an admin
and a patient enrolled, and helpers that forge credentials, check refusals and read what
the ledger recorded."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from typing import Any

import jwt
from aiohttp import ClientResponse
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from gateway.app import create_app
from gateway.auth.refusals import REFUSALS
from gateway.config import Config
from tests.gateway.idclient import (
    Client,
    Holder,
    b64u,
    enroll,
    get_token,
    invite_and_enroll,
    local_invite,
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
    await enroll(client, local_invite(config), adm)
    adm_token = await get_token(client, adm)
    pat = Holder()
    pat.clock = clock
    await invite_and_enroll(client, adm, adm_token, "patient", pat)
    pat_token = await get_token(client, pat)
    return World(client, config, clock, adm, adm_token, pat, pat_token, await jwks(client))


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
    """Assert an RFC 9457 problem with this status (and problem type); return its body.
    Under /fhir (gateway/fhir/outcome.py) the same problem comes as a FHIR OperationOutcome:
    its problem type in ``details.coding``, its detail in ``diagnostics``; returned as the
    problem it stands for."""
    text = await resp.text()
    assert resp.status == status, text
    if resp.url.path.startswith("/fhir/") and status != 429:
        assert resp.content_type == "application/fhir+json", (resp.content_type, text)
        (issue,) = json.loads(text)["issue"]
        (coding,) = issue["details"]["coding"]
        assert coding["system"] + "/" == PROBLEM_BASE, coding
        as_problem = {"type": PROBLEM_BASE + coding["code"], "title": issue["code"]}
        body = {**as_problem, "status": status, "detail": issue["diagnostics"]}
        if slug is not None:
            assert body["type"] == PROBLEM_BASE + slug, body
        return body
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
    """The refusal on the ledger, and no credential anywhere on it (nor a JWT credential's
    signature). An authenticated caller's refusal: exactly one new ``auth.refused`` event
    naming it. An anonymous one: nothing written at once; flushing the refusal counts
    writes one ``auth.refused_summary`` that counts exactly this refusal."""
    # The gateway's flusher may write a window's summary whenever the test clock passes
    # a window's end: summaries are told apart, never assumed absent.
    new = await entries(client, before)
    if actor == "anonymous":
        assert "auth.refused" not in [e["type"] for e, _ in new], new
        await flush_refusals(client)
        new = await entries(client, before)
        assert {e["type"] for e, _ in new} == {"auth.refused_summary"}, new
        summaries = [e["data"] for e, _ in new]
        assert all(s["source"].startswith("src:") for s in summaries), summaries
        assert sum(s["total"] for s in summaries) == 1, summaries
        [data] = [row for s in summaries for row in s["counts"]]
        assert data["count"] == 1
        assert "error" in data or error is None
    else:
        kinds = [e["type"] for e, _ in new if e["type"] != "auth.refused_summary"]
        assert kinds == ["auth.refused"], kinds
        event = next(e for e, _ in new if e["type"] == "auth.refused")
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


async def flush_refusals(client: Client) -> None:
    """Write the anonymous refusals counted so far (as a clean shutdown does)."""
    await client.server.app[REFUSALS].flush_all()


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


async def call_with_nonce(
    client: Client, method: str, path: str, holder: Holder, token: str, nonce: str, **kw: Any
) -> ClientResponse:
    url = str(client.make_url(path))
    headers = {
        "Authorization": f"DPoP {token}",
        "DPoP": holder.dpop(method, url, token, nonce=nonce),
    }
    return await client.request(method, path, headers=headers, **kw)


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
