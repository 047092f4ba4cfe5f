"""Two real WebRTC peers (aiortc) that negotiate through the gateway's signalling sockets,
wherever those sockets are: a data-channel message crossing is media flowing (ICE and DTLS
connected)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from .conftest import next_of


def local_fingerprints(pc: RTCPeerConnection) -> set[tuple[str, str]]:
    dtls = pc.sctp.transport
    return {(f.algorithm, f.value.upper()) for f in dtls.getLocalParameters().fingerprints}


class Peers:
    def __init__(self) -> None:
        self.patient = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.provider = RTCPeerConnection(RTCConfiguration(iceServers=[]))

    async def connect(self, pat_ws: Any, prov_ws: Any, text: str, restart: bool = False) -> str:
        """The patient offers, the provider answers; the text the provider receives on the
        patient's data channel."""
        received: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        channel = self.patient.createDataChannel("vitals")

        @self.provider.on("datachannel")
        def on_channel(dc: Any) -> None:
            @dc.on("message")
            def on_message(m: str) -> None:
                if not received.done():
                    received.set_result(m)

        @channel.on("open")
        def on_open() -> None:
            channel.send(text)

        await self.patient.setLocalDescription(await self.patient.createOffer())
        offer_msg = {"type": "offer", "sdp": self.patient.localDescription.sdp}
        await pat_ws.send_json({**offer_msg, "restart": True} if restart else offer_msg)
        offer = await next_of(prov_ws, "offer")
        assert offer["from"] == "patient" and offer.get("restart", False) == restart
        await self.provider.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        await self.provider.setLocalDescription(await self.provider.createAnswer())
        await prov_ws.send_json({"type": "answer", "sdp": self.provider.localDescription.sdp})
        answer = await next_of(pat_ws, "answer")
        await self.patient.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        return await asyncio.wait_for(received, 30)

    async def close(self) -> None:
        await self.patient.close()
        await self.provider.close()
