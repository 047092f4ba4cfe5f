"""One DPoP proof, one client assertion and one signalling ticket, each presented to two
replicas (real processes) at once: accepted by one, refused by the other."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from gateway.auth.http import ASSERTION_TYPE
from tests.gateway.idclient import Holder, admin, enroll, local_invite, token_response
from tests.gateway.test_sessions import Call
from tests.replicas.conftest import Replicas
from tests.replicas_shared.conftest import Remote, config_of


async def test_a_proof_an_assertion_and_a_ticket_are_each_accepted_once(group: Replicas) -> None:
    r0, r1 = group.start(2)
    config = config_of(group)
    async with aiohttp.ClientSession() as http:
        a, b = Remote(http, r0, config), Remote(http, r1, config)
        adm, token = await admin(a, config.data_dir)

        # One DPoP proof, to both replicas at once.
        url = str(a.make_url("/v1/me"))
        headers = {"Authorization": f"DPoP {token}", "DPoP": adm.dpop("GET", url, token)}
        got = await asyncio.gather(
            a.get("/v1/me", headers=headers), b.get("/v1/me", headers=headers)
        )
        assert sorted(r.status for r in got) == [200, 401], [r.status for r in got]
        refused = next(r for r in got if r.status == 401)
        assert (await refused.json())["detail"] == "DPoP proof replayed"

        # One client assertion, with a proof of its own at each replica.
        endpoint = str(a.make_url("/oauth/token"))
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": adm.assertion(endpoint),
        }
        got = await asyncio.gather(
            *(
                c.post("/oauth/token", data=form, headers={"DPoP": adm.dpop("POST", endpoint)})
                for c in (a, b)
            )
        )
        statuses = sorted(r.status for r in got)
        assert statuses[0] == 200 and statuses[1] in (400, 401), statuses
        refused = next(r for r in got if r.status != 200)
        assert (await refused.json())["error"] == "invalid_client"

        # One signalling ticket (issued by r0), taken at both at once.
        k = await Call(a).setup(config)
        sid = await k.schedule()
        ticket = await k.ticket(sid, k.prov, k.prov_t)
        got_ws = await asyncio.gather(_take(a, sid, ticket), _take(b, sid, ticket))
        assert sorted(got_ws) == [101, 403], got_ws


async def _take(c: Remote, sid: str, ticket: str) -> int:
    try:
        ws = await c.ws_connect(f"/v1/sessions/{sid}/ws?ticket={ticket}")
    except aiohttp.WSServerHandshakeError as e:
        return e.status
    hello = await ws.receive_json(timeout=10)
    await ws.close()
    assert hello["type"] == "hello"
    return 101


async def test_a_server_nonce_from_one_replica_is_good_at_the_other(
    group: Replicas, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nonces are an HMAC of a time bucket under keys/dpop-nonce.key: the shared key dir
    # makes every replica's nonce good at every other (RFC 9449 8).
    monkeypatch.setenv("TELEGATE_DPOP_REQUIRE_NONCE", "true")
    r0, r1 = group.start(2)
    config = config_of(group)
    async with aiohttp.ClientSession() as http:
        a, b = Remote(http, r0, config), Remote(http, r1, config)
        h = Holder()
        await enroll(a, local_invite(config), h)
        endpoint = str(a.make_url("/oauth/token"))
        r = await token_response(a, h)
        assert r.status == 400 and (await r.json())["error"] == "use_dpop_nonce"
        nonce = r.headers["DPoP-Nonce"]
        r = await token_response(b, h, dpop=h.dpop("POST", endpoint, nonce=nonce))
        assert r.status == 200, await r.text()
        r = await token_response(b, h, dpop=h.dpop("POST", endpoint, nonce="forged"))
        assert r.status == 400 and (await r.json())["error"] == "use_dpop_nonce"
