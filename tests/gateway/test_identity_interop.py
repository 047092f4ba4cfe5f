"""An independent client, built on jwcrypto alone, against the real gateway.

Nothing here comes from the gateway's JOSE code or the test client in idclient.py (PyJWT):
keys, thumbprints, client assertions (RFC 7523 private_key_jwt), DPoP proofs (RFC 9449),
the access token's signature (against the published JWKS) and the status list JWT are all
made or checked by jwcrypto. Only the bootstrap admin invite is written straight into the
data directory, as ``telegate`` would do locally.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
import zlib
from typing import Any

import pytest
from aiohttp import ClientResponse
from cryptography.hazmat.primitives import hashes
from jwcrypto import jwk, jws, jwt

from gateway.config import Config
from tests.gateway.idclient import local_invite

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_decode(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class JoseClient:
    """A holder whose every JOSE operation is jwcrypto's."""

    def __init__(self, client: Any, key: jwk.JWK, alg: str) -> None:
        self.client = client
        self.key = key
        self.alg = alg
        self.sub = ""

    @property
    def public_jwk(self) -> dict[str, Any]:
        out: dict[str, Any] = self.key.export_public(as_dict=True)
        assert "d" not in out
        return out

    def url(self, path: str) -> str:
        return str(self.client.make_url(path))

    def sign(self, header: dict[str, Any], claims: dict[str, Any]) -> str:
        token = jwt.JWT(header={"alg": self.alg, **header}, claims=claims)
        token.make_signed_token(self.key)
        out: str = token.serialize()
        return out

    def assertion(self) -> str:
        now = int(time.time())
        return self.sign(
            {"typ": "JWT"},
            {
                "iss": self.sub,
                "sub": self.sub,
                "aud": self.url("/oauth/token"),
                "iat": now,
                "exp": now + 120,
                "jti": str(uuid.uuid4()),
            },
        )

    def dpop(self, method: str, path: str, access_token: str | None = None) -> str:
        claims: dict[str, Any] = {
            "jti": str(uuid.uuid4()),
            "htm": method,
            "htu": self.url(path),
            "iat": int(time.time()),
        }
        if access_token is not None:
            claims["ath"] = b64u(hashlib.sha256(access_token.encode("ascii")).digest())
        return self.sign({"typ": "dpop+jwt", "jwk": self.public_jwk}, claims)

    async def enroll(self, invite: str) -> dict[str, Any]:
        resp = await self.client.post("/v1/enroll", json={"invite": invite, "jwk": self.public_jwk})
        body: dict[str, Any] = await resp.json()
        assert resp.status == 201, body
        self.sub = body["sub"]
        return body

    async def token(self, scope: str | None = None) -> str:
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": self.assertion(),
        }
        if scope:
            form["scope"] = scope
        resp = await self.client.post(
            "/oauth/token", data=form, headers={"DPoP": self.dpop("POST", "/oauth/token")}
        )
        body = await resp.json()
        assert resp.status == 200, body
        assert body["token_type"] == "DPoP"
        assert resp.headers["Cache-Control"] == "no-store"
        return str(body["access_token"])

    async def request(self, method: str, path: str, access_token: str, **kw: Any) -> ClientResponse:
        headers = {
            "Authorization": f"DPoP {access_token}",
            "DPoP": self.dpop(method, path, access_token),
        }
        resp: ClientResponse = await self.client.request(method, path, headers=headers, **kw)
        return resp


async def _jwks(client: Any) -> jwk.JWKSet:
    resp = await client.get("/.well-known/jwks.json")
    assert resp.status == 200
    assert resp.content_type == "application/jwk-set+json"
    keyset: jwk.JWKSet = jwk.JWKSet.from_json(await resp.text())
    return keyset


def _verify(
    token: str, keyset: jwk.JWKSet, algs: list[str], check: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Signature (key chosen by kid from the set) and claims, by jwcrypto."""
    t = jwt.JWT(jwt=token, key=keyset, algs=algs, check_claims=check, expected_type="JWS")
    return json.loads(t.header), json.loads(t.claims)


def _new_key(kind: str) -> tuple[jwk.JWK, str]:
    if kind == "OKP":
        return jwk.JWK.generate(kty="OKP", crv="Ed25519"), "EdDSA"
    return jwk.JWK.generate(kty="EC", crv="P-256"), "ES256"


async def test_jwcrypto_client_enrolls_gets_tokens_and_calls(client: Any, config: Config) -> None:
    conf = await (await client.get("/.well-known/smart-configuration")).json()
    origin = str(client.make_url("/")).rstrip("/")
    assert conf["issuer"] == origin
    assert {"EdDSA", "ES256"} <= set(conf["dpop_signing_alg_values_supported"])
    assert {"EdDSA", "ES256"} <= set(conf["token_endpoint_auth_signing_alg_values_supported"])

    # An Ed25519 admin (bootstrap invite) and a P-256 patient it invites.
    adm = JoseClient(client, *_new_key("OKP"))
    enrolled = await adm.enroll(local_invite(config))
    assert enrolled["role"] == "admin"
    adm_token = await adm.token()
    r = await adm.request("POST", "/v1/invites", adm_token, json={"role": "patient"})
    invite = await r.json()
    assert r.status == 201, invite
    pat = JoseClient(client, *_new_key("EC"))
    enrolled = await pat.enroll(invite["invite"])
    assert enrolled["role"] == "patient"
    pat_token = await pat.token("call vitals.read")

    keyset = await _jwks(client)
    for holder, token, role in ((adm, adm_token, "admin"), (pat, pat_token, "patient")):
        header, claims = _verify(
            token,
            keyset,
            ["EdDSA", "ES256"],
            {"iss": origin, "aud": origin, "sub": holder.sub, "exp": None, "nbf": None},
        )
        assert header["typ"] == "at+jwt"
        assert keyset.get_key(header["kid"]) is not None
        assert claims["role"] == role
        # RFC 7638 thumbprint as jwcrypto computes it == the token's DPoP binding.
        jkt = holder.key.thumbprint(hashalg=hashes.SHA256())
        assert claims["cnf"]["jkt"] == jkt
        me = await holder.request("GET", "/v1/me", token)
        body = await me.json()
        assert me.status == 200, body
        assert body["sub"] == holder.sub
        assert body["role"] == role
        assert body["jkt"] == jkt
    assert json.loads(jwt.JWT(jwt=pat_token, key=keyset).claims)["scope"] == "call vitals.read"

    # Revoke the patient's token; the jwcrypto-verified status list shows it.
    pat_claims = json.loads(jwt.JWT(jwt=pat_token, key=keyset).claims)
    live = await pat.token()
    r = await adm.request(
        "POST",
        "/v1/revocations",
        adm_token,
        json={"jti": pat_claims["jti"], "reason": "key_compromise"},
    )
    assert r.status == 200, await r.text()
    assert (await pat.request("GET", "/v1/me", pat_token)).status == 401
    assert (await pat.request("GET", "/v1/me", live)).status == 200

    status = pat_claims["status"]["status_list"]
    resp = await client.get(status["uri"].removeprefix(origin))
    assert resp.status == 200
    assert resp.content_type == "application/statuslist+jwt"
    header, sl = _verify(
        await resp.text(), keyset, ["EdDSA", "ES256"], {"sub": status["uri"], "exp": None}
    )
    assert header["typ"] == "statuslist+jwt"
    assert sl["status_list"]["bits"] == 1
    bits = zlib.decompress(b64u_decode(sl["status_list"]["lst"]))

    def bit(i: int) -> int:
        return (bits[i // 8] >> (i % 8)) & 1 if i // 8 < len(bits) else 0

    live_idx = json.loads(jwt.JWT(jwt=live, key=keyset).claims)["status"]["status_list"]["idx"]
    assert bit(status["idx"]) == 1
    assert bit(live_idx) == 0


@pytest.mark.parametrize("kind", ["OKP", "EC"])
async def test_jwcrypto_proofs_are_single_use_and_key_bound(
    client: Any, config: Config, kind: str
) -> None:
    holder = JoseClient(client, *_new_key(kind))
    await holder.enroll(local_invite(config))
    token = await holder.token()
    proof = holder.dpop("GET", "/v1/me", token)
    headers = {"Authorization": f"DPoP {token}", "DPoP": proof}
    assert (await client.get("/v1/me", headers=headers)).status == 200
    replay = await client.get("/v1/me", headers=headers)
    assert replay.status == 401
    assert replay.content_type == "application/problem+json"
    # A proof from another jwcrypto key, same token: refused.
    thief = JoseClient(client, *_new_key(kind))
    stolen = {"Authorization": f"DPoP {token}", "DPoP": thief.dpop("GET", "/v1/me", token)}
    resp = await client.get("/v1/me", headers=stolen)
    assert resp.status == 401
    assert (await resp.json(content_type=None))["type"].endswith("/invalid-dpop-proof")


async def test_jws_compact_parts_are_what_the_gateway_signs(client: Any, config: Config) -> None:
    """The access token is a plain compact JWS: jwcrypto's JWS layer verifies it directly
    with the one JWKS key its kid names, and refuses it under every other key."""
    holder = JoseClient(client, *_new_key("OKP"))
    await holder.enroll(local_invite(config))
    token = await holder.token()
    keyset = await _jwks(client)
    kid = json.loads(b64u_decode(token.split(".")[0]))["kid"]
    obj = jws.JWS()
    obj.deserialize(token)
    obj.verify(keyset.get_key(kid))
    assert json.loads(obj.payload)["sub"] == holder.sub
    stranger = jwk.JWK.generate(kty="OKP", crv="Ed25519")
    with pytest.raises(jws.InvalidJWSSignature):
        obj.verify(stranger)
