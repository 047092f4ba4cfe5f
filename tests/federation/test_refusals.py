"""What A refuses from B's side, each refusal a ``federation.refused`` event on A's ledger
with its reason (and never a token of A)."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import replace

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.auth.keys import KeyRing
from ledger.events import Event
from tests.gateway.idclient import Holder, call, invite_and_enroll

from .conftest import World
from .orgs import claims_of, exchange, exchange_response, peer_token, refused, witnessed_receipt


async def test_an_unknown_issuer(world: World) -> None:
    w = await world.up()
    now = int(time.time())
    forged = jwt.encode(
        {"iss": "https://gw.elsewhere.example", "sub": "prov:x", "aud": w.a.url, "exp": now + 60},
        Ed25519PrivateKey.generate(),
        algorithm="EdDSA",
        headers={"typ": "at+jwt", "kid": "k1"},
    )
    resp = await exchange_response(w.a.c, w.provider, forged, "{}")
    # Anyone can send this: counted in a summary, the issuer (even hashed) not recorded.
    await refused(w.a, resp, "unknown_issuer")
    assert not w.a.events("federation.refused")
    assert not w.a.events("federation.accepted")


async def test_a_token_signed_by_a_key_not_pinned(world: World) -> None:
    w = await world.up()
    # B rotates its signing key after A pinned B's JWKS in its trust list.
    ring = KeyRing.open(w.b.data / "keys" / "signing", int(time.time()))
    new = ring.rotate(int(time.time()))
    token, receipt = await w.b_token()
    assert jwt.get_unverified_header(token)["kid"] == new.kid
    await refused(w.a, await exchange_response(w.a.c, w.provider, token, receipt), "unknown_key")


async def test_a_forged_token_under_a_pinned_kid(world: World) -> None:
    w = await world.up()
    token, receipt = await w.b_token()
    header, claims = jwt.get_unverified_header(token), claims_of(token)
    forged = jwt.encode(claims, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers=header)
    resp = await exchange_response(w.a.c, w.provider, forged, receipt)
    await refused(w.a, resp, "bad_token")
    # HMAC under the public key (RFC 8725 2.1's algorithm confusion) is no better.
    header["alg"] = "HS256"
    secret = w.b.jwks()["keys"][0]["x"]  # the public key, as an HMAC secret
    forged = jwt.encode(claims, secret, algorithm="HS256", headers=header)
    await refused(w.a, await exchange_response(w.a.c, w.provider, forged, receipt), "bad_token")


async def test_a_receipt_for_another_token(world: World) -> None:
    w = await world.up()
    token, mine = await w.b_token()
    _, other = await w.b_token()
    resp = await exchange_response(w.a.c, w.provider, token, other)
    data = await refused(w.a, resp, "receipt_mismatch")
    assert data["foreign_jti"] == claims_of(token)["jti"] and data["peer"] == "b"
    # This token's receipt with another token's leaf: the leaf records another issuance.
    doc = json.loads(mine)
    doc["entry"] = json.loads(other)["entry"]
    resp = await exchange_response(w.a.c, w.provider, token, json.dumps(doc))
    await refused(w.a, resp, "receipt_mismatch")
    # A made-up leaf that names this token in every checked field: not the leaf B logged.
    doc = json.loads(mine)
    ev = Event.decode(base64.b64decode(doc["entry"]))
    fake = replace(ev, data={**ev.data, "status_idx": ev.data["status_idx"] + 1000})
    doc["entry"] = base64.b64encode(fake.encode()).decode()
    resp = await exchange_response(w.a.c, w.provider, token, json.dumps(doc))
    await refused(w.a, resp, "bad_receipt")


async def test_a_checkpoint_cosigned_by_too_few_required_witnesses(world: World) -> None:
    w = await world.up()
    token, receipt = await w.b_token()
    doc = json.loads(receipt)
    note = doc["receipt"]["checkpoint"]
    # Drop W's cosignature: B's signature and A's own witness's remain (1 of the 2 needed).
    doc["receipt"]["checkpoint"] = "".join(
        line for line in note.splitlines(keepends=True) if "w.example/witness" not in line
    )
    resp = await exchange_response(w.a.c, w.provider, token, json.dumps(doc))
    data = await refused(w.a, resp, "not_witnessed")
    assert (
        data["cosigned_by"] == ["a.example/witness"]
        and data["leaf_index"] == doc["receipt"]["index"]
    )
    # The whole receipt, as B served it, is accepted.
    await exchange(w.a.c, w.provider, token, receipt)


async def test_roles_other_than_provider_are_not_federated(world: World) -> None:
    w = await world.up()
    patient = await invite_and_enroll(w.b.c, w.b_admin, w.b_admin_t, "patient")
    token = await peer_token(w.b.c, patient, w.a.url)
    receipt = await witnessed_receipt(w.b.c, patient, token, w.required, 2)
    await refused(w.a, await exchange_response(w.a.c, patient, token, receipt), "role")


async def test_a_token_minted_for_b_alone(world: World) -> None:
    w = await world.up()
    token, receipt = await w.b_token(resource=None)
    assert claims_of(token)["aud"] == w.b.url
    await refused(w.a, await exchange_response(w.a.c, w.provider, token, receipt), "audience")
    # And B mints for no audience its trust list does not name (RFC 8707 invalid_target).
    url = str(w.b.c.make_url("/oauth/token"))
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": w.provider.assertion(url),
        "resource": "https://gw.elsewhere.example",
    }
    resp = await w.b.c.post(
        "/oauth/token", data=form, headers={"DPoP": w.provider.dpop("POST", url)}
    )
    assert resp.status == 400 and (await resp.json())["error"] == "invalid_target"


async def test_a_replayed_dpop_proof(world: World) -> None:
    w = await world.up()
    token, receipt = await w.b_token()
    proof = w.provider.dpop("POST", str(w.a.c.make_url("/oauth/token")))
    ok = await exchange_response(w.a.c, w.provider, token, receipt, dpop=proof)
    assert ok.status == 200
    again = await exchange_response(w.a.c, w.provider, token, receipt, dpop=proof)
    await refused(w.a, again, "dpop", "invalid_dpop_proof")
    assert len(w.a.events("federation.accepted")) == 1


async def test_a_dpop_proof_by_another_key(world: World) -> None:
    w = await world.up()
    token, receipt = await w.b_token()
    thief = Holder()
    resp = await exchange_response(w.a.c, thief, token, receipt)
    # The thief never showed the token's key: a refusal of anyone, counted.
    await refused(w.a, resp, "dpop", "invalid_dpop_proof", counted=True)


async def test_an_expired_token(world: World) -> None:
    w = await world.up()
    token, receipt = await w.b_token()
    later = claims_of(token)["exp"] + 60 - time.time()
    w.a.clock.offset = later  # A's clock, and the holder's proofs, move past B's exp
    w.provider.clock = lambda: time.time() + later
    await refused(w.a, await exchange_response(w.a.c, w.provider, token, receipt), "expired")


async def test_a_provider_revoked_at_a(world: World) -> None:
    w = await world.up()
    body = await w.accepted()
    r = await call(
        w.a.c,
        "POST",
        "/v1/revocations",
        w.a_admin,
        w.a_admin_t,
        json={"sub": body["sub"], "reason": "left_the_trial"},
    )
    assert r.status == 200, await r.text()
    # The token A issued stops working, and so does the next exchange.
    assert (await call(w.a.c, "GET", "/v1/me", w.provider, body["access_token"])).status == 401
    token, receipt = await w.b_token()
    resp = await exchange_response(w.a.c, w.provider, token, receipt)
    await refused(w.a, resp, "revoked_here")
