"""Issue 13, item 4: a stranger must not be able to grow the ledger at request rate.

Refusals of anonymous callers are counted per source and window into one
``auth.refused_summary`` entry (exact counts), sources are rate-limited (429 +
Retry-After), overflow sources share one ``other`` entry, nothing counted is lost on a
clean shutdown, and the ledger names a keyed pseudonym of the address, never the address.
Refusals of authenticated callers stay one ``auth.refused`` entry each.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections import Counter
from typing import Any

import pytest

from gateway.app import create_app
from gateway.auth.refusals import REFUSALS, Refusals
from gateway.auth.sources import KEY_FILE, pseudonym_of
from gateway.auth.tally import Refusal, Tally
from gateway.cli import main
from gateway.config import Config
from gateway.errors import ConfigError
from ledger.errors import LedgerUnavailable
from ledger.events import Event
from ledger.pgstore import PGStore
from ledger.store import LogStore, SQLiteStore
from tests.gateway.idclient import Holder, call, enroll, local_invite

from .world import (
    FakeClock,
    World,
    _world,
    entries,
    ledger_size,
    problem,
    token_form,
    token_request,
)

PROXY = "127.0.0.1"  # the test client's address, trusted as a proxy where a test says so


async def _flood_world(aiohttp_client: Any, config: Config, **over: Any) -> World:
    return await _world(aiohttp_client, dataclasses.replace(config, **over))


def _key(w: World) -> bytes:
    return (w.config.key_dir / KEY_FILE).read_bytes()


def _close_window(w: World) -> None:
    """Move the clock into the next window."""
    window = w.config.refusal_window
    w.clock.t = (int(w.clock.t) // window + 1) * window


async def _summaries(w: World, start: int) -> list[dict[str, Any]]:
    """The summaries written since ``start``; no refusal was written one by one."""
    new = [e for e, _ in await entries(w.client, start)]
    assert "auth.refused" not in {e["type"] for e in new}, [e["type"] for e in new]
    return [e["data"] for e in new if e["type"] == "auth.refused_summary"]


def _counts(summary: dict[str, Any]) -> Counter[tuple[str, str, int, str, str]]:
    rows = summary["counts"]
    key = ("route", "method", "status", "problem")
    return Counter({(*(r[k] for k in key), r.get("error", "")): r["count"] for r in rows})


async def test_a_thousand_anonymous_refusals_are_one_ledger_entry(
    aiohttp_client: Any, config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    w = await _flood_world(aiohttp_client, config, refusal_burst=10_000)
    before = await ledger_size(w.client)
    caplog.set_level(logging.WARNING, "telegate.auth")
    jwk = Holder().jwk
    for i in range(1000):
        if i % 4 == 0:
            r = await w.client.post("/v1/enroll", json={"invite": f"guess-{i}", "jwk": jwk})
            await problem(r, 400, "invalid-invite")
        elif i % 4 == 1:
            r = await token_request(w.client, token_form("not.a.jwt"))
            assert r.status in (400, 401)
        else:
            r = await w.client.get("/v1/me", headers={"Authorization": f"DPoP forged-{i}"})
            await problem(r, 401, "unauthorized")
    # Nothing written while the window is open, but the operator was told at once, once.
    assert await ledger_size(w.client) == before
    started = [r for r in caplog.records if r.getMessage() == "anonymous refusals from a source"]
    assert len(started) == 1
    assert started[0].fields == {  # type: ignore[attr-defined]
        "source": pseudonym_of(_key(w), "127.0.0.1"),
        "route": "/v1/enroll",
        "problem": "invalid-invite",
    }
    _close_window(w)
    assert await w.client.server.app[REFUSALS].flush() == 1
    assert await ledger_size(w.client) == before + 1
    # ...and one entry once it closes, with every refusal counted exactly.
    [summary] = await _summaries(w, before)
    counts = _counts(summary)
    assert counts[("/v1/enroll", "POST", 400, "invalid-invite", "")] == 250
    assert counts[("/v1/me", "GET", 401, "unauthorized", "")] == 500
    token_rows = {k: n for k, n in counts.items() if k[0] == "/oauth/token"}
    assert sum(token_rows.values()) == 250, token_rows
    assert summary["total"] == 1000 and summary["rate_limited"] == 0
    assert summary["window"]["seconds"] == w.config.refusal_window
    assert summary["source"] == pseudonym_of(_key(w), "127.0.0.1")
    raw = b"".join(r for _, r in await entries(w.client, before))
    assert b"127.0.0.1" not in raw and b"guess-" not in raw and b"forged-" not in raw


async def test_two_sources_behind_a_trusted_proxy_are_two_summaries(
    aiohttp_client: Any, config: Config
) -> None:
    w = await _flood_world(aiohttp_client, config, trusted_proxies=PROXY)
    before = await ledger_size(w.client)
    for ip, n in (("203.0.113.5", 3), ("198.51.100.7", 2)):
        for _ in range(n):
            r = await w.client.get("/v1/me", headers={"X-Forwarded-For": f"10.9.9.9, {ip}"})
            assert r.status == 401
    _close_window(w)
    await w.client.server.app[REFUSALS].flush()
    got = {s["source"]: s["total"] for s in await _summaries(w, before)}
    key = _key(w)
    assert got == {pseudonym_of(key, "203.0.113.5"): 3, pseudonym_of(key, "198.51.100.7"): 2}


async def test_a_forwarded_for_header_from_anyone_else_is_ignored(
    aiohttp_client: Any, config: Config
) -> None:
    w = await _flood_world(aiohttp_client, config)  # no trusted proxy
    before = await ledger_size(w.client)
    for ip in ("203.0.113.5", "198.51.100.7", "192.0.2.1"):
        r = await w.client.get("/v1/me", headers={"X-Forwarded-For": ip})
        assert r.status == 401
    _close_window(w)
    await w.client.server.app[REFUSALS].flush()
    [summary] = await _summaries(w, before)
    assert summary["total"] == 3 and summary["source"] == pseudonym_of(_key(w), "127.0.0.1")


async def test_refusals_of_an_authenticated_caller_stay_one_entry_each(world: World) -> None:
    w = world
    before = await ledger_size(w.client)
    for _ in range(5):
        r = await call(w.client, "GET", "/v1/audit/events", w.pat, w.pat_token)
        assert r.status == 403
    # Each on the ledger before its answer, naming the caller and the source's pseudonym.
    new = [e for e, _ in await entries(w.client, before)]
    assert [e["type"] for e in new] == ["auth.refused"] * 5
    assert {e["actor"] for e in new} == {w.pat.sub}
    assert {e["data"]["source"] for e in new} == {pseudonym_of(_key(w), "127.0.0.1")}
    _close_window(w)
    assert await w.client.server.app[REFUSALS].flush() == 0


async def test_a_source_over_its_rate_gets_429_and_no_work_is_done(
    aiohttp_client: Any, config: Config
) -> None:
    # Loopback is limited like any other source: nothing exempts 127.0.0.1.
    w = await _flood_world(aiohttp_client, config, refusal_rate=0.5, refusal_burst=3)
    _close_window(w)  # start at a window's start: the 4 s this test moves stay in one window
    before = await ledger_size(w.client)
    for _ in range(3):
        assert (await w.client.get("/v1/me")).status == 401
    # The bucket is empty: answered 429 before any handler runs, so even a valid invite
    # is not spent by a request from this source.
    invite = local_invite(w.config)
    r = await w.client.post("/v1/enroll", json={"invite": invite, "jwk": Holder().jwk})
    body = await problem(r, 429, "too-many-requests")
    assert r.headers["Retry-After"] == "2"  # one token at 0.5 a second
    assert body["status"] == 429
    assert (await w.client.get("/v1/me")).status == 429
    # Once a token has refilled, the source is served (and refused) again.
    w.clock.t += 2
    assert (await w.client.get("/v1/me")).status == 401
    holder = Holder()
    holder.clock = w.clock
    w.clock.t += 2
    await enroll(w.client, invite, holder)  # the invite was never spent
    _close_window(w)
    await w.client.server.app[REFUSALS].flush()
    [summary] = await _summaries(w, before)
    counts = _counts(summary)
    assert counts[("/v1/me", "GET", 401, "unauthorized", "")] == 4
    assert counts[("/v1/enroll", "POST", 429, "too-many-requests", "")] == 1
    assert counts[("/v1/me", "GET", 429, "too-many-requests", "")] == 1
    assert summary["total"] == 6 and summary["rate_limited"] == 2


async def test_sources_beyond_the_cap_are_counted_together_never_dropped(
    aiohttp_client: Any, config: Config
) -> None:
    w = await _flood_world(aiohttp_client, config, trusted_proxies=PROXY, refusal_max_sources=2)
    before = await ledger_size(w.client)
    ips = [f"203.0.113.{i}" for i in range(1, 11)]
    for ip in ips:
        assert (await w.client.get("/v1/me", headers={"X-Forwarded-For": ip})).status == 401
    assert w.client.server.app[REFUSALS].tally.tracked == 2
    _close_window(w)
    await w.client.server.app[REFUSALS].flush()
    got = {s["source"]: s["total"] for s in await _summaries(w, before)}
    key = _key(w)
    assert got == {pseudonym_of(key, ips[0]): 1, pseudonym_of(key, ips[1]): 1, "other": 8}


async def test_a_closed_window_is_written_by_the_background_task(
    aiohttp_client: Any, config: Config
) -> None:
    w = await _flood_world(aiohttp_client, config, refusal_window=4)  # polled every second
    before = await ledger_size(w.client)
    assert (await w.client.get("/v1/me")).status == 401
    await asyncio.sleep(1.5)  # a poll passes; the window is still open on the clock
    assert await ledger_size(w.client) == before
    _close_window(w)
    for _ in range(200):  # the task's next poll (each second), not time passing on the clock
        if await ledger_size(w.client) > before:
            break
        await asyncio.sleep(0.05)
    [summary] = await _summaries(w, before)
    assert summary["total"] == 1


async def test_counts_are_written_on_a_clean_shutdown(aiohttp_client: Any, config: Config) -> None:
    client = await aiohttp_client(create_app(config, clock=FakeClock()))
    for _ in range(3):
        assert (await client.get("/v1/me")).status == 401
    await client.close()
    store: LogStore = (
        PGStore(config.database_url, writer=False)
        if config.database_url
        else SQLiteStore(config.db_path, writer=False)
    )
    try:
        events = [json.loads(e) for e in store.read_entries(0, store.size())]
    finally:
        store.close()
    kinds = [e["type"] for e in events]
    assert kinds[-2:] == ["auth.refused_summary", "gateway.stopped"], kinds
    assert events[-2]["data"]["total"] == 3


async def test_an_anonymous_signalling_ticket_refusal_is_counted(world: World) -> None:
    w = world
    before = await ledger_size(w.client)
    for _ in range(3):
        r = await w.client.get("/v1/sessions/nope/ws?ticket=guess")
        await problem(r, 403, "forbidden")
    _close_window(w)
    await w.client.server.app[REFUSALS].flush()
    [summary] = await _summaries(w, before)
    assert _counts(summary) == {("/v1/sessions/{id}/ws", "GET", 403, "forbidden", ""): 3}


def test_the_pseudonym_is_keyed_stable_and_not_the_address(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    k1, k2 = b"k" * 32, b"j" * 32
    p = pseudonym_of(k1, "203.0.113.5")
    assert p == pseudonym_of(k1, "203.0.113.5") == pseudonym_of(k1, "::ffff:203.0.113.5")
    assert p != pseudonym_of(k2, "203.0.113.5") and p != pseudonym_of(k1, "203.0.113.6")
    assert "203" not in p and p.startswith("src:")
    # An IPv6 source is its /64: rotating the interface id does not make a new source.
    assert pseudonym_of(k1, "2001:db8::1") == pseudonym_of(k1, "2001:db8::ffff:1")
    assert pseudonym_of(k1, "2001:db8::1") != pseudonym_of(k1, "2001:db8:0:1::1")
    # The operator's check: the same key in the key directory gives the same answer.
    data = tmp_path / "data"
    (data / "keys").mkdir(parents=True)
    (data / "keys" / KEY_FILE).write_bytes(k1)
    assert main(["pseudonym", "203.0.113.5", "--data-dir", str(data)]) == 0
    assert capsys.readouterr().out.split() == ["203.0.113.5", p]
    assert main(["pseudonym", "not-an-ip", "--data-dir", str(data)]) == 1
    assert main(["pseudonym", "203.0.113.5", "--data-dir", str(tmp_path / "none")]) == 1


@pytest.mark.parametrize(
    "over",
    [
        {"refusal_window": 0},
        {"refusal_window": 3601},
        {"refusal_max_sources": 0},
        {"refusal_rate": 0.0},
        {"refusal_burst": 0},
        {"trusted_proxies": "10.0.0.0/8, not-an-address"},
    ],
    ids=lambda o: next(iter(o)),
)
def test_refusal_limits_are_validated(over: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        Config(**over)


def test_a_window_boundary_hands_no_fresh_burst_and_idle_sources_are_forgotten() -> None:
    kind = Refusal("/v1/me", "GET", 401, "unauthorized")
    t = Tally(window=60, max_sources=10, rate=0.1, burst=3)
    for _ in range(3):
        t.count("a", kind, 59.0)
    t.count("b", kind, 59.0)
    assert t.retry_after("a", 59.0) == pytest.approx(10.0)
    # The window closes at 60: a is still limited (its bucket refills at 0.1/s), and b,
    # one token short, is kept too until its bucket is full again.
    assert t.retry_after("a", 60.0) == pytest.approx(9.0)
    assert [(s.source, s.total) for s in t.close_due(60.0)] == [("a", 3), ("b", 1)]
    assert t.tracked == 2
    # By the end of the next window both buckets are full: both are forgotten.
    assert t.close_due(120.0) == [] and t.tracked == 0
    assert t.retry_after("a", 120.0) is None


async def test_what_a_client_chooses_does_not_size_a_summary(
    aiohttp_client: Any, config: Config
) -> None:
    w = await _flood_world(aiohttp_client, config, refusal_burst=1)
    before = await ledger_size(w.client)
    assert (await w.client.get("/v1/me")).status == 401
    # Limited now: 200 requests with unusual methods and long paths, each answered 429.
    methods = ("PROPFIND", "MKCOL", "LOCK", "PURGE", "REPORT")
    for i in range(200):
        r = await w.client.request(methods[i % 5], f"/{'p' * 2000}/{i}")
        assert r.status == 429
    _close_window(w)
    assert await w.client.server.app[REFUSALS].flush() == 1
    [(event, raw)] = await entries(w.client, before)
    assert len(raw) < 1024, len(raw)
    assert _counts(event["data"]) == {
        ("/v1/me", "GET", 401, "unauthorized", ""): 1,
        ("unmatched", "OTHER", 429, "too-many-requests", ""): 200,
    }


async def test_summaries_the_ledger_could_not_take_are_written_on_the_next_flush() -> None:
    written: list[dict[str, Any]] = []
    down = True

    async def write(event: Event) -> None:
        if down:
            raise LedgerUnavailable("the writer is down")
        written.append(event.to_dict())

    clock = FakeClock()
    tally = Tally(window=60, max_sources=10, rate=1.0, burst=10)
    refusals = Refusals(tally, b"k" * 32, (), clock, write)
    refusals.note("src:a", Refusal("/v1/me", "GET", 401, "unauthorized"))
    refusals.note("src:b", Refusal("/v1/me", "GET", 401, "unauthorized"))
    clock.t += 60
    assert await refusals.flush() == 0 and written == []
    down = False
    assert await refusals.flush() == 2
    assert sorted(e["data"]["source"] for e in written) == ["src:a", "src:b"]
    assert await refusals.flush_all() == 0  # nothing written twice
