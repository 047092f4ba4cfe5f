"""Clock steps: the gateway's wall clock (the injected ``clock``) jumps forward and back by
minutes, as NTP does to a machine that was off. Tokens, DPoP proofs, consents and
break-the-glass end when they should, and the checkpoint served never goes backwards."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.app import create_app
from gateway.auth.tokens import Forbidden
from gateway.config import Config
from tests.gateway.idclient import Holder, call, get_token
from tests.gateway.test_consent import Clock, World

MINUTE = 60


@pytest.fixture
async def w(aiohttp_client: Any, config: Config) -> World:
    clock = Clock()
    client = await aiohttp_client(create_app(config, clock=clock))
    return await World(client, clock).setup(config)


class Checkpoints:
    """Every checkpoint the gateway served, to check that none goes backwards."""

    def __init__(self, w: World) -> None:
        self.w = w
        self.sizes: list[int] = []

    async def append_and_read(self) -> None:
        r = await call(
            self.w.client, "POST", "/v1/invites", self.w.adm, self.w.adm_t, json={"role": "patient"}
        )
        assert r.status in (201, 401), await r.text()
        cp = await self.w.client.get("/ledger/checkpoint")
        self.sizes.append(int((await cp.text()).splitlines()[1]))
        assert self.sizes == sorted(self.sizes), self.sizes


async def _me(w: World, h: Holder, token: str) -> int:
    r = await call(w.client, "GET", "/v1/me", h, token)
    return r.status


async def test_tokens_end_on_a_forward_step_and_checkpoints_never_go_back(
    w: World, config: Config
) -> None:
    cps = Checkpoints(w)
    await cps.append_and_read()
    old = w.prov_t
    assert await _me(w, w.prov, old) == 200
    w.clock.t += config.token_lifetime + config.clock_skew + 1
    assert await _me(w, w.prov, old) == 401  # expired by the step, not by waiting
    w.adm_t = await get_token(w.client, w.adm)
    await cps.append_and_read()
    w.clock.t -= 10 * MINUTE  # back past when the old token was issued
    w.adm_t = await get_token(w.client, w.adm)
    await cps.append_and_read()
    w.clock.t += 20 * MINUTE
    w.adm_t = await get_token(w.client, w.adm)
    await cps.append_and_read()
    assert len(set(cps.sizes)) == len(cps.sizes)  # each append grew it


async def test_a_token_from_the_future_is_refused_after_a_backward_step(
    w: World, config: Config
) -> None:
    """A token issued "later" than now (iat beyond the skew) would outlive token_lifetime
    by the size of the step: refused until the clock catches up (RFC 7519 4.1.6, 9068 4)."""
    token = w.prov_t
    w.clock.t -= 10 * MINUTE
    assert await _me(w, w.prov, token) == 401
    w.clock.t += 10 * MINUTE
    assert await _me(w, w.prov, token) == 200


async def test_dpop_proofs_outside_the_window_after_either_step(w: World, config: Config) -> None:
    # The client's own clock stays put while the gateway's steps.
    client_clock = Clock()
    client_clock.t = w.clock.t
    w.prov.clock = client_clock
    token = await get_token(w.client, w.prov)
    assert await _me(w, w.prov, token) == 200
    w.clock.t += config.dpop_window + config.clock_skew + MINUTE
    assert await _me(w, w.prov, token) == 401  # the proof is too old for the gateway
    w.clock.t = client_clock.t - (config.dpop_window + config.clock_skew + MINUTE)
    assert await _me(w, w.prov, token) == 401  # the proof is from the gateway's future
    w.clock.t = client_clock.t
    assert await _me(w, w.prov, token) == 200


async def test_consent_and_break_the_glass_end_after_a_forward_step(
    w: World, config: Config
) -> None:
    r = await w.grant(w.prov.sub, ["vitals.read"], seconds=10 * MINUTE)
    assert r.status == 201, await r.text()
    assert (await w.authorize(w.prov, "provider", "vitals.read")).basis == "consent"
    w.clock.t += 10 * MINUTE + 1
    with pytest.raises(Forbidden):
        await w.authorize(w.prov, "provider", "vitals.read")

    w.prov2_t = await get_token(w.client, w.prov2)
    r = await call(
        w.client,
        "POST",
        "/v1/emergency-access",
        w.prov2,
        w.prov2_t,
        json={"patient": w.pat.sub, "reason": "unconscious in the ER, allergy check"},
    )
    assert r.status == 201, await r.text()
    assert (await w.authorize(w.prov2, "provider", "vitals.read")).basis == "break_the_glass"
    w.clock.t += config.break_glass_minutes * MINUTE + 5 * MINUTE
    with pytest.raises(Forbidden):
        await w.authorize(w.prov2, "provider", "vitals.read")
