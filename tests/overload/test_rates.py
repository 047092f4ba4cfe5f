"""Token buckets per address and per client: 429 problem+json with Retry-After once a
bucket is spent; health probes exempt; loopback exempt only when configured; the address
behind a trusted proxy is the forwarded one."""

from __future__ import annotations

import base64
import json
from typing import Any

import aiohttp
import pytest

from gateway.config import Config
from gateway.errors import ConfigError
from gateway.limits import Buckets, claimed_subject
from tests.gateway.idclient import Holder, call, enroll, get_token, local_invite
from tests.overload.conftest import Serve

SLOW = 0.01  # refill a second: nothing refills within a test


async def assert_limited(r: aiohttp.ClientResponse, detail: str) -> None:
    assert r.status == 429
    assert r.content_type == "application/problem+json"
    assert int(r.headers["Retry-After"]) >= 1
    body = await r.json()
    assert body["type"].endswith("/rate-limited") and body["status"] == 429
    assert detail in body["detail"]


async def test_address_bucket_answers_429_once_spent(serve: Serve) -> None:
    async with serve(address_rate=SLOW, address_burst=3) as gw:
        for _ in range(3):
            assert (await gw.get("/ledger/checkpoint")).status == 200
        r = await gw.get("/ledger/checkpoint")
        await assert_limited(r, "address")
        # 1 token at 0.01/s: 100 s.
        assert int(r.headers["Retry-After"]) == 100
        # Any route: the bucket is the address's.
        await assert_limited(await gw.get("/openapi.json"), "address")
        # Probes and metrics are never limited.
        for path in ("/healthz", "/readyz", "/metrics"):
            assert (await gw.get(path)).status == 200


async def test_loopback_exempt_only_when_configured(serve: Serve) -> None:
    async with serve(address_rate=SLOW, address_burst=1, rate_exempt_loopback=True) as gw:
        for _ in range(5):
            assert (await gw.get("/ledger/checkpoint")).status == 200


def test_loopback_exemption_refused_beyond_loopback() -> None:
    with pytest.raises(ConfigError, match="rate_exempt_loopback"):
        Config(host="0.0.0.0", rate_exempt_loopback=True)
    with pytest.raises(ConfigError, match="rate_exempt_loopback"):
        Config.load({"TELEGATE_HOST": "gw.example", "TELEGATE_RATE_EXEMPT_LOOPBACK": "true"})
    assert Config(host="::1", rate_exempt_loopback=True).rate_exempt_loopback


async def test_forwarded_address_counts_behind_a_trusted_proxy(serve: Serve) -> None:
    async with serve(address_rate=SLOW, address_burst=2, trusted_proxies="127.0.0.1") as gw:
        a = {"X-Forwarded-For": "203.0.113.5"}
        b = {"X-Forwarded-For": "198.51.100.7"}
        for _ in range(2):
            assert (await gw.get("/ledger/checkpoint", headers=a)).status == 200
        await assert_limited(await gw.get("/ledger/checkpoint", headers=a), "address")
        # Another client behind the same proxy has its own bucket.
        assert (await gw.get("/ledger/checkpoint", headers=b)).status == 200
        # A client cannot escape its bucket by prepending addresses: the proxy appends.
        spoof = {"X-Forwarded-For": "192.0.2.1, 203.0.113.5"}
        await assert_limited(await gw.get("/ledger/checkpoint", headers=spoof), "address")


async def test_forwarded_header_ignored_without_trusted_proxy(serve: Serve) -> None:
    async with serve(address_rate=SLOW, address_burst=2) as gw:
        for ip in ("203.0.113.5", "198.51.100.7"):
            r = await gw.get("/ledger/checkpoint", headers={"X-Forwarded-For": ip})
            assert r.status == 200
        r = await gw.get("/ledger/checkpoint", headers={"X-Forwarded-For": "192.0.2.9"})
        await assert_limited(r, "address")


async def test_client_bucket_is_charged_by_the_authenticated_subject(serve: Serve) -> None:
    async with serve(client_rate=SLOW, client_burst=3) as gw:
        h = Holder()
        await enroll(gw, local_invite(gw.config), h)
        token = await get_token(gw, h)  # the token endpoint charges the client: 2 left
        for _ in range(2):
            assert (await call(gw, "GET", "/v1/me", h, token)).status == 200
        await assert_limited(await call(gw, "GET", "/v1/me", h, token), "client")
        # Another client, from the same address, is served.
        other = Holder()
        await enroll(gw, local_invite(gw.config), other)
        other_token = await get_token(gw, other)
        assert (await call(gw, "GET", "/v1/me", other, other_token)).status == 200


def _forged(sub: str) -> str:
    def part(d: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'EdDSA'})}.{part({'sub': sub})}.{'A' * 86}"


async def test_a_forged_claim_cannot_spend_another_clients_bucket(serve: Serve) -> None:
    async with serve(client_rate=SLOW, client_burst=3) as gw:
        victim = Holder()
        await enroll(gw, local_invite(gw.config), victim)
        assert claimed_subject(f"DPoP {_forged(victim.sub)}") == victim.sub
        for _ in range(10):
            r = await gw.get("/v1/me", headers={"Authorization": f"DPoP {_forged(victim.sub)}"})
            assert r.status == 401  # refused by authentication, charged to no client
        token = await get_token(gw, victim)
        for _ in range(2):
            assert (await call(gw, "GET", "/v1/me", victim, token)).status == 200


@pytest.mark.parametrize(
    "header",
    [None, "", "DPoP", "DPoP a.b", "Basic dXNlcjpwYXNz", "DPoP a.!!!.c", "DPoP a.W10.c"],
    ids=["none", "empty", "no-token", "two-parts", "basic", "bad-base64", "not-object"],
)
def test_claimed_subject_of_malformed_headers(header: str | None) -> None:
    assert claimed_subject(header) is None


def test_buckets_refill_debt_and_bounded_keys() -> None:
    b = Buckets(rate=1.0, burst=2, max_keys=100)
    assert b.take("a", 0.0) is None and b.take("a", 0.0) is None
    assert b.take("a", 0.0) == pytest.approx(1.0)
    assert b.take("a", 0.5) == pytest.approx(0.5)  # nothing spent by a refused take
    assert b.take("a", 1.0) is None
    b.charge("b", 0.0, cost=10)  # debt, floored at -burst
    assert b.level("b", 0.0) == -2.0
    assert b.wait("b", 0.0) == pytest.approx(3.0)
    assert b.wait("never", 0.0) is None and "never" not in b._b
    for i in range(150):
        b.take(f"k{i}", 0.0)
    assert len(b) == 100 and "a" not in b._b  # the least recently charged went first
