"""The store down under a live call: an offer whose fingerprints cannot be recorded (the
ledger's SQLite file locked by another process past the busy timeout) gets an ``error``
message with a retry hint on its socket, then a 1013 close (try again later), never a
silent close; once the lock is gone the party reconnects and the offer is relayed."""

from __future__ import annotations

import aiohttp

from gateway.config import Config
from gateway.errors import OUTAGE_RETRY
from gateway.sessions.signalling import CLOSE_UNAVAILABLE
from tests.faults.conftest import ORIGIN, Gateway, Remote, remote
from tests.faults.test_store_faults import hold_lock
from tests.gateway.idclient import call
from tests.gateway.test_sessions import FP_PAT, Call, sdp

BUSY = 5.0  # PRAGMA busy_timeout of the embedded stores, seconds
HELD = BUSY + 3.0


async def _socket(r: Remote, k: Call, sid: str, who: str) -> aiohttp.ClientWebSocketResponse:
    holder, token = (k.pat, k.pat_t) if who == "patient" else (k.prov, k.prov_t)
    ticket = await k.ticket(sid, holder, token)
    ws = await r.session.ws_connect(f"{r.base}/v1/sessions/{sid}/ws?ticket={ticket}")
    assert (await ws.receive_json(timeout=10))["type"] == "hello"
    return ws


async def _until(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, object]:
    while True:
        msg = await ws.receive_json(timeout=20)
        if msg["type"] == kind:
            return dict(msg)


async def test_an_offer_while_the_ledger_is_locked_is_told_to_retry(gateway: Gateway) -> None:
    gw = gateway
    async with remote(gw) as r:
        k = await Call(r).setup(Config(data_dir=gw.data_dir, log_origin=ORIGIN))
        sid = await k.schedule()
        prov = await _socket(r, k, sid, "provider")
        pat = await _socket(r, k, sid, "patient")
        await _until(prov, "waiting")
        resp = await call(r, "POST", f"/v1/sessions/{sid}/admit", k.prov, k.prov_t)
        assert resp.status == 200, await resp.text()
        await _until(pat, "admitted")

        holder = hold_lock(gw.data_dir / "ledger.db", HELD)
        try:
            await pat.send_json({"type": "offer", "sdp": sdp(FP_PAT)})
            told = await pat.receive(timeout=3 * BUSY)
            closed = await pat.receive(timeout=10)
        finally:
            holder.communicate(timeout=30)
        assert told.type == aiohttp.WSMsgType.TEXT, told
        assert told.json() == {
            "type": "error",
            "error": "store unavailable",
            "retry_after": OUTAGE_RETRY,
        }
        assert closed.type == aiohttp.WSMsgType.CLOSE
        assert pat.close_code == CLOSE_UNAVAILABLE == 1013
        assert closed.extra == "store unavailable"

        # The lock released: the patient reconnects, and the same offer goes through.
        pat = await _socket(r, k, sid, "patient")
        await pat.send_json({"type": "offer", "sdp": sdp(FP_PAT)})
        relayed = await _until(prov, "offer")
        assert relayed["from"] == "patient"
        await pat.close()
        await prov.close()
