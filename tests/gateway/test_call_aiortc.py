"""Two real WebRTC peers (aiortc) meet through the gateway's signalling: a data-channel
message crosses, and the fingerprints on the ledger are the DTLS certificates the peers
actually used."""

from __future__ import annotations

import asyncio
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from gateway.config import Config
from tests.gateway.idclient import call
from tests.gateway.test_sessions import Call


def _local_fingerprints(pc: RTCPeerConnection) -> set[tuple[str, str]]:
    dtls = pc.sctp.transport
    return {(f.algorithm, f.value.upper()) for f in dtls.getLocalParameters().fingerprints}


async def _next(ws: Any, kind: str) -> dict[str, Any]:
    while True:
        msg: dict[str, Any] = await ws.receive_json(timeout=10)
        if msg["type"] == kind:
            return msg


async def test_aiortc_peers_connect_through_the_gateway(client: Any, config: Config) -> None:
    k = await Call(client).setup(config)
    sid = await k.schedule()
    prov_ws = await k.ws(sid, await k.ticket(sid, k.prov, k.prov_t))
    pat_ws = await k.ws(sid, await k.ticket(sid, k.pat, k.pat_t))
    await _next(prov_ws, "waiting")
    r = await client.post(f"/v1/sessions/{sid}/admit")  # without credentials: refused
    assert r.status == 401
    assert (await call(client, "POST", f"/v1/sessions/{sid}/admit", k.prov, k.prov_t)).status == 200
    await _next(pat_ws, "admitted")

    patient = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    provider = RTCPeerConnection(RTCConfiguration(iceServers=[]))
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
        channel.send("hello through telegate")

    try:
        await patient.setLocalDescription(await patient.createOffer())
        await pat_ws.send_json({"type": "offer", "sdp": patient.localDescription.sdp})
        offer = await _next(prov_ws, "offer")
        await provider.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        await provider.setLocalDescription(await provider.createAnswer())
        await prov_ws.send_json({"type": "answer", "sdp": provider.localDescription.sdp})
        answer = await _next(pat_ws, "answer")
        await patient.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        assert await asyncio.wait_for(received, 30) == "hello through telegate"

        bound = await k.events("session.media_bound")
        on_ledger = {
            e["actor"]: {(f["algorithm"], f["value"]) for f in e["data"]["fingerprints"]}
            for e in bound
        }
        assert on_ledger[k.pat.sub] == _local_fingerprints(patient)
        assert on_ledger[k.prov.sub] == _local_fingerprints(provider)
        r = await call(client, "GET", f"/v1/sessions/{sid}", k.pat, k.pat_t)
        assert (await r.json())["state"] == "connected"
    finally:
        await patient.close()
        await provider.close()
        await pat_ws.close()
        await prov_ws.close()
