"""WebSocket caps: per subject (429, counted by the ticket's subject) and in total (503,
before any ticket is redeemed); a socket that closes frees its place."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from gateway.errors import OVERLOADED_TYPE
from tests.gateway.test_sessions import Call
from tests.overload.conftest import Serve


async def _refused(gw: Any, sid: str, ticket: str) -> aiohttp.WSServerHandshakeError:
    with pytest.raises(aiohttp.WSServerHandshakeError) as e:
        await gw.session.ws_connect(f"{gw.base}/v1/sessions/{sid}/ws?ticket={ticket}")
    return e.value


async def test_websocket_caps_per_subject_and_in_total(serve: Serve) -> None:
    async with serve(max_websockets=2, max_websockets_per_subject=1) as gw:
        k = await Call(gw).setup(gw.config)
        sid = await k.schedule()

        async def ws(ticket: str) -> Any:
            w = await gw.session.ws_connect(f"{gw.base}/v1/sessions/{sid}/ws?ticket={ticket}")
            assert (await w.receive_json(timeout=30))["type"] == "hello"
            return w

        prov = await ws(await k.ticket(sid, k.prov, k.prov_t))
        await gw.until_metric("telegate_websockets_open", 1.0)
        # The provider's second socket: over its subject's cap.
        e = await _refused(gw, sid, await k.ticket(sid, k.prov, k.prov_t))
        assert e.status == 429
        assert e.headers is not None and int(e.headers["Retry-After"]) >= 1
        pat = await ws(await k.ticket(sid, k.pat, k.pat_t))
        await gw.until_metric("telegate_websockets_open", 2.0)
        # Every place taken: refused before the ticket is even looked at.
        e = await _refused(gw, sid, "made-up")
        assert e.status == 503
        assert e.headers is not None and int(e.headers["Retry-After"]) >= 1
        # The patient leaves and comes back.
        await pat.close()
        await gw.until_metric("telegate_websockets_open", 1.0)
        pat = await ws(await k.ticket(sid, k.pat, k.pat_t))
        await gw.until_metric("telegate_websockets_open", 2.0)
        assert await gw.metric('telegate_limited_total{limit="websockets"}') == 1.0
        # Open sockets are not requests under way: shedding does not count them.
        assert await gw.metric("telegate_requests_pending") == 0.0
        assert await gw.metric('telegate_limited_total{limit="websockets_subject"}') == 1.0
        await pat.close()
        await prov.close()
        await gw.until_metric("telegate_websockets_open", 0.0)


async def test_refused_upgrade_is_problem_json(serve: Serve) -> None:
    async with serve(max_websockets=1, max_websockets_per_subject=1) as gw:
        k = await Call(gw).setup(gw.config)
        sid = await k.schedule()
        url = f"{gw.base}/v1/sessions/{sid}/ws?ticket="
        w = await gw.session.ws_connect(url + await k.ticket(sid, k.prov, k.prov_t))
        await gw.until_metric("telegate_websockets_open", 1.0)
        headers = {"Upgrade": "websocket", "Connection": "Upgrade"}
        r = await gw.get(f"/v1/sessions/{sid}/ws?ticket=x", headers=headers)
        assert r.status == 503 and r.content_type == "application/problem+json"
        assert (await r.json())["type"] == OVERLOADED_TYPE  # capacity, not an outage
        await w.close()
