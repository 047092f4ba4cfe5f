"""Without ``redis_url`` the replay cache and the tickets stay in process, and the code
paths reworked for Redis (the awaited spend, async tickets) refuse replays as before."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.app import create_app
from gateway.config import Config
from tests.gateway.idclient import admin, token_response
from tests.gateway.test_sessions import Call


async def test_one_gateway_alone_refuses_a_replayed_proof_and_a_reused_ticket(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    config = Config(data_dir=tmp_path / "data", log_origin="one.example/t/log")
    c = await aiohttp_client(create_app(config))
    k = await Call(c).setup(config)
    url = str(c.make_url("/v1/me"))
    headers = {"Authorization": f"DPoP {k.adm_t}", "DPoP": k.adm.dpop("GET", url, k.adm_t)}
    assert (await c.get("/v1/me", headers=headers)).status == 200
    again = await c.get("/v1/me", headers=headers)
    assert again.status == 401
    assert (await again.json())["detail"] == "DPoP proof replayed"
    sid = await k.schedule()
    ticket = await k.ticket(sid, k.prov, k.prov_t)
    ws = await k.ws(sid, ticket)
    await ws.close()
    r = await c.get(f"/v1/sessions/{sid}/ws?ticket={ticket}")
    assert r.status == 403


async def test_the_token_endpoint_refuses_a_replayed_proof_in_process(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    config = Config(data_dir=tmp_path / "data", log_origin="one.example/t/log")
    c = await aiohttp_client(create_app(config))
    adm, _ = await admin(c, config.data_dir)
    proof = adm.dpop("POST", str(c.make_url("/oauth/token")))
    assert (await token_response(c, adm, dpop=proof)).status == 200
    r = await token_response(c, adm, dpop=proof)  # a fresh assertion, the same proof
    body = await r.json()
    assert r.status == 400, body
    assert body["error"] == "invalid_dpop_proof" and body["detail"] == "DPoP proof replayed"
