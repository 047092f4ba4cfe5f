"""Revocation ends live access at once: the signalling sockets and live vitals streams that
depended on a revoked subject, attestation or consent, on a break-the-glass access or on the
attestation a socket was opened with, close when it ends, and the ledger says so.

Each test holds an admitted call (both sockets open, vitals streaming where consent allows)
and ends one thing: the provider's socket must close (``bye`` from the gateway first, then
the close code), receive no further vitals, relay nothing more, and a
``session.socket_closed`` event must name it. Time moves by the injected clock.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import WSMsgType

from gateway.app import create_app
from gateway.config import Config
from gateway.federation.recheck import revoker
from gateway.federation.state import Link
from gateway.federation.verify import StatusRef
from tests.gateway.idclient import call
from tests.gateway.test_sessions import FP_PAT, sdp
from tests.gateway.vitals.world import World, batch, hr

BREAK_GLASS_MINUTES = 5


class Clock:
    def __init__(self) -> None:
        self.t = float(int(time.time()))

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def config(tmp_path: Path) -> Config:
    # Tokens outlive the break-the-glass window, so that moving the clock past the window
    # ends the emergency access and not the tokens.
    return Config(
        data_dir=tmp_path / "data",
        log_origin="test.example/telegate/log",
        token_lifetime=3600,
        break_glass_minutes=BREAK_GLASS_MINUTES,
    )


@pytest.fixture
async def w(aiohttp_client: Any, config: Config) -> World:
    clock = Clock()
    world = World(await aiohttp_client(create_app(config, clock=clock)))
    world.now = clock  # type: ignore[method-assign]
    await world.setup(config)
    for h in (world.adm, world.prov, world.pat, world.other, world.dev, world.other_dev):
        h.clock = clock
    world.clock = clock  # type: ignore[attr-defined]
    return world


def clock_of(w: World) -> Clock:
    c: Clock = w.clock  # type: ignore[attr-defined]
    return c


def claims(token: str) -> dict[str, Any]:
    out: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return out


async def until_closed(ws: Any, code: int) -> list[dict[str, Any]]:
    """The messages a socket gets before it is closed, and that it is closed with ``code``."""
    got = []
    while True:
        msg = await ws.receive(timeout=5)
        if msg.type != WSMsgType.TEXT:
            break
        got.append(json.loads(msg.data))
    # The code of the server's close frame (the server may drop the connection before the
    # client's answering close frame, so the client's own close_code may read 1006).
    assert msg.type == WSMsgType.CLOSE and msg.data == code, (msg, got)
    assert ws.closed
    return got


async def stream_once(w: World, prov_ws: Any, batch_id: str) -> None:
    """A reading reaches the provider: the stream is live."""
    assert (await w.send(batch([hr(70, w.now() - 1)], batch_id))).status == 201
    msg = await prov_ws.receive_json(timeout=5)
    assert (msg["type"], msg["batch_id"]) == ("vitals", batch_id)


async def assert_cut_off(w: World, sid: str, pat_ws: Any) -> None:
    """Nothing reaches the provider any more: a relay from the patient finds nobody."""
    assert (await w.send(batch([hr(71, w.now())]))).status == 201  # stored, not streamed
    await pat_ws.send_json({"type": "offer", "sdp": sdp(FP_PAT)})
    while (reply := await pat_ws.receive_json(timeout=5))["type"] == "bye":
        pass
    assert reply == {"type": "error", "error": "the other party is not connected"}


async def closed_events(w: World, sid: str, wait_for: int = 0) -> list[dict[str, Any]]:
    """The session's ``session.socket_closed`` events; with ``wait_for``, up to 5 s for
    that many (a close by a deadline is recorded just after the socket closes, with no
    request to wait on)."""
    deadline = time.monotonic() + 5
    while True:
        found = [e for e in await w.events("session.socket_closed") if e["session"] == sid]
        if len(found) >= wait_for or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.05)


async def revoke(w: World, body: dict[str, Any]) -> None:
    body = {**body, "reason": "key_compromise"}
    r = await call(w.client, "POST", "/v1/revocations", w.adm, w.adm_t, json=body)
    assert r.status == 200, await r.text()


@pytest.fixture
async def consented(w: World) -> dict[str, Any]:
    return dict(await w.grant(["call", "vitals.stream"]))


async def test_revoking_the_subject_closes_its_socket_at_once(
    w: World, consented: dict[str, Any]
) -> None:
    sid, prov_ws, pat_ws = await w.admitted_call()
    await stream_once(w, prov_ws, "before")
    await revoke(w, {"sub": w.prov.sub})
    got = await until_closed(prov_ws, 4403)
    assert got == [{"type": "bye", "from": "gateway", "state": "admitted", "reason": "revoked"}]
    # The patient's page is told, so that it hangs up the media (which the gateway cannot).
    bye = await pat_ws.receive_json(timeout=5)
    assert (bye["type"], bye["from"], bye["reason"]) == ("bye", "provider", "revoked")
    await assert_cut_off(w, sid, pat_ws)
    [ev] = await closed_events(w, sid)
    assert ev["actor"] == "gw:self" and ev["subject"] == w.pat.sub
    assert ev["data"] == {
        "closed": "revoked",
        "party": "provider",
        "holder": w.prov.sub,
        "jti": claims(w.prov_t)["jti"],
        "code": 4403,
        "target": "subject",
        "reason": "key_compromise",
    }
    await pat_ws.close()


async def test_revoking_the_token_closes_the_sockets_opened_with_it(
    w: World, consented: dict[str, Any]
) -> None:
    sid, prov_ws, pat_ws = await w.admitted_call()
    await stream_once(w, prov_ws, "before")
    jti = claims(w.pat_t)["jti"]
    await revoke(w, {"jti": jti})
    # The patient's token was revoked: the patient's socket closes, the provider's stays.
    got = await until_closed(pat_ws, 4403)
    assert got[-1]["reason"] == "revoked"
    assert (await prov_ws.receive_json(timeout=5))["type"] == "bye"
    [ev] = await closed_events(w, sid)
    assert (ev["data"]["party"], ev["data"]["jti"], ev["data"]["target"]) == (
        "patient",
        jti,
        "token",
    )
    await prov_ws.close()


async def test_a_peer_revocation_closes_the_sockets_of_the_token_revoked_here(
    w: World, consented: dict[str, Any]
) -> None:
    """The sibling entry point: a peer organization revoked the token this gateway's was
    issued for (gateway/federation/recheck.py), and this gateway revokes its own."""
    sid, prov_ws, pat_ws = await w.admitted_call()
    c = claims(w.prov_t)
    idx = c["status"]["status_list"]["idx"]
    foreign = StatusRef("https://b.example/v1/status/1", 7)
    link = Link(c["jti"], w.prov.sub, idx, c["exp"], "b", "b-jti", foreign)
    await revoker(w.client.server.app)(link, "revoked_at_peer")
    await until_closed(prov_ws, 4403)
    await assert_cut_off(w, sid, pat_ws)
    [ev] = await closed_events(w, sid)
    assert ev["data"]["reason"] == "revoked_at_peer" and ev["data"]["jti"] == c["jti"]
    await pat_ws.close()


async def test_a_ticket_got_before_a_revocation_opens_nothing(w: World) -> None:
    await w.grant(["call"])
    r = await call(w.client, "POST", "/v1/sessions", w.prov, w.prov_t, json={"patient": w.pat.sub})
    sid = str((await r.json())["id"])
    by_token = await w.ticket(sid, w.prov, w.prov_t)
    pat_ticket = await w.ticket(sid, w.pat, w.pat_t)
    await revoke(w, {"jti": claims(w.prov_t)["jti"]})
    await revoke(w, {"sub": w.pat.sub})
    for ticket in (by_token, pat_ticket):
        with pytest.raises(aiohttp.WSServerHandshakeError) as e:
            await w.client.ws_connect(f"/v1/sessions/{sid}/ws?ticket={ticket}")
        assert e.value.status == 403
    refused = [
        e for e in await w.events("auth.refused") if e["data"]["route"] == "/v1/sessions/{id}/ws"
    ]
    assert [e["actor"] for e in refused] == [w.prov.sub, w.pat.sub]
    assert all(e["data"]["status"] == 403 for e in refused)


async def test_revoking_stream_consent_stops_vitals_and_call_consent_ends_the_call(
    w: World,
) -> None:
    call_consent = await w.grant(["call"])
    stream_consent = await w.grant(["vitals.stream"])
    sid, prov_ws, pat_ws = await w.admitted_call()
    await stream_once(w, prov_ws, "before")
    r = await call(w.client, "DELETE", f"/v1/consents/{stream_consent['id']}", w.pat, w.pat_t)
    assert r.status == 200
    assert await prov_ws.receive_json(timeout=5) == {"type": "vitals_stopped", "reason": "consent"}
    # The call goes on without the vitals: relaying still works.
    await w.send(batch([hr(72, w.now())]))
    await pat_ws.send_json({"type": "offer", "sdp": sdp(FP_PAT)})
    assert (await prov_ws.receive_json(timeout=5))["type"] == "offer"
    assert await closed_events(w, sid) == []

    r = await call(w.client, "DELETE", f"/v1/consents/{call_consent['id']}", w.pat, w.pat_t)
    assert r.status == 200
    got = await until_closed(prov_ws, 4403)
    assert got[-1]["reason"] == "consent"
    # The call is over (so that a fresh ticket cannot bring the provider back).
    got = await until_closed(pat_ws, 1000)
    assert got[-1] == {"type": "bye", "from": "gateway", "state": "ended", "reason": "consent"}
    [ev] = await closed_events(w, sid)
    assert ev["data"]["closed"] == "consent" and ev["data"]["ref"] == call_consent["id"]
    ended = [e for e in await w.events("session.ended") if e["session"] == sid]
    assert [(e["actor"], e["data"]["closed"]) for e in ended] == [("gw:self", "consent")]
    r = await call(w.client, "POST", f"/v1/sessions/{sid}/ticket", w.prov, w.prov_t)
    assert r.status == 409


async def test_a_break_the_glass_stream_stops_when_the_emergency_ends(w: World) -> None:
    r = await call(
        w.client,
        "POST",
        "/v1/emergency-access",
        w.prov,
        w.prov_t,
        json={"patient": w.pat.sub, "reason": "unresponsive at home, family called"},
    )
    assert r.status == 201, await r.text()
    sid, prov_ws, pat_ws = await w.admitted_call()  # scheduled under break-the-glass
    await stream_once(w, prov_ws, "during")
    clock_of(w).t += BREAK_GLASS_MINUTES * 60
    # No reading is sent: the stream stops at the end of the window by itself.
    assert await prov_ws.receive_json(timeout=5) == {"type": "vitals_stopped", "reason": "expired"}
    got = await until_closed(prov_ws, 4403)
    assert got[-1]["reason"] == "emergency_ended"
    refused = [e for e in await w.events("consent.refused") if e["session"] == sid]
    assert [e["data"]["ended"] for e in refused] == ["expired"]
    [ev] = await closed_events(w, sid, wait_for=1)
    assert (ev["data"]["closed"], ev["data"]["basis"]) == ("emergency_ended", "break_the_glass")
    await pat_ws.close()


async def test_a_socket_closes_when_its_attestation_expires(
    w: World, consented: dict[str, Any], config: Config
) -> None:
    sid, prov_ws, pat_ws = await w.admitted_call()
    clock_of(w).t += config.token_lifetime + config.clock_skew
    # Closed for the page to reconnect with a fresh attestation; routine, not recorded.
    assert await until_closed(prov_ws, 4401) == []
    await until_closed(pat_ws, 4401)
    assert await closed_events(w, sid) == []


async def test_a_call_that_is_over_closes_its_sockets(w: World) -> None:
    await w.grant(["call"])
    sid, prov_ws, pat_ws = await w.admitted_call()
    r = await call(w.client, "POST", f"/v1/sessions/{sid}/end", w.pat, w.pat_t)
    assert r.status == 200
    for ws in (prov_ws, pat_ws):
        [bye] = await until_closed(ws, 1000)
        assert (bye["type"], bye["state"]) == ("bye", "ended")


async def test_a_reconnect_closes_the_socket_it_replaces(w: World) -> None:
    await w.grant(["call"])
    sid, prov_ws, pat_ws = await w.admitted_call()
    again = await w.ws(sid, w.prov, w.prov_t)
    await until_closed(prov_ws, 4409)
    await pat_ws.send_json({"type": "offer", "sdp": sdp(FP_PAT)})
    assert (await again.receive_json(timeout=5))["type"] == "offer"
    await again.close()
    await pat_ws.close()


async def test_a_no_show_closes_the_waiting_room_sockets(w: World) -> None:
    await w.grant(["call"])
    r = await call(w.client, "POST", "/v1/sessions", w.prov, w.prov_t, json={"patient": w.pat.sub})
    sid = str((await r.json())["id"])
    prov_ws = await w.ws(sid, w.prov, w.prov_t)
    pat_ws = await w.ws(sid, w.pat, w.pat_t)
    assert (await prov_ws.receive_json(timeout=5))["type"] == "waiting"
    r = await call(w.client, "POST", f"/v1/sessions/{sid}/no-show", w.prov, w.prov_t)
    assert r.status == 200, await r.text()
    [bye] = await until_closed(pat_ws, 1000)
    assert (bye["type"], bye["state"]) == ("bye", "no_show")
    assert await until_closed(prov_ws, 1000) == []


async def test_revoking_call_consent_cancels_the_calls_the_provider_scheduled_on_it(
    w: World,
) -> None:
    """A call the provider scheduled on the patient's ``call`` consent does not wait for the
    provider to connect before it ends with the consent: it is cancelled at once (by
    ``gw:self``, ``closed: consent``) and a patient waiting in the room is told. A call
    the patient asked for stands: it needed no consent."""
    consent = await w.grant(["call"])
    r = await call(w.client, "POST", "/v1/sessions", w.prov, w.prov_t, json={"patient": w.pat.sub})
    scheduled = str((await r.json())["id"])
    r = await call(w.client, "POST", "/v1/sessions", w.prov, w.prov_t, json={"patient": w.pat.sub})
    waiting = str((await r.json())["id"])
    r = await call(w.client, "POST", "/v1/sessions", w.pat, w.pat_t, json={"provider": w.prov.sub})
    asked = str((await r.json())["id"])
    pat_ws = await w.ws(waiting, w.pat, w.pat_t)
    r = await call(w.client, "DELETE", f"/v1/consents/{consent['id']}", w.pat, w.pat_t)
    assert r.status == 200
    got = await until_closed(pat_ws, 1000)
    assert got[-1] == {"type": "bye", "from": "gateway", "state": "cancelled", "reason": "consent"}
    cancelled = await w.events("session.cancelled")
    assert sorted((e["session"], e["actor"], e["data"]["closed"]) for e in cancelled) == sorted(
        [(scheduled, "gw:self", "consent"), (waiting, "gw:self", "consent")]
    )
    for sid, state in ((scheduled, "cancelled"), (waiting, "cancelled"), (asked, "scheduled")):
        r = await call(w.client, "GET", f"/v1/sessions/{sid}", w.pat, w.pat_t)
        assert (await r.json())["state"] == state, sid
