"""Every vitals endpoint against expired, replayed, misdirected and forged credentials."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.config import Config
from tests.gateway.idclient import Holder
from tests.gateway.vitals.world import World, batch, hr, sign


class Clock:
    def __init__(self) -> None:
        self.t = float(int(time.time()))

    def __call__(self) -> float:
        return self.t


@pytest.fixture
async def clocked(aiohttp_client: Any, config: Config) -> tuple[World, Clock]:
    clock = Clock()
    client: TestClient[Any, Any] = await aiohttp_client(create_app(config, clock=clock))
    world = World(client)
    world.now = clock  # type: ignore[method-assign]
    await world.setup(config)
    for h in (world.adm, world.prov, world.pat, world.other, world.dev, world.other_dev):
        h.clock = clock
    return world, clock


def _request(world: World, which: str) -> tuple[str, str, Holder, str, dict[str, Any]]:
    """(method, path, holder, token, kwargs) of a legitimate call to one vitals endpoint."""
    if which == "post":
        jws = sign(world.dev, batch([hr(70, world.now() - 5)]))
        kw = {"data": jws, "headers": {"Content-Type": "application/jose"}}
        return "POST", "/v1/vitals", world.dev, world.dev_t, kw
    if which == "read":
        return "GET", f"/v1/patients/{world.pat.sub}/vitals", world.pat, world.pat_t, {}
    path = f"/v1/patients/{world.pat.sub}/erase"
    return "POST", path, world.adm, world.adm_t, {"json": {"reason": "legal_order"}}


async def _send(
    world: World, method: str, path: str, h: Holder, token: str, proof: str, kw: dict[str, Any]
) -> Any:
    headers = {"Authorization": f"DPoP {token}", "DPoP": proof, **kw.pop("headers", {})}
    return await world.client.request(method, path, headers=headers, **kw)


ENDPOINTS = ["post", "read", "erase"]


@pytest.mark.parametrize("which", ENDPOINTS)
async def test_an_expired_token_is_refused(clocked: tuple[World, Clock], which: str) -> None:
    world, clock = clocked
    clock.t += 300 + 30 + 1  # lifetime + skew
    method, path, h, token, kw = _request(world, which)
    url = str(world.client.make_url(path))
    resp = await _send(world, method, path, h, token, h.dpop(method, url, token), kw)
    assert resp.status == 401
    assert "expired" in (await resp.json())["detail"]


@pytest.mark.parametrize("which", ENDPOINTS)
async def test_a_replayed_proof_is_refused(clocked: tuple[World, Clock], which: str) -> None:
    world, _ = clocked
    method, path, h, token, kw = _request(world, which)
    url = str(world.client.make_url(path))
    proof = h.dpop(method, url, token)
    first = await _send(world, method, path, h, token, proof, dict(kw))
    assert first.status < 400, await first.text()
    again = await _send(world, method, path, h, token, proof, dict(kw))
    assert again.status == 401


@pytest.mark.parametrize("which", ENDPOINTS)
async def test_a_proof_for_another_url_or_method_is_refused(
    clocked: tuple[World, Clock], which: str
) -> None:
    world, _ = clocked
    method, path, h, token, kw = _request(world, which)
    other = str(world.client.make_url("/v1/me"))
    resp = await _send(world, method, path, h, token, h.dpop(method, other, token), dict(kw))
    assert resp.status == 401
    url = str(world.client.make_url(path))
    wrong = "PUT" if method != "PUT" else "GET"
    resp = await _send(world, method, path, h, token, h.dpop(wrong, url, token), dict(kw))
    assert resp.status == 401


@pytest.mark.parametrize("which", ENDPOINTS)
async def test_a_forged_or_stolen_token_is_refused(
    clocked: tuple[World, Clock], which: str
) -> None:
    world, _ = clocked
    method, path, h, token, kw = _request(world, which)
    url = str(world.client.make_url(path))
    # Re-signed with an attacker's key under the gateway's kid.
    claims = jwt.decode(token, options={"verify_signature": False})
    header = jwt.get_unverified_header(token)
    forged = jwt.encode(claims, Holder().key, algorithm="EdDSA", headers=header)
    resp = await _send(world, method, path, h, forged, h.dpop(method, url, forged), dict(kw))
    assert resp.status == 401
    # The real token, with a proof from a thief's key: cnf.jkt does not match.
    thief = Holder()
    resp = await _send(world, method, path, thief, token, thief.dpop(method, url, token), dict(kw))
    assert resp.status == 401


async def test_a_proof_for_the_percent_encoded_form_of_the_same_url_is_accepted(
    clocked: tuple[World, Clock],
) -> None:
    # RFC 9449 4.3 compares normalised URIs (RFC 3986 6.2.2): a client that encodes the
    # colon of a subject id in the path names the same resource.
    world, _ = clocked
    encoded = f"/v1/patients/{world.pat.sub.replace(':', '%3A')}/vitals"
    url = str(world.client.make_url("/")).rstrip("/") + encoded
    for path, htu in ((encoded, url), (encoded, url.replace("%3A", ":"))):
        proof = world.pat.dpop("GET", htu, world.pat_t)
        headers = {"Authorization": f"DPoP {world.pat_t}", "DPoP": proof}
        from yarl import URL

        resp = await world.client.get(URL(path, encoded=True), headers=headers)
        assert resp.status == 200, (path, htu, await resp.text())
