"""B revokes its provider: A follows, through B's Token Status List (docs/federation.md,
"Revocation at the peer").

A new exchange of a revoked token is refused and recorded. A token A issued earlier stops
working within the list's ttl of the revocation: A re-checks B's list for it on the first
request after that, revokes its own token and records it. Time moves by the clocks the
gateways and holders are given, never by sleeping. A list signed by a key A does not pin,
and a list outside B's origin, are refused; B down when a re-check is due refuses the
request (fail closed) without revoking anything.
"""

from __future__ import annotations

import time
from typing import Any

import jwt

from gateway.auth.keys import KeyRing
from gateway.auth.status import StatusList
from gateway.federation import local_subject_id
from gateway.federation.revocation import RETRY
from tests.gateway.idclient import Holder, call, invite_and_enroll

from .conftest import NPI, World
from .orgs import claims_of, exchange, exchange_response, peer_toml, refused


def later(w: World, seconds: float) -> None:
    """Time passes for both organizations and for everyone holding a key."""
    for org in (w.a, w.b):
        org.clock.offset += seconds
    offset = w.a.clock.offset
    for h in (w.provider, w.b_admin, w.a_admin, w.patient, w.auditor):
        h.clock = lambda: time.time() + offset


async def ttl_of_b(w: World) -> int:
    """The ttl B's status list states: the documented bound, with both clocks right."""
    resp = await w.b.c.get("/v1/status/1")
    assert resp.status == 200 and resp.content_type == "application/statuslist+jwt"
    return int(claims_of(await resp.text())["ttl"])


async def revoke_at_b(w: World, holder: Holder) -> None:
    """B's admin revokes ``holder`` (its identity, and with it every token it holds)."""
    body = {"sub": holder.sub, "reason": "left_the_clinic"}
    resp = await call(w.b.c, "POST", "/v1/revocations", w.b_admin, w.b_admin_t, json=body)
    assert resp.status == 200, await resp.text()


async def me_at_a(w: World, token: str, holder: Holder | None = None) -> Any:
    return await call(w.a.c, "GET", "/v1/me", holder or w.provider, token)


def revoked_at_a(w: World) -> list[dict[str, Any]]:
    return [e for e in w.a.events("attestation.revoked") if e["actor"] == "gw:self"]


async def test_a_token_revoked_at_b_is_not_exchanged_at_a(world: World) -> None:
    w = await world.up()
    token, receipt = await w.b_token()  # the provider holds these before B revokes it
    await revoke_at_b(w, w.provider)
    resp = await exchange_response(w.a.c, w.provider, token, receipt)
    data = await refused(w.a, resp, "revoked_at_peer")
    entry = claims_of(token)["status"]["status_list"]
    assert data["peer"] == "b" and data["foreign_jti"] == claims_of(token)["jti"]
    assert data["status_list"] == {"uri": entry["uri"], "idx": entry["idx"]}
    assert not w.a.events("federation.accepted")


async def test_an_accepted_provider_loses_access_within_the_ttl(world: World) -> None:
    w = await world.up()
    body = await w.accepted()
    a_token, local = body["access_token"], body["sub"]
    assert (await me_at_a(w, a_token)).status == 200
    ttl = await ttl_of_b(w)

    await revoke_at_b(w, w.provider)
    later(w, ttl)  # the bound: A's copy of B's list is due now
    resp = await me_at_a(w, a_token)
    assert resp.status == 401, await resp.text()
    (ev,) = revoked_at_a(w)
    a_claims = claims_of(a_token)
    idx = a_claims["status"]["status_list"]["idx"]
    assert ev["subject"] == local == local_subject_id(w.b.url, w.provider.sub)
    assert ev["data"]["reason"] == "revoked_at_peer" and ev["data"]["peer"] == "b"
    assert (ev["data"]["jti"], ev["data"]["status_idx"]) == (a_claims["jti"], [idx])
    # A's own status list says so too, and the token stays refused without more events.
    a_list = claims_of(await (await w.a.c.get("/v1/status/1")).text())
    assert StatusList.decode(a_list["status_list"]).get(idx) == 1
    assert (await me_at_a(w, a_token)).status == 401
    assert len(revoked_at_a(w)) == 1


async def test_a_fresh_list_revokes_every_token_it_shows_revoked(world: World) -> None:
    w = await world.up()
    first = await w.accepted()
    other = await invite_and_enroll(w.b.c, w.b_admin, w.b_admin_t, "provider", npi=NPI)
    token, receipt = await w.b_token(other)
    ttl = await ttl_of_b(w)

    await revoke_at_b(w, w.provider)
    later(w, ttl)
    other.clock = w.provider.clock
    # Another provider's exchange makes A read B's list again: the first provider's token
    # of A is revoked then, before that provider sends anything.
    await exchange(w.a.c, other, token, receipt)
    (ev,) = revoked_at_a(w)
    assert ev["data"]["jti"] == claims_of(first["access_token"])["jti"]
    assert (await me_at_a(w, first["access_token"])).status == 401
    assert len(revoked_at_a(w)) == 1


async def test_a_follows_its_tokens_across_a_restart(world: World) -> None:
    w = await world.up()
    body = await w.accepted()
    ttl = await ttl_of_b(w)
    await w.a.c.close()
    await w.start(w.a, w.b, peer_toml(w.b, w.required, 2))
    assert (await me_at_a(w, body["access_token"])).status == 200

    await revoke_at_b(w, w.provider)
    later(w, ttl)
    assert (await me_at_a(w, body["access_token"])).status == 401
    assert [e["data"]["reason"] for e in revoked_at_a(w)] == ["revoked_at_peer"]


async def test_a_status_list_signed_by_a_key_a_does_not_pin(world: World) -> None:
    w = await world.up()
    token, receipt = await w.b_token()  # signed by the key A pins
    now = int(time.time())
    new = KeyRing.open(w.b.data / "keys" / "signing", now).rotate(now)
    await w.b_token()  # B issues with its new key from now on, and signs its list with it
    listed = await (await w.b.c.get("/v1/status/1")).text()
    assert jwt.get_unverified_header(listed)["kid"] == new.kid
    resp = await exchange_response(w.a.c, w.provider, token, receipt)
    data = await refused(w.a, resp, "bad_status_list")
    assert data["status_list"]["uri"] == f"{w.b.url}/v1/status/1"
    assert not w.a.events("federation.accepted")


async def test_a_status_list_outside_b_origin(world: World) -> None:
    w = await world.up()
    token, receipt = await w.b_token()
    # B's own key signs a token whose list is elsewhere (a B misconfigured, or broken
    # into): A does not fetch from there, be it A itself or another port of B's host.
    now = int(time.time())
    key = KeyRing.open(w.b.data / "keys" / "signing", now).current
    header, claims = jwt.get_unverified_header(token), claims_of(token)
    for uri in (
        f"{w.a.url}/v1/status/1",
        f"{w.b.url}@{w.a.url.removeprefix('http://')}/v1/status/1",
        f"{w.b.url}0/v1/status/1",
        f"{w.b.url.replace('http:', 'https:')}/v1/status/1",
    ):
        claims["status"]["status_list"]["uri"] = uri
        forged = jwt.encode(claims, key.private, algorithm=key.alg, headers=header)
        resp = await exchange_response(w.a.c, w.provider, forged, receipt)
        # Refused while checking the token, before its DPoP key is: counted, not an event.
        await refused(w.a, resp, "status_uri")
        assert not w.a.events("federation.refused")
    # The token as B minted it is accepted.
    await exchange(w.a.c, w.provider, token, receipt)


async def test_b_down_when_a_recheck_is_due_fails_closed(world: World) -> None:
    w = await world.up()
    body = await w.accepted()
    ttl = await ttl_of_b(w)
    await w.b.c.close()

    later(w, ttl)
    resp = await me_at_a(w, body["access_token"])
    problem = await resp.json()
    assert resp.status == 503, problem
    assert problem["type"].endswith("/peer-status-unknown")
    assert resp.headers["Retry-After"] == str(RETRY)
    # Nothing is revoked for it, and A's own principals are not affected.
    assert not revoked_at_a(w)
    assert (await me_at_a(w, w.patient_t, w.patient)).status == 200

    # B answers again: after the retry delay A reads its list, and the token works again.
    await w.start(w.b, w.a, peer_toml(w.a, [w.b.witness_vkey, w.w.vkey], 2))
    later(w, RETRY)
    assert (await me_at_a(w, body["access_token"])).status == 200
    assert not revoked_at_a(w)
