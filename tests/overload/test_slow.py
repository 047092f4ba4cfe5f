"""Slow and oversized clients on raw sockets: a head trickled byte by byte and a body that
never finishes are cut off, oversized heads are refused, a reader that never reads loses
its connection, and requests under way beyond the cap are shed with 503."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from gateway.errors import OVERLOADED_TYPE, PROBLEM_BASE
from gateway.limits import StallWatch, heads
from gateway.limits.slow import install_watch
from tests.overload.conftest import HANG, Serve


def _closed(s: socket.socket) -> bool:
    """Whether the peer has closed ``s`` (without waiting)."""
    s.setblocking(False)
    try:
        return s.recv(65536) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    finally:
        s.setblocking(True)


def _trickle_head(s: socket.socket) -> int:
    """Send a request head a byte at a time, never finishing it, until the server closes
    the connection; the bytes sent by then."""
    head = b"GET /ledger/checkpoint HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100_000
    end = time.monotonic() + HANG
    for n, byte in enumerate(head):
        if time.monotonic() > end:
            raise AssertionError("the server kept a trickling head open")
        try:
            s.send(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            return n
        if _closed(s):
            return n
        time.sleep(0.05)
    raise AssertionError("the whole head went through")


async def test_a_head_trickled_byte_by_byte_is_cut_off(serve: Serve) -> None:
    async with serve(header_timeout=0.5) as gw:
        with gw.raw() as s:
            sent = await asyncio.to_thread(_trickle_head, s)
        assert sent < 100_000
        # The gateway still serves everyone else.
        assert (await gw.get("/ledger/checkpoint")).status == 200


def _read_all(s: socket.socket) -> bytes:
    s.settimeout(HANG)
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out


def _trickle_body(s: socket.socket) -> bytes:
    """Start a 1,000-byte JSON body, then send a byte now and then; what the server says."""
    s.sendall(
        b"POST /v1/enroll HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n{"
    )
    end = time.monotonic() + HANG
    while not _closed_or_answered(s):
        if time.monotonic() > end:
            raise AssertionError("the server kept a trickling body open")
        try:
            s.send(b" ")
        except (BrokenPipeError, ConnectionResetError):
            break
        time.sleep(0.05)
    return _read_all(s)


def _closed_or_answered(s: socket.socket) -> bool:
    s.setblocking(False)
    try:
        s.recv(1, socket.MSG_PEEK)
        return True  # a byte of an answer, or b"": closed
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    finally:
        s.setblocking(True)


async def test_a_body_that_trickles_in_is_cut_off_with_408(serve: Serve) -> None:
    async with serve(body_timeout=0.5) as gw:
        with gw.raw() as s:
            answer = await asyncio.to_thread(_trickle_body, s)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 ")
        assert b"application/problem+json" in head
        assert json.loads(body)["type"].endswith("/request-timeout")
        # ... and the connection closed (_read_all returned: EOF).
        assert await gw.metric('telegate_limited_total{limit="body_timeout"}') == 1.0
        assert (await gw.get("/ledger/checkpoint")).status == 200


def _exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=HANG) as s:
        s.sendall(request)
        return _read_all(s)


def _problem(answer: bytes) -> tuple[int, str, dict[str, object]]:
    """(status, content type, body) of a raw HTTP/1.x answer."""
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split(" ", 2)[1]), headers["Content-Type"], json.loads(body)


async def test_oversized_header_field_and_request_line_are_refused(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    """aiohttp's parser refuses them before any handler: answered as problem+json (414 for
    the request line, 431 for header fields), echoing nothing, logged without a traceback."""
    secret = b"s3cr3t-token-bytes"
    big_field = (
        b"GET /ledger/checkpoint HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: "
        + secret
        + b"a" * 4096
        + b"\r\nConnection: close\r\n\r\n"
    )
    big_name = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-" + b"n" * 4096 + b": 1\r\n\r\n"
    big_line = (
        b"GET /ledger/"
        + secret
        + b"a" * 4096
        + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    absolute = b"GET http://127.0.0.1/" + b"a" * 4096 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    many = (
        b"GET /ledger/checkpoint HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + b"".join(b"X-%d: 1\r\n" % i for i in range(100))
        + b"Connection: close\r\n\r\n"
    )
    not_http = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"  # TLS to HTTP
    cases = [
        (big_field, 431, "header-fields-too-large"),
        (big_name, 431, "header-fields-too-large"),
        (many, 431, "header-fields-too-large"),
        (big_line, 414, "uri-too-long"),
        (absolute, 414, "uri-too-long"),
        (not_http, 400, "malformed-request"),
    ]
    caplog.set_level(logging.DEBUG)
    heads._THROTTLE.last = float("-inf")  # another test's line in the last second
    async with serve(max_header_size=2048) as gw:
        for request, want, slug in cases:
            answer = await asyncio.to_thread(_exchange, gw.port, request)
            status, ctype, body = _problem(answer)
            assert status == want, answer[:300]
            assert ctype.startswith("application/problem+json")
            assert body == {"type": PROBLEM_BASE + slug, "title": body["title"], "status": want}
            assert secret not in answer  # nothing of the request is echoed
        # Within the limits: served.
        ok = b"GET /ledger/checkpoint HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        assert (await asyncio.to_thread(_exchange, gw.port, ok)).startswith(b"HTTP/1.1 200 ")
    refused = [r for r in caplog.records if r.getMessage() == "refused a malformed request head"]
    assert refused  # logged (at most one line a second), ...
    for record in caplog.records:  # ... and nowhere with a traceback or the bytes
        assert record.exc_info is None and not record.exc_text, record.getMessage()
        assert "Traceback" not in record.getMessage()
        assert "s3cr3t" not in record.getMessage() + str(getattr(record, "fields", ""))


def _hold_body(port: int) -> socket.socket:
    """A request whose body stays unfinished: its handler waits for it, under way."""
    s = socket.create_connection(("127.0.0.1", port), timeout=HANG)
    s.sendall(
        b"POST /v1/enroll HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 2\r\n\r\n{"
    )
    return s


async def test_requests_beyond_the_cap_are_shed_with_503(serve: Serve) -> None:
    async with serve(max_pending=2) as gw:
        held = [await asyncio.to_thread(_hold_body, gw.port) for _ in range(2)]
        try:
            await gw.until_metric("telegate_requests_pending", 2.0)
            r = await gw.get("/ledger/checkpoint")
            assert r.status == 503
            assert r.content_type == "application/problem+json"
            assert int(r.headers["Retry-After"]) >= 1
            assert (await r.json())["type"] == OVERLOADED_TYPE
            # Asking for an upgrade is no way around the cap.
            upgrade = {"Upgrade": "websocket", "Connection": "Upgrade"}
            assert (await gw.get("/ledger/checkpoint", headers=upgrade)).status == 503
            # Probes are never shed.
            assert (await gw.get("/healthz")).status == 200
            assert (await gw.get("/readyz")).status == 200
            # A request that ends frees its place.
            held[0].sendall(b"}")
            answer = await asyncio.to_thread(_read_head, held[0])
            assert answer.startswith(b"HTTP/1.1 400 ")  # {} is no enrollment
            await gw.until_metric("telegate_requests_pending", 1.0)
            assert (await gw.get("/ledger/checkpoint")).status == 200
        finally:
            for s in held:
                s.close()


def _read_head(s: socket.socket) -> bytes:
    s.settimeout(HANG)
    out = b""
    while b"\r\n\r\n" not in out:
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
    return out


# -- a reader that never reads ----------------------------------------------------------------
async def test_a_reader_that_never_reads_is_cut_off() -> None:
    cut = asyncio.Event()
    seen: list[StallWatch] = []

    async def flood(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        chunk = b"x" * 65536
        try:
            for _ in range(4096):  # 256 MiB: far more than any socket buffers
                await resp.write(chunk)
        except (ConnectionError, aiohttp.ClientConnectionResetError):
            cut.set()
            raise
        return resp

    app = web.Application()
    app.router.add_get("/flood", flood)
    install_watch(app, 0.5)

    async def keep(app: web.Application) -> AsyncIterator[None]:
        from gateway.limits.slow import STALL_WATCH

        seen.append(app[STALL_WATCH])
        yield

    app.cleanup_ctx.append(keep)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        s.connect(("127.0.0.1", port))
        s.sendall(b"GET /flood HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        async with asyncio.timeout(HANG):
            await cut.wait()
        assert len(seen[0]) == 0  # the cut connection is no longer watched
    finally:
        s.close()
        await runner.cleanup()


async def test_a_slow_but_steady_reader_keeps_its_connection() -> None:
    """The watch cuts no progress, not slowness: a buffer that shrinks is moving."""

    class Transport:
        def __init__(self) -> None:
            self.size = 100
            self.aborted = False

        def is_closing(self) -> bool:
            return self.aborted

        def get_write_buffer_size(self) -> int:
            return self.size

        def abort(self) -> None:
            self.aborted = True

    now = [0.0]
    watch = StallWatch(10.0, lambda: now[0])
    t = Transport()
    watch.watch(t)  # type: ignore[arg-type]
    for _ in range(50):
        now[0] += 5.0
        t.size -= 1
        watch.sweep()
    assert not t.aborted
    for _ in range(3):  # then it stops reading
        now[0] += 5.0
        watch.sweep()
    assert t.aborted


async def test_requests_are_shed_while_the_loop_runs_late(serve: Serve) -> None:
    """A gateway out of CPU queues requests where no count sees them; its loop's lateness
    shows it. Blocking the loop (this test's, which the gateway shares) for a while is
    what a gateway that lacks CPU looks like to its loop."""
    async with serve(shed_lag_ms=100) as gw:
        assert (await gw.get("/ledger/checkpoint")).status == 200
        time.sleep(2.0)  # noqa: ASYNC251 - the point: the loop is held up
        r = await gw.get("/ledger/checkpoint")
        assert r.status == 503 and int(r.headers["Retry-After"]) >= 1
        assert (await r.json())["type"] == OVERLOADED_TYPE
        assert await gw.metric('telegate_limited_total{limit="lag"}') == 1.0
        # Probes are not shed; and once the loop keeps time again, requests are served.
        assert (await gw.get("/healthz")).status == 200
        async with asyncio.timeout(HANG):
            while True:
                if (await gw.get("/ledger/checkpoint")).status == 200:
                    break
                await asyncio.sleep(0.05)
