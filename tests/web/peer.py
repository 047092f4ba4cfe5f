"""A provider that is not a browser: an aiortc peer driving the gateway's signalling from
Python, on its own thread and event loop (Playwright's sync API owns the test's thread).

It admits the patient when they arrive, answers the browser's offer with a video track,
takes trickled ICE candidates, and counts the frames the browser sends it."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack, VideoStreamTrack
from aiortc.sdp import candidate_from_sdp

from gateway.client import Credentials, Session
from gateway.sessions.signalling import fingerprints


class AiortcProvider:
    def __init__(self, creds: Credentials, session_id: str) -> None:
        self.api = Session(creds)
        self.sid = session_id
        self.loop = asyncio.new_event_loop()
        self.pc: RTCPeerConnection | None = None
        self.frames_in = 0
        self.offer_fingerprints: list[dict[str, str]] = []
        self.local_fingerprints: set[tuple[str, str]] = set()
        self.messages: list[str] = []
        self.admitted = threading.Event()
        self.connected = threading.Event()
        self.receiving = threading.Event()
        self.errors: list[str] = []
        self._stop: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._thread = threading.Thread(target=self._run, name="aiortc-provider", daemon=True)

    # -- the test's side --------------------------------------------------------------------

    def start(self) -> AiortcProvider:
        self._thread.start()
        return self

    def end_call(self) -> None:
        """End the call through the API, as the provider's page would."""
        self.api.request("POST", f"/v1/sessions/{self.sid}/end")

    def stop(self) -> None:
        # The peer's loop ends by itself once the gateway closes its socket (after a bye).
        if self._stop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(20)
        assert not self._thread.is_alive(), "the aiortc peer did not stop"

    # -- its own thread ------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self.loop.run_until_complete(self._main())
        except Exception as e:  # reported to the test, which asserts there were none
            self.errors.append(repr(e))
        finally:
            self.loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        ticket = await asyncio.to_thread(
            self.api.request, "POST", f"/v1/sessions/{self.sid}/ticket"
        )
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(self.api.server + ticket["ws"])
            reader = asyncio.create_task(self._read(ws))
            stopping = asyncio.create_task(self._stop.wait())
            try:
                await asyncio.wait({reader, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if reader.done():
                    reader.result()  # raise what went wrong
            finally:
                reader.cancel()
                stopping.cancel()
                if self.pc is not None:
                    await self.pc.close()
                await ws.close()

    async def _read(self, ws: Any) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = msg.json()
            kind = data.get("type")
            self.messages.append(kind)
            if (kind == "hello" and data["state"] == "waiting") or kind == "waiting":
                await self._admit()
            elif kind == "offer":
                await ws.send_json({"type": "answer", "sdp": await self._answer(data["sdp"])})
            elif kind == "candidate" and self.pc is not None and data.get("candidate"):
                cand = candidate_from_sdp(data["candidate"].split(":", 1)[1])
                cand.sdpMid = data.get("sdpMid")
                cand.sdpMLineIndex = data.get("sdpMLineIndex")
                await self.pc.addIceCandidate(cand)
            elif kind == "error":
                self.errors.append(f"gateway said: {data.get('error')}")

    async def _admit(self) -> None:
        if self.admitted.is_set():
            return
        await asyncio.to_thread(self.api.request, "POST", f"/v1/sessions/{self.sid}/admit")
        self.admitted.set()

    async def _answer(self, sdp: str) -> str:
        self.offer_fingerprints = fingerprints(sdp)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc = pc

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video":
                task = asyncio.ensure_future(self._count(track))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc.connectionState == "connected":
                self.connected.set()

        await pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
        pc.addTrack(VideoStreamTrack())  # aiortc's own test pattern: green frames
        await pc.setLocalDescription(await pc.createAnswer())
        for t in pc.getTransceivers():
            dtls = t.sender.transport
            for f in dtls.getLocalParameters().fingerprints:
                self.local_fingerprints.add((f.algorithm, f.value.upper()))
        return pc.localDescription.sdp

    async def _count(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                await track.recv()
                self.frames_in += 1
                if self.frames_in >= 10:
                    self.receiving.set()
        except MediaStreamError:
            return
