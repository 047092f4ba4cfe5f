"""``telegate serve`` hands the limits to aiohttp: the slow-head deadline and the header
sizes hold in the real command, not only in an AppRunner built by a test."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from gateway.errors import PROBLEM_BASE
from tests.gateway.conftest import LiveGateway
from tests.overload.conftest import HANG
from tests.overload.test_slow import _problem, _read_all, _trickle_head


async def test_telegate_serve_applies_the_server_limits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TELEGATE_HEADER_TIMEOUT", "0.5")
    monkeypatch.setenv("TELEGATE_MAX_HEADER_SIZE", "2048")
    gw = await asyncio.to_thread(LiveGateway, tmp_path / "data")
    try:

        def trickle() -> int:
            with socket.create_connection(("127.0.0.1", gw.port), timeout=HANG) as s:
                return _trickle_head(s)

        def oversized() -> bytes:
            with socket.create_connection(("127.0.0.1", gw.port), timeout=HANG) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 4096 + b"\r\n\r\n")
                return _read_all(s)

        assert await asyncio.to_thread(trickle) < 100_000
        answer = await asyncio.to_thread(oversized)
        status, ctype, body = _problem(answer)
        assert status == 431 and ctype.startswith("application/problem+json")
        assert body["type"] == PROBLEM_BASE + "header-fields-too-large"
    finally:
        assert await asyncio.to_thread(gw.stop) == 0
    # The real command's log: the refusal in one JSON line, no traceback.
    log = gw.log_path.read_text()
    assert "refused a malformed request head" in log
    assert "Traceback" not in log and "Error handling request" not in log
