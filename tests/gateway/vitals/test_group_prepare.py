"""The prepare step's grouping (gateway/vitals/intake.py, _GroupPrepare): requests that
arrive while a hop is under way go together in the next one, each gets its own answer."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from gateway.errors import BadRequest
from gateway.vitals.intake import _GroupPrepare


async def test_requests_arriving_during_a_hop_share_the_next_and_keep_their_own_results() -> None:
    hops: list[list[str]] = []
    gate = threading.Event()

    def prepare(lookup: Any, sub: str, jws: str) -> Any:
        if sub == "first":
            gate.wait(5)  # the first hop runs while the others arrive
        if sub == "bad":
            raise BadRequest("not a batch")
        return f"prepared {sub}"

    with ThreadPoolExecutor(2) as pool:
        g = _GroupPrepare(prepare, pool)
        real = g._all

        def recorded(jobs: Any) -> Any:
            hops.append([sub for _, sub, _ in jobs])
            return real(jobs)

        g._all = recorded  # type: ignore[method-assign]
        first = asyncio.ensure_future(g.run(None, "first", "x"))  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        rest = [
            asyncio.ensure_future(g.run(None, s, "x"))  # type: ignore[arg-type]
            for s in ("a", "bad", "b")
        ]
        await asyncio.sleep(0.05)
        gate.set()
        assert await first == "prepared first"
        assert await rest[0] == "prepared a" and await rest[2] == "prepared b"
        with pytest.raises(BadRequest):
            await rest[1]
    assert hops == [["first"], ["a", "bad", "b"]]


async def test_a_hop_takes_at_most_most_requests() -> None:
    sizes: list[int] = []

    def prepare(lookup: Any, sub: str, jws: str) -> Any:
        return sub

    with ThreadPoolExecutor(1) as pool:
        g = _GroupPrepare(prepare, pool)
        real = g._all

        def counted(jobs: Any) -> Any:
            sizes.append(len(jobs))
            return real(jobs)

        g._all = counted  # type: ignore[method-assign]
        subs = [str(i) for i in range(2 * g.MOST + 5)]
        got = await asyncio.gather(*(g.run(None, s, "x") for s in subs))  # type: ignore[arg-type]
    assert list(got) == subs
    assert max(sizes) <= g.MOST and sum(sizes) == len(subs) and len(sizes) >= 3
