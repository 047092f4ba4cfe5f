"""Every answer the gateway's server gives is problem+json, including the ones aiohttp
gives on its own (a route or method it does not know, an Expect it does not meet, a body it
cannot decode), and an open WebSocket that fails is closed with a code, never cut."""

from __future__ import annotations

import asyncio
import gzip
import logging
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from gateway.errors import PROBLEM_BASE, problem_middleware, track_streams
from gateway.limits import Runner
from tests.overload.conftest import HANG, Serve
from tests.overload.test_slow import _problem, _read_all

H = b"Host: 127.0.0.1\r\n"


def _exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=HANG) as s:
        s.sendall(request)
        return _read_all(s)  # to EOF: each of these answers closes its connection


async def test_aiohttps_own_answers_are_problem_json(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    bad_gzip = b"not gzip at all"
    close = b"Connection: close\r\n"
    cases = [
        (b"GET /no/such/route HTTP/1.1\r\n" + H + close + b"\r\n", 404, "not-found"),
        (
            b"DELETE /ledger/checkpoint HTTP/1.1\r\n" + H + close + b"\r\n",
            405,
            "method-not-allowed",
        ),
        (
            b"POST /v1/enroll HTTP/1.1\r\n" + H + b"Expect: 200-ok\r\nContent-Length: 2\r\n\r\n{}",
            417,
            "expectation-failed",
        ),
        (
            b"POST /v1/enroll HTTP/1.1\r\n" + H + b"Content-Type: application/json\r\n"
            b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(bad_gzip) + bad_gzip,
            400,
            "malformed-body",
        ),
        (
            b"POST /v1/enroll HTTP/1.1\r\n" + H + b"Content-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
            400,
            "malformed-request",
        ),
    ]
    caplog.set_level(logging.DEBUG)
    async with serve() as gw:
        for request, want, slug in cases:
            answer = await asyncio.to_thread(_exchange, gw.port, request)
            status, ctype, body = _problem(answer)
            assert (status, body["type"]) == (want, PROBLEM_BASE + slug), answer[:300]
            assert ctype.startswith("application/problem+json")
            if want == 405:
                assert b"\r\nAllow: " in answer.split(b"\r\n\r\n")[0]
        # A body that decodes is still served on the same server.
        ok = gzip.compress(b"{}")
        answer = await asyncio.to_thread(
            _exchange,
            gw.port,
            b"POST /v1/enroll HTTP/1.1\r\n" + H + close + b"Content-Type: application/json\r\n"
            b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(ok) + ok,
        )
        assert _problem(answer)[0] == 400  # {} is no enrollment: the handler answered it
        assert _problem(answer)[2]["type"] != PROBLEM_BASE + "malformed-body"
    for record in caplog.records:  # none of it is a crash
        assert record.exc_info is None and record.levelno < logging.ERROR, record.getMessage()


@pytest.fixture
async def failing_socket() -> AsyncIterator[str]:
    """An app behind the problem middleware whose WebSocket handler fails once open."""

    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.receive()
        raise RuntimeError("a bug, after the socket opened")

    app = web.Application(middlewares=[problem_middleware])
    track_streams(app)
    app.router.add_get("/ws", handler)
    runner = Runner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/ws"
    finally:
        await runner.cleanup()


async def test_a_websocket_that_fails_is_closed_with_1011_not_cut(failing_socket: str) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(failing_socket) as ws:
        await ws.send_str("go")
        msg = await ws.receive(timeout=HANG)
        assert msg.type == aiohttp.WSMsgType.CLOSE, msg
        assert ws.close_code == 1011 and msg.extra == "internal error"
