"""A minimal telegate client for tests: holder keys, client assertions, DPoP proofs."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from pathlib import Path
from typing import Any

import jwt
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.appkeys import CONFIG
from gateway.auth.enroll import hash_code, new_code
from gateway.auth.store import IdentityStore, Invite
from gateway.config import Config
from gateway.db import Database

Client = TestClient[Any, Any]


def b64u(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class Holder:
    """A key pair held by a patient, provider, device or auditor."""

    def __init__(self, alg: str = "EdDSA") -> None:
        self.alg = alg
        if alg == "EdDSA":
            self.key: Any = Ed25519PrivateKey.generate()
            raw = self.key.public_key().public_bytes_raw()
            self.jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64u(raw)}
        else:
            self.key = ec.generate_private_key(ec.SECP256R1())
            n = self.key.public_key().public_numbers()
            self.jwk = {
                "kty": "EC",
                "crv": "P-256",
                "x": b64u(n.x.to_bytes(32, "big")),
                "y": b64u(n.y.to_bytes(32, "big")),
            }
        self.sub = ""
        self.clock = time.time

    def dpop(self, method: str, url: str, token: str | None = None, **over: Any) -> str:
        claims: dict[str, Any] = {
            "jti": secrets.token_urlsafe(12),
            "htm": method,
            "htu": url,
            "iat": int(self.clock()),
        }
        if token is not None:
            claims["ath"] = b64u(hashlib.sha256(token.encode()).digest())
        claims.update(over)
        headers = {"typ": "dpop+jwt", "jwk": self.jwk}
        return jwt.encode(claims, self.key, algorithm=self.alg, headers=headers)

    def assertion(self, endpoint: str, **over: Any) -> str:
        now = int(self.clock())
        claims: dict[str, Any] = {
            "iss": self.sub,
            "sub": self.sub,
            "aud": endpoint,
            "exp": now + 120,
            "iat": now,
            "jti": secrets.token_urlsafe(12),
        }
        claims.update(over)
        return jwt.encode(claims, self.key, algorithm=self.alg)


def local_invite(where: Path | Config, role: str = "admin", ttl: int = 3600, **attrs: Any) -> str:
    """An invite written straight to the identity store, as ``telegate invite`` does: of the
    gateway configured by ``where``, or of the embedded one in the data dir ``where``."""
    db = Database.from_config(where) if isinstance(where, Config) else Database(where)
    try:
        store = IdentityStore(db.open("identity"))
        code = new_code()
        now = int(time.time())
        store.create_invite(hash_code(code), Invite(role, "cli:local", now, now + ttl, attrs))
        store.close()
    finally:
        db.close()
    return code


async def enroll(client: Client, invite: str, holder: Holder, **extra: Any) -> dict[str, Any]:
    resp = await client.post("/v1/enroll", json={"invite": invite, "jwk": holder.jwk, **extra})
    body: dict[str, Any] = await resp.json()
    assert resp.status == 201, body
    holder.sub = body["sub"]
    return body


async def token_response(
    client: Client, holder: Holder, scope: str | None = None, **over: Any
) -> ClientResponse:
    url = str(client.make_url("/oauth/token"))
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": over.pop("assertion", None) or holder.assertion(url),
    }
    if scope:
        form["scope"] = scope
    dpop = over.pop("dpop", None) or holder.dpop("POST", url)
    return await client.post("/oauth/token", data=form, headers={"DPoP": dpop})


async def get_token(client: Client, holder: Holder, scope: str | None = None) -> str:
    resp = await token_response(client, holder, scope)
    body = await resp.json()
    assert resp.status == 200, body
    return str(body["access_token"])


async def call(
    client: Client, method: str, path: str, holder: Holder, token: str, **kw: Any
) -> ClientResponse:
    url = str(client.make_url(path))
    headers = {"Authorization": f"DPoP {token}", "DPoP": holder.dpop(method, url, token)}
    headers.update(kw.pop("headers", {}))
    return await client.request(method, path, headers=headers, **kw)


async def admin(client: Client, data_dir: Path) -> tuple[Holder, str]:
    h = Holder()
    # The client's gateway may keep its identities in PostgreSQL: ask its config where.
    app = getattr(client, "app", None)  # bench clients are plain sessions
    where = app[CONFIG] if app is not None and CONFIG in app else data_dir
    await enroll(client, local_invite(where), h)
    return h, await get_token(client, h)


async def invite_and_enroll(
    client: Client,
    by: Holder,
    by_token: str,
    role: str,
    holder: Holder | None = None,
    enroll_extra: dict[str, Any] | None = None,
    **invite: Any,
) -> Holder:
    h = holder or Holder()
    resp = await call(client, "POST", "/v1/invites", by, by_token, json={"role": role, **invite})
    body = await resp.json()
    assert resp.status == 201, body
    await enroll(client, body["invite"], h, **(enroll_extra or {}))
    return h
