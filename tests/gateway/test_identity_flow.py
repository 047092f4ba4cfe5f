"""Enroll -> token -> call, for every role, with real keys, proofs and ledger receipts."""

from __future__ import annotations

import base64
from typing import Any

import jwt
import pytest

from gateway.appkeys import AUTHORITY
from gateway.config import Config
from ledger.events import commit
from ledger.log import Receipt
from ledger.note import Verifier
from tests.gateway.idclient import Holder, admin, call, enroll, get_token, invite_and_enroll

NPI = "1234567893"


async def _vkey(client: Any) -> Verifier:
    return Verifier.from_vkey(await (await client.get("/ledger/vkey")).text())


@pytest.mark.parametrize("alg", ["EdDSA", "ES256"])
async def test_every_role_enrolls_gets_a_token_and_calls(
    client: Any, config: Config, alg: str
) -> None:
    adm, adm_token = await admin(client, config.data_dir)
    prov = await invite_and_enroll(client, adm, adm_token, "provider", Holder(alg), npi=NPI)
    prov_token = await get_token(client, prov)
    pat = await invite_and_enroll(
        client, prov, prov_token, "patient", Holder(alg), display_name="Ada Lovelace"
    )
    # The patient registers their own monitor (a provider would need their consent).
    dev = await invite_and_enroll(
        client,
        pat,
        await get_token(client, pat),
        "device",
        Holder(alg),
        enroll_extra={"serial": "SN-1", "model": "Oxi 2"},
        patient=pat.sub,
    )
    aud = await invite_and_enroll(client, adm, adm_token, "auditor", Holder(alg))
    vkey = await _vkey(client)
    jwks = await (await client.get("/.well-known/jwks.json")).json()
    for holder, role, prefix in [
        (prov, "provider", "prov:"),
        (pat, "patient", "pat:"),
        (dev, "device", "dev:"),
        (aud, "auditor", "aud:"),
        (adm, "admin", "adm:"),
    ]:
        token = await get_token(client, holder)
        claims = jwt.decode(token, options={"verify_signature": False})
        assert claims["sub"].startswith(prefix) and claims["role"] == role
        assert claims["cnf"]["jkt"]
        assert claims["status"]["status_list"]["uri"].endswith("/v1/status/1")
        # The token verifies with the published JWKS.
        header = jwt.get_unverified_header(token)
        jwk = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
        pub = jwt.PyJWK(jwk).key
        jwt.decode(token, pub, algorithms=[jwk["alg"]], audience=claims["aud"])
        me = await call(client, "GET", "/v1/me", holder, token)
        assert (await me.json())["sub"] == holder.sub
        # Its issuance is on the ledger, at the index the token names.
        r = await call(client, "GET", f"/v1/attestations/{claims['jti']}/receipt", holder, token)
        body = await r.json()
        receipt = Receipt.from_json(body["receipt"])
        assert receipt.index == claims["ledger"]
        receipt.verify(vkey)
        entry = await (await client.get(f"/ledger/entries/{receipt.index}")).json()
        assert entry["event"]["type"] == "attestation.issued"
        assert entry["event"]["data"]["jti"] == claims["jti"]
        assert entry["event"]["subject"] == holder.sub


async def test_enrollment_events_carry_no_phi(client: Any, config: Config) -> None:
    adm, adm_token = await admin(client, config.data_dir)
    prov = await invite_and_enroll(
        client, adm, adm_token, "provider", npi=NPI, display_name="Dr Grace Hopper"
    )
    size = (await (await client.get("/readyz")).json())["ledger_size"]
    raw = b""
    for i in range(size):
        e = await (await client.get(f"/ledger/entries/{i}")).json()
        raw += base64.b64decode(e["data"])
    assert b"Grace" not in raw and NPI.encode() not in raw
    assert prov.sub.encode() in raw and b"npi_commitment" in raw


async def test_smart_configuration(client: Any) -> None:
    conf = await (await client.get("/.well-known/smart-configuration")).json()
    assert conf["token_endpoint"].endswith("/oauth/token")
    assert conf["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert conf["grant_types_supported"] == ["client_credentials"]
    assert set(conf["dpop_signing_alg_values_supported"]) == {"EdDSA", "ES256"}


async def test_rotation_keeps_old_tokens_valid_and_signs_with_the_new_key(
    client: Any, config: Config
) -> None:
    adm, old_token = await admin(client, config.data_dir)
    old_kid = jwt.get_unverified_header(old_token)["kid"]
    from gateway.cli import main

    assert main(["keys", "rotate", "--data-dir", str(config.data_dir)]) == 0
    new_token = await get_token(client, adm)
    new_kid = jwt.get_unverified_header(new_token)["kid"]
    assert new_kid != old_kid
    kids = {k["kid"] for k in (await (await client.get("/.well-known/jwks.json")).json())["keys"]}
    assert {old_kid, new_kid} <= kids
    for token in (old_token, new_token):
        assert (await call(client, "GET", "/v1/me", adm, token)).status == 200


async def test_dpop_nonce_mode(aiohttp_client: Any, config: Config) -> None:
    import dataclasses

    from gateway.app import create_app
    from tests.gateway.idclient import enroll, local_invite, token_response

    c = await aiohttp_client(create_app(dataclasses.replace(config, dpop_require_nonce=True)))
    h = Holder()
    await enroll(c, local_invite(config), h)
    first = await token_response(c, h)
    body = await first.json()
    assert first.status == 400 and body["error"] == "use_dpop_nonce"
    nonce = first.headers["DPoP-Nonce"]
    url = str(c.make_url("/oauth/token"))
    ok = await token_response(c, h, dpop=h.dpop("POST", url, nonce=nonce))
    token = (await ok.json())["access_token"]
    me_url = str(c.make_url("/v1/me"))
    r = await c.get(
        "/v1/me", headers={"Authorization": f"DPoP {token}", "DPoP": h.dpop("GET", me_url, token)}
    )
    assert r.status == 401 and r.headers["DPoP-Nonce"]
    assert 'error="use_dpop_nonce"' in r.headers["WWW-Authenticate"]
    r = await c.get(
        "/v1/me",
        headers={
            "Authorization": f"DPoP {token}",
            "DPoP": h.dpop("GET", me_url, token, nonce=nonce),
        },
    )
    assert r.status == 200


async def test_es256_gateway_keys(aiohttp_client: Any, config: Config) -> None:
    import dataclasses

    from gateway.app import create_app

    c = await aiohttp_client(create_app(dataclasses.replace(config, signing_alg="ES256")))
    adm, token = await admin(c, config.data_dir)
    assert jwt.get_unverified_header(token)["alg"] == "ES256"
    jwks = await (await c.get("/.well-known/jwks.json")).json()
    assert [k["crv"] for k in jwks["keys"]] == ["P-256"]
    assert (await call(c, "GET", "/v1/me", adm, token)).status == 200


async def test_issuance_rows_lost_in_a_crash_are_rebuilt_from_the_ledger(
    aiohttp_client: Any, config: Config
) -> None:
    """identity.db does not fsync per token; the ledger does. Drop the rows a power loss
    could take, restart, and the spent assertion, the token row and the status index
    counter come back from the attestation.issued events."""
    from gateway.app import create_app
    from gateway.auth.tables import client_jtis, tokens
    from gateway.db import Database, writing
    from tests.gateway.idclient import enroll, local_invite, token_response

    app = create_app(config)
    c = await aiohttp_client(app)
    h = Holder()
    await enroll(c, local_invite(config), h)
    url = str(c.make_url("/oauth/token"))
    assertion = h.assertion(url)
    first = await token_response(c, h, assertion=assertion)
    token = (await first.json())["access_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    port = c.port
    await c.close()
    db = Database.from_config(config)  # identity.db, or the PostgreSQL database
    try:
        with writing(db.open("identity")) as conn:
            conn.execute(tokens.delete())
            conn.execute(client_jtis.delete())
    finally:
        db.close()

    # Same origin as before (the assertion names it as its audience).
    c = await aiohttp_client(create_app(config), server_kwargs={"port": port})
    replay = await token_response(c, h, assertion=assertion)
    assert replay.status == 401 and "already used" in (await replay.json())["detail"]
    r = await call(c, "GET", f"/v1/attestations/{claims['jti']}/receipt", h, token)
    assert r.status == 200
    assert (await r.json())["receipt"]["index"] == claims["ledger"]
    fresh = jwt.decode(await get_token(c, h), options={"verify_signature": False})
    assert fresh["status"]["status_list"]["idx"] > claims["status"]["status_list"]["idx"]


async def test_a_self_declared_name_is_kept_and_committed_like_an_invited_one(
    client: Any, config: Config
) -> None:
    """An invite without a name lets the person say theirs: trimmed and normalized, kept
    in the identity store with its salt, only its salted commitment on the ledger."""
    adm, adm_token = await admin(client, config.data_dir)
    declared = "  Zoe\u0308   O\u2019Brien "  # a decomposed ë and a run of spaces
    name = "Zo\u00eb O\u2019Brien"
    pat = Holder()
    resp = await call(client, "POST", "/v1/invites", adm, adm_token, json={"role": "patient"})
    body = await enroll(client, (await resp.json())["invite"], pat, display_name=declared)
    assert body["display_name"] == name
    store = client.server.app[AUTHORITY].store
    subject = store.subject(pat.sub)
    assert subject.attrs["display_name"] == name
    size = (await (await client.get("/readyz")).json())["ledger_size"]
    raw, enrolled = b"", None
    for i in range(size):
        e = await (await client.get(f"/ledger/entries/{i}")).json()
        raw += base64.b64decode(e["data"])
        if e["event"]["type"] == "identity.enrolled" and e["event"]["actor"] == pat.sub:
            enrolled = e["event"]
    assert enrolled is not None
    salt = bytes.fromhex(subject.attrs["display_name_salt"])
    assert enrolled["data"]["display_name_commitment"] == commit(salt, name)
    for part in (name, "O\u2019Brien", declared.strip()):
        assert part.encode() not in raw
    assert store.display_names([pat.sub, adm.sub, "pat:" + "0" * 32]) == {pat.sub: name}
    # A page's worth of ids and more, in one query: past SQLite's bound-variable limit.
    many = [f"pat:{i:032x}" for i in range(40_000)] + [pat.sub]
    assert store.display_names(many) == {pat.sub: name}
