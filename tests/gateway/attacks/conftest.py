"""Fixtures for the identity attack tests."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from gateway.app import create_app
from gateway.auth.dpop import NonceSource
from gateway.config import Config
from tests.gateway.attacks.world import (
    FakeClock,
    World,
    _world,
    call_with_nonce,
)
from tests.gateway.idclient import (
    Holder,
    enroll,
    local_invite,
    token_response,
)


@pytest.fixture
async def world(aiohttp_client: Any, config: Config) -> World:
    return await _world(aiohttp_client, config)


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
    await enroll(client, local_invite(cfg), adm)
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
