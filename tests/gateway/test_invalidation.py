"""The invalidation bus and the deadline watcher, on their own: what a Redis implementation
of the bus must keep (the wire form), and that one failing listener ends nobody's access
less."""

from __future__ import annotations

import asyncio

import pytest

from gateway.deadlines import Deadlines
from gateway.invalidation import Invalidation, Kind, LocalInvalidations


@pytest.mark.parametrize(
    "news",
    [
        Invalidation(Kind.SUBJECT, sub="prov:1", reason="key_compromise"),
        Invalidation(Kind.TOKEN, jti="abc", sub="pat:2", reason="revoked_at_peer"),
        Invalidation(Kind.CONSENT, patient="pat:2", grantee="role:provider"),
    ],
    ids=["subject", "token", "consent"],
)
def test_the_wire_form_round_trips(news: Invalidation) -> None:
    assert Invalidation.from_json(news.to_json()) == news


@pytest.mark.parametrize(
    "raw",
    [
        {"kind": "subject"},  # names nobody
        {"kind": "token", "sub": "prov:1"},  # no jti
        {"kind": "consent", "patient": "pat:1"},  # no grantee
        {"kind": "everything"},
        {"kind": "subject", "sub": "prov:1", "extra": "x"},
        {"kind": "subject", "sub": 1},
        ["subject", "prov:1"],
    ],
)
def test_malformed_news_is_refused(raw: object) -> None:
    with pytest.raises(ValueError):
        Invalidation.from_json(raw)


async def test_every_listener_hears_even_when_one_fails() -> None:
    bus = LocalInvalidations()
    heard: list[str] = []

    async def broken(news: Invalidation) -> None:
        raise RuntimeError("down")

    async def ok(news: Invalidation) -> None:
        heard.append(str(news.sub))

    bus.subscribe(broken)
    stop = bus.subscribe(ok)
    with pytest.raises(RuntimeError):
        await bus.publish(Invalidation(Kind.SUBJECT, sub="prov:1"))
    assert heard == ["prov:1"]
    stop()
    with pytest.raises(RuntimeError):
        await bus.publish(Invalidation(Kind.SUBJECT, sub="prov:2"))
    assert heard == ["prov:1"]


async def test_a_deadline_fires_when_the_injected_clock_passes_it() -> None:
    now = [1000.0]
    deadlines = Deadlines(lambda: now[0], tick=0.01)
    fired = asyncio.Event()

    async def due() -> None:
        fired.set()

    deadlines.set("a", 2000.0, due)
    deadlines.set("b", 1500.0, due)
    deadlines.cancel("b")
    await asyncio.sleep(0.05)
    assert not fired.is_set() and len(deadlines) == 1
    now[0] = 2000.0  # the clock moves; nobody sleeps for 1000 s
    await asyncio.wait_for(fired.wait(), 2)
    assert len(deadlines) == 0
    await deadlines.close()
