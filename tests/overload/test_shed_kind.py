"""Shedding is told apart from an outage: its own problem type, and the benchmarks count it
apart (a 503 `overloaded` is shed; a 503 `unavailable` of a store down is an outage)."""

from __future__ import annotations

import asyncio
import json

from bench.overload import SHED_503, outcome
from bench.soak import deliberate
from gateway.errors import OVERLOADED_TYPE, _problem
from ledger.errors import LedgerUnavailable
from tests.overload.conftest import Serve
from tests.overload.test_slow import _hold_body


async def test_a_shed_request_and_an_outage_are_counted_apart(serve: Serve) -> None:
    async with serve(max_pending=1) as gw:
        held = await asyncio.to_thread(_hold_body, gw.port)
        try:
            await gw.until_metric("telegate_requests_pending", 1.0)
            r = await gw.get("/ledger/checkpoint")
            raw = await r.read()
        finally:
            held.close()
    assert r.status == 503 and int(r.headers["Retry-After"]) >= 1
    assert r.content_type == "application/problem+json"
    body = json.loads(raw)
    assert body["type"] == OVERLOADED_TYPE and body["status"] == 503
    assert outcome("503", raw) == SHED_503 and deliberate(503, body)

    # The ledger down: the same status and header, another problem type, an outage.
    down = _problem(LedgerUnavailable("writer stopped"))
    assert isinstance(down.body, bytes)
    outage = json.loads(down.body)
    assert down.status == 503 and "Retry-After" in down.headers
    assert outage["type"].endswith("/unavailable")
    assert outcome("503", down.body) == "503" and not deliberate(503, outage)
    # Neither is confused by what is not a problem at all.
    assert outcome("503", b"not json") == "503" and outcome("200", b"{}") == "200"
    assert not deliberate(200, {"type": OVERLOADED_TYPE}) and not deliberate(503, None)
