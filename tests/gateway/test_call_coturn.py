"""The same call forced through a real coturn (Debian's turnserver, started here on
loopback with use-auth-secret and the gateway's secret, relay-only ICE): it connects with
the gateway's TURN credentials and does not with forged ones."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.rtcconfiguration import RTCIceTransportPolicy

from gateway.config import Config
from tests.conftest import need
from tests.gateway.idclient import call
from tests.gateway.test_sessions import Call


def _port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def coturn(config: Config, tmp_path: Path) -> Iterator[int]:
    binary = shutil.which("turnserver")
    need(binary is not None, "coturn (apt-get install coturn)")
    # The gateway writes the secret on start; the server itself starts in the test.
    yield _port()


def start_turnserver(secret: bytes, port: int, log: Path) -> subprocess.Popen[bytes]:
    binary = shutil.which("turnserver")
    assert binary is not None
    args = [
        binary,
        "-n",
        "--no-cli",
        "--no-tls",
        "--no-dtls",
        "--listening-ip=127.0.0.1",
        "--relay-ip=127.0.0.1",
        f"--listening-port={port}",
        "--min-port=49200",
        "--max-port=49400",
        "--use-auth-secret",
        f"--static-auth-secret={secret.decode()}",
        "--realm=telegate.test",
        "--allow-loopback-peers",
        "--no-multicast-peers",
        "--fingerprint",
        f"--log-file={log}",
        "--simple-log",
        "--no-stdout-log",
    ]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_until_answering(port: int, server: subprocess.Popen[bytes], log: Path) -> None:
    """Poll with STUN Binding requests (RFC 8489) until turnserver answers; bounded."""
    import os
    import time

    request = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + os.urandom(12)
    deadline = time.monotonic() + 15
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise AssertionError(f"turnserver exited: {log.read_text()[-2000:]}")
            s.sendto(request, ("127.0.0.1", port))
            try:
                data = s.recv(2048)
            except TimeoutError:
                continue
            if data[:2] == b"\x01\x01" and data[8:20] == request[8:20]:
                return
    raise AssertionError("turnserver did not answer STUN within 15 s")


async def _next(ws: Any, kind: str) -> dict[str, Any]:
    while True:
        msg: dict[str, Any] = await ws.receive_json(timeout=10)
        if msg["type"] == kind:
            return msg


async def _relay_call(k: Call, sid: str, ice: list[RTCIceServer]) -> bool:
    prov_ws = await k.ws(sid, await k.ticket(sid, k.prov, k.prov_t))
    pat_ws = await k.ws(sid, await k.ticket(sid, k.pat, k.pat_t))
    policy = RTCIceTransportPolicy.RELAY
    patient = RTCPeerConnection(RTCConfiguration(iceServers=ice, iceTransportPolicy=policy))
    provider = RTCPeerConnection(RTCConfiguration(iceServers=ice, iceTransportPolicy=policy))
    received: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    channel = patient.createDataChannel("vitals")

    @provider.on("datachannel")
    def on_channel(dc: Any) -> None:
        @dc.on("message")
        def on_message(m: str) -> None:
            if not received.done():
                received.set_result(m)

    @channel.on("open")
    def on_open() -> None:
        channel.send("relayed")

    try:
        await _next(prov_ws, "waiting")
        await call(k.c, "POST", f"/v1/sessions/{sid}/admit", k.prov, k.prov_t)
        await _next(pat_ws, "admitted")
        await patient.setLocalDescription(await patient.createOffer())
        sdp = patient.localDescription.sdp
        if "typ relay" not in sdp:
            return False  # no relay candidate: the TURN server refused the allocation
        await pat_ws.send_json({"type": "offer", "sdp": sdp})
        offer = await _next(prov_ws, "offer")
        await provider.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        await provider.setLocalDescription(await provider.createAnswer())
        await prov_ws.send_json({"type": "answer", "sdp": provider.localDescription.sdp})
        answer = await _next(pat_ws, "answer")
        await patient.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        try:
            return await asyncio.wait_for(received, 20) == "relayed"
        except TimeoutError:
            return False
    finally:
        await patient.close()
        await provider.close()
        await pat_ws.close()
        await prov_ws.close()


async def test_call_through_coturn_needs_valid_credentials(
    client: Any, config: Config, coturn: int, tmp_path: Path
) -> None:
    k = await Call(client).setup(config)
    secret = (config.key_dir / "turn.secret").read_text().strip().encode()
    server = start_turnserver(secret, coturn, tmp_path / "turn.log")
    try:
        await asyncio.to_thread(wait_until_answering, coturn, server, tmp_path / "turn.log")
        r = await call(client, "GET", "/v1/turn-credentials", k.pat, k.pat_t)
        creds = await r.json()
        url = f"turn:127.0.0.1:{coturn}?transport=udp"
        good = [RTCIceServer(urls=url, username=creds["username"], credential=creds["password"])]
        assert await _relay_call(k, await k.schedule(), good)
        forged = [RTCIceServer(urls=url, username=creds["username"], credential="Zm9yZ2Vk")]
        assert not await _relay_call(k, await k.schedule(), forged)
    finally:
        server.terminate()
        server.wait(10)
