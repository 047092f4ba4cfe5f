"""Bounds on what the gateway keeps per request, found by the soak's memory trace
(bench/RESULTS.md, soak): each test drives the real app and checks the bound, not a size."""

from __future__ import annotations

from typing import Any

from gateway.app import create_app
from gateway.appkeys import AUTHORITY
from gateway.config import Config
from tests.gateway.conftest import config
from tests.gateway.idclient import call, get_token
from tests.gateway.test_consent import Clock, World

__all__ = ["config"]  # the fixture (SQLite, and PostgreSQL where it answers), used by name


async def test_verified_tokens_are_forgotten_once_expired(
    aiohttp_client: Any, config: Config
) -> None:
    """The signature checks the gateway remembers are of tokens still alive: an expired
    token's entry (about 3 KiB) went only when 10,000 newer ones had pushed it out, so the
    cache grew with every token issued until then (1 MiB a minute at the soak's 5 tokens
    a second, 30 MiB at the bound)."""
    clock = Clock()
    client = await aiohttp_client(create_app(config, clock=clock))
    w = await World(client, clock).setup(config)
    auth = client.server.app[AUTHORITY]
    holders = [(w.adm, w.adm_t), (w.prov, w.prov_t), (w.pat, w.pat_t)]
    for h, t in holders:
        assert (await call(client, "GET", "/v1/me", h, t)).status == 200
    assert auth.verified_cached() >= len(holders)
    for _ in range(4):  # token lifetimes pass, one new token each
        clock.t += config.token_lifetime + config.clock_skew + 1
        token = await get_token(client, w.adm)
        assert (await call(client, "GET", "/v1/me", w.adm, token)).status == 200
        assert auth.verified_cached() == 1  # the live one; the expired ones are gone
    # A token still alive stays cached (its signature is not checked again).
    assert (await call(client, "GET", "/v1/me", w.adm, token)).status == 200
    assert auth.verified_cached() == 1
