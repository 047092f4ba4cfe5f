"""problem_middleware: errors become problem+json, except where the response has begun."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.errors import BadRequest, problem_middleware, track_streams

SECRET = "pat:0123 Ada Lovelace"  # what an exception message might carry: never logged


async def _streamed(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await resp.prepare(request)
    await resp.write(b'{"row": 1}\n')
    if request.query.get("kind") == "gateway":
        raise BadRequest(SECRET)
    raise RuntimeError(SECRET)


async def _before(request: web.Request) -> web.StreamResponse:
    raise RuntimeError(SECRET)


@pytest.fixture
async def client(aiohttp_client: Any) -> Any:
    app = web.Application(middlewares=[problem_middleware])
    track_streams(app)
    app.router.add_get("/stream", _streamed)
    app.router.add_get("/before", _before)
    return await aiohttp_client(app)


@pytest.mark.parametrize("kind", ["bug", "gateway"])
async def test_a_streamed_response_that_fails_midway_is_cut(
    client: Any, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    """The 200 and part of the body are sent: no problem+json can follow. The connection is
    cut, so the client sees a failed transfer (never a complete-looking one, nor a wait for
    the rest), and the log names the route and the error's type, not its message."""
    caplog.set_level(logging.DEBUG)
    r = await client.get(f"/stream?kind={kind}")
    assert r.status == 200
    with pytest.raises(aiohttp.ClientPayloadError):
        await asyncio.wait_for(r.read(), 5)
    logged = [rec for rec in caplog.records if rec.name == "telegate.errors"]
    assert logged and all(
        SECRET not in rec.getMessage() and not rec.exc_info and SECRET not in str(rec.__dict__)
        for rec in logged
    )
    # The server is fine: the next request on a new connection is answered.
    assert (await client.get("/before")).status == 500


async def test_an_error_before_the_response_begins_is_still_a_problem(client: Any) -> None:
    r = await client.get("/before")
    assert r.status == 500 and r.content_type == "application/problem+json"
    assert SECRET not in await r.text()
