"""Calls: scheduling with consent, the waiting room, admission, signalling relay between
admitted parties only, SDP fingerprints on the ledger, and lobby bypass attempts."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from gateway.appkeys import HUB
from gateway.config import Config
from tests.gateway.idclient import Holder, admin, call, get_token, invite_and_enroll

NPI = "1234567893"
FP_PAT = "AB:" * 31 + "CD"
FP_PROV = "12:" * 31 + "34"


def sdp(fp: str | None) -> str:
    lines = [
        "v=0",
        "o=- 1 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
    ]
    if fp:
        lines.append(f"a=fingerprint:sha-256 {fp}")
    return "\r\n".join(lines) + "\r\n"


def _named(named: bool, name: str) -> dict[str, str]:
    return {"display_name": name} if named else {}


class Call:
    def __init__(self, client: Any) -> None:
        self.c = client

    async def setup(self, config: Config, consent: bool = True, named: bool = False) -> Call:
        c = self.c
        self.adm, adm_t = await admin(c, config.data_dir)
        # Named: the provider's name comes in the invite, the patients declare their own.
        prov_name = {"display_name": "Dr Jane Doe"} if named else {}
        self.prov = await invite_and_enroll(c, self.adm, adm_t, "provider", npi=NPI, **prov_name)
        self.pat = await invite_and_enroll(
            c, self.adm, adm_t, "patient", enroll_extra=_named(named, "Ada Lovelace")
        )
        self.other = await invite_and_enroll(
            c, self.adm, adm_t, "patient", enroll_extra=_named(named, "Grace Hopper")
        )
        self.adm_t = adm_t
        self.prov_t = await get_token(c, self.prov)
        self.pat_t = await get_token(c, self.pat)
        self.other_t = await get_token(c, self.other)
        if consent:
            until = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
            r = await call(
                c,
                "POST",
                "/v1/consents",
                self.pat,
                self.pat_t,
                json={"grantee": self.prov.sub, "scopes": ["call"], "until": until},
            )
            assert r.status == 201
        return self

    async def schedule(self) -> str:
        r = await call(
            self.c, "POST", "/v1/sessions", self.prov, self.prov_t, json={"patient": self.pat.sub}
        )
        assert r.status == 201, await r.text()
        return str((await r.json())["id"])

    async def ticket(self, sid: str, h: Holder, token: str) -> str:
        r = await call(self.c, "POST", f"/v1/sessions/{sid}/ticket", h, token)
        assert r.status == 200, await r.text()
        return str((await r.json())["ticket"])

    async def ws(self, sid: str, ticket: str) -> Any:
        ws = await self.c.ws_connect(f"/v1/sessions/{sid}/ws?ticket={ticket}")
        hello = await ws.receive_json(timeout=5)
        assert hello["type"] == "hello"
        return ws

    async def events(self, kind: str) -> list[dict[str, Any]]:
        size = (await (await self.c.get("/readyz")).json())["ledger_size"]
        out = []
        for i in range(size):
            e = (await (await self.c.get(f"/ledger/entries/{i}")).json())["event"]
            if e["type"] == kind:
                out.append(e)
        return out


@pytest.fixture
async def k(client: Any, config: Config) -> Call:
    return await Call(client).setup(config)


async def test_a_whole_call(k: Call) -> None:
    sid = await k.schedule()
    prov_ws = await k.ws(sid, await k.ticket(sid, k.prov, k.prov_t))
    pat_ws = await k.ws(sid, await k.ticket(sid, k.pat, k.pat_t))
    assert (await prov_ws.receive_json(timeout=5))["type"] == "waiting"
    r = await call(k.c, "GET", "/v1/sessions/waiting", k.prov, k.prov_t)
    assert [s["id"] for s in (await r.json())["waiting"]] == [sid]
    r = await call(k.c, "POST", f"/v1/sessions/{sid}/admit", k.prov, k.prov_t)
    assert r.status == 200 and (await r.json())["state"] == "admitted"
    assert (await pat_ws.receive_json(timeout=5))["type"] == "admitted"
    assert (await prov_ws.receive_json(timeout=5))["type"] == "admitted"
    await pat_ws.send_json({"type": "offer", "sdp": sdp(FP_PAT)})
    offer = await prov_ws.receive_json(timeout=5)
    assert (offer["type"], offer["from"]) == ("offer", "patient")
    await prov_ws.send_json({"type": "answer", "sdp": sdp(FP_PROV)})
    assert (await pat_ws.receive_json(timeout=5))["type"] == "answer"
    await pat_ws.send_json(
        {
            "type": "candidate",
            "candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host",
            "sdpMid": "0",
        }
    )
    cand = await prov_ws.receive_json(timeout=5)
    assert cand["type"] == "candidate" and cand["sdpMid"] == "0"
    r = await call(k.c, "GET", f"/v1/sessions/{sid}", k.pat, k.pat_t)
    assert (await r.json())["state"] == "connected"
    bound = await k.events("session.media_bound")
    assert {(e["actor"], e["data"]["fingerprints"][0]["value"]) for e in bound} == {
        (k.pat.sub, FP_PAT),
        (k.prov.sub, FP_PROV),
    }
    r = await call(k.c, "POST", f"/v1/sessions/{sid}/end", k.pat, k.pat_t)
    assert (await r.json())["state"] == "ended"
    states = [e["type"] for e in await k.events("session.scheduled")] + [
        e["data"]["from"]
        for kind in ("session.waiting", "session.admitted", "session.connected", "session.ended")
        for e in await k.events(kind)
    ]
    assert states == ["session.scheduled", "scheduled", "waiting", "admitted", "connected"]
    await pat_ws.close()
    await prov_ws.close()


async def test_nothing_is_relayed_before_admission_and_it_is_recorded(k: Call) -> None:
    sid = await k.schedule()
    prov_ws = await k.ws(sid, await k.ticket(sid, k.prov, k.prov_t))
    pat_ws = await k.ws(sid, await k.ticket(sid, k.pat, k.pat_t))
    assert (await prov_ws.receive_json(timeout=5))["type"] == "waiting"
    await pat_ws.send_json({"type": "offer", "sdp": sdp(FP_PAT)})
    err = await pat_ws.receive_json(timeout=5)
    assert err == {"type": "error", "error": "not admitted"}
    refused = await k.events("auth.refused")
    assert refused[-1]["data"]["problem"] == "not-admitted" and refused[-1]["session"] == sid
    # The provider got nothing; the patient's socket is still usable.
    await call(k.c, "POST", f"/v1/sessions/{sid}/admit", k.prov, k.prov_t)
    assert (await prov_ws.receive_json(timeout=5))["type"] == "admitted"
    await pat_ws.receive_json(timeout=5)
    await pat_ws.send_json({"type": "offer", "sdp": sdp(FP_PAT)})
    assert (await prov_ws.receive_json(timeout=5))["type"] == "offer"
    await pat_ws.close()
    await prov_ws.close()


async def test_malformed_messages_and_sdp_without_fingerprint(k: Call) -> None:
    sid = await k.schedule()
    prov_ws = await k.ws(sid, await k.ticket(sid, k.prov, k.prov_t))
    pat_ws = await k.ws(sid, await k.ticket(sid, k.pat, k.pat_t))
    await prov_ws.receive_json(timeout=5)
    await call(k.c, "POST", f"/v1/sessions/{sid}/admit", k.prov, k.prov_t)
    await pat_ws.receive_json(timeout=5)
    await prov_ws.receive_json(timeout=5)
    for bad in ("not json", '{"type": "exec"}', "[]"):
        await pat_ws.send_str(bad)
        assert (await pat_ws.receive_json(timeout=5))["error"] == "malformed message"
    await pat_ws.send_json({"type": "offer", "sdp": sdp(None)})
    assert "fingerprint" in (await pat_ws.receive_json(timeout=5))["error"]
    await pat_ws.send_json({"type": "offer", "sdp": sdp(FP_PAT)})
    assert (await prov_ws.receive_json(timeout=5))["type"] == "offer"
    await pat_ws.close()
    await prov_ws.close()


async def test_hostile_json_messages_get_an_error_reply_and_the_socket_stays_open(
    k: Call,
) -> None:
    sid = await k.schedule()
    ws = await k.ws(sid, await k.ticket(sid, k.pat, k.pat_t))
    # 2,500 levels: json.loads raised RecursionError, which closed the socket.
    # {"type": []}: a list looked up in a set is a TypeError, which closed the socket too.
    for bad in ("[" * 2500 + "]" * 2500, '{"type": []}', '{"type": "offer", "sdp": NaN}'):
        await ws.send_str(bad)
        reply = await ws.receive_json(timeout=5)
        assert reply == {"type": "error", "error": "malformed message"}, reply
    assert not ws.closed
    await ws.close()


async def test_ticket_abuse_is_refused(k: Call) -> None:
    sid = await k.schedule()
    t = await k.ticket(sid, k.pat, k.pat_t)
    ws = await k.ws(sid, t)
    await ws.close()
    # Reused ticket, ticket for another session, made-up ticket.
    for path in (
        f"/v1/sessions/{sid}/ws?ticket={t}",
        f"/v1/sessions/{await k.schedule()}/ws?ticket={await k.ticket(sid, k.pat, k.pat_t)}",
        f"/v1/sessions/{sid}/ws?ticket=made-up",
    ):
        r = await k.c.get(path)
        assert r.status == 403 and r.content_type == "application/problem+json"
    # A third party cannot even get a ticket.
    r = await call(k.c, "POST", f"/v1/sessions/{sid}/ticket", k.other, k.other_t)
    assert r.status == 404


async def test_patient_cannot_admit_themself_and_states_are_enforced(k: Call) -> None:
    sid = await k.schedule()
    r = await call(k.c, "POST", f"/v1/sessions/{sid}/admit", k.pat, k.pat_t)
    assert r.status == 403
    r = await call(k.c, "POST", f"/v1/sessions/{sid}/admit", k.prov, k.prov_t)
    assert r.status == 409  # nobody is waiting yet
    r = await call(k.c, "POST", f"/v1/sessions/{sid}/end", k.prov, k.prov_t)
    assert (await r.json())["state"] == "cancelled"
    r = await call(k.c, "POST", f"/v1/sessions/{sid}/ticket", k.pat, k.pat_t)
    assert r.status == 409


async def test_provider_without_consent_cannot_schedule(client: Any, config: Config) -> None:
    k = await Call(client).setup(config, consent=False)
    r = await call(k.c, "POST", "/v1/sessions", k.prov, k.prov_t, json={"patient": k.pat.sub})
    assert r.status == 403
    assert (await k.events("consent.refused"))[-1]["data"]["scope"] == "call"
    # A patient may still ask a provider for a call.
    r = await call(k.c, "POST", "/v1/sessions", k.pat, k.pat_t, json={"provider": k.prov.sub})
    assert r.status == 201


async def test_shutdown_closes_live_websockets(k: Call) -> None:
    sid = await k.schedule()
    ws = await k.ws(sid, await k.ticket(sid, k.pat, k.pat_t))
    await k.c.server.app[HUB].close_all()
    msg = await ws.receive(timeout=5)
    assert ws.closed or msg.type.name in ("CLOSE", "CLOSED", "CLOSING")
    assert ws.close_code == 1001


async def test_reconnect_with_a_fresh_ticket_and_ice_restart(k: Call) -> None:
    sid = await k.schedule()
    prov_ws = await k.ws(sid, await k.ticket(sid, k.prov, k.prov_t))
    pat_ws = await k.ws(sid, await k.ticket(sid, k.pat, k.pat_t))
    await prov_ws.receive_json(timeout=5)
    await call(k.c, "POST", f"/v1/sessions/{sid}/admit", k.prov, k.prov_t)
    await pat_ws.receive_json(timeout=5)
    await prov_ws.receive_json(timeout=5)
    await pat_ws.close()  # the network drops
    pat_ws = await k.ws(sid, await k.ticket(sid, k.pat, k.pat_t))
    await pat_ws.send_json({"type": "offer", "sdp": sdp(FP_PAT), "restart": True})
    offer = await prov_ws.receive_json(timeout=5)
    assert offer["type"] == "offer" and offer["restart"] is True
    await pat_ws.close()
    await prov_ws.close()


async def test_no_show(k: Call) -> None:
    sid = await k.schedule()
    r = await call(k.c, "POST", f"/v1/sessions/{sid}/no-show", k.pat, k.pat_t)
    assert r.status == 403
    r = await call(k.c, "POST", f"/v1/sessions/{sid}/no-show", k.prov, k.prov_t)
    assert (await r.json())["state"] == "no_show"
    assert [e["session"] for e in await k.events("session.no_show")] == [sid]
    r = await call(k.c, "POST", f"/v1/sessions/{sid}/no-show", k.prov, k.prov_t)
    assert r.status == 409


async def test_each_party_lists_their_own_calls(k: Call) -> None:
    first = await k.schedule()
    second = await k.schedule()
    await call(k.c, "POST", f"/v1/sessions/{first}/end", k.prov, k.prov_t)
    for h, t in ((k.prov, k.prov_t), (k.pat, k.pat_t)):
        r = await call(k.c, "GET", "/v1/sessions", h, t)
        assert r.status == 200
        ids = [s["id"] for s in (await r.json())["sessions"]]
        assert sorted(ids) == sorted([first, second])
        r = await call(k.c, "GET", "/v1/sessions?active=true", h, t)
        assert [s["id"] for s in (await r.json())["sessions"]] == [second]
    for q in ("active=yes", "limit=0", "limit=x", "limit=201"):
        assert (await call(k.c, "GET", f"/v1/sessions?{q}", k.pat, k.pat_t)).status == 400
    # Nobody else sees them: another patient's list is empty; an admin is refused.
    r = await call(k.c, "GET", "/v1/sessions", k.other, k.other_t)
    assert (await r.json())["sessions"] == []
    r = await call(k.c, "GET", "/v1/sessions", k.adm, await get_token(k.c, k.adm))
    assert r.status == 403


async def test_the_parties_of_a_call_see_each_others_names_and_nobody_else_does(
    client: Any, config: Config
) -> None:
    k = await Call(client).setup(config, named=True)
    doe, ada = "Dr Jane Doe", "Ada Lovelace"
    both = {k.prov.sub: doe, k.pat.sub: ada}
    sid = await k.schedule()
    for h, t in ((k.prov, k.prov_t), (k.pat, k.pat_t)):
        listed = await (await call(k.c, "GET", "/v1/sessions", h, t)).json()
        # Names beside the rows, the rows themselves unchanged: ids only.
        assert listed["names"] == both
        assert set(listed["sessions"][0]) == {
            "id",
            "patient",
            "provider",
            "state",
            "created",
            "updated",
        }
        one = await (await call(k.c, "GET", f"/v1/sessions/{sid}", h, t)).json()
        assert one["names"] == both
    pat_ws = await k.ws(sid, await k.ticket(sid, k.pat, k.pat_t))
    waiting = await (await call(k.c, "GET", "/v1/sessions/waiting", k.prov, k.prov_t)).json()
    assert [s["id"] for s in waiting["waiting"]] == [sid]
    assert waiting["names"] == {k.pat.sub: ada}

    # Another patient, and another provider, have no relation to either: nothing new.
    other = await (await call(k.c, "GET", "/v1/sessions", k.other, k.other_t)).json()
    assert other == {"sessions": [], "names": {}}
    prov2 = await invite_and_enroll(
        k.c, k.adm, k.adm_t, "provider", npi=NPI, display_name="Dr John Roe"
    )
    prov2_t = await get_token(k.c, prov2)
    for path in ("/v1/sessions", "/v1/sessions/waiting"):
        body = await (await call(k.c, "GET", path, prov2, prov2_t)).json()
        assert body["names"] == {} and doe not in str(body) and ada not in str(body)
    for h, t in ((prov2, prov2_t), (k.other, k.other_t)):
        r = await call(k.c, "GET", f"/v1/sessions/{sid}", h, t)
        assert r.status == 404
        text = await r.text()
        assert doe not in text and ada not in text
    await pat_ws.close()


@pytest.mark.parametrize("revoked", ["provider", "patient"])
async def test_no_call_with_a_revoked_party(k: Call, config: Config, revoked: str) -> None:
    """A call scheduled before one party was revoked cannot go on: the other party gets no
    ticket (so never waits in a room nobody will open) and the provider admits nobody who
    left; ending it stays possible."""
    sid = await k.schedule()
    adm, adm_t = await admin(k.c, config.data_dir)
    gone = k.prov if revoked == "provider" else k.pat
    r = await call(
        k.c, "POST", "/v1/revocations", adm, adm_t, json={"sub": gone.sub, "reason": "left"}
    )
    assert r.status == 200, await r.text()
    if revoked == "provider":
        r = await call(k.c, "POST", f"/v1/sessions/{sid}/ticket", k.pat, k.pat_t)
        assert r.status == 409, await r.text()
        assert r.content_type == "application/problem+json"
        r = await call(k.c, "GET", f"/v1/sessions/{sid}", k.pat, k.pat_t)
        assert (await r.json())["state"] == "scheduled"
        r = await call(k.c, "POST", f"/v1/sessions/{sid}/end", k.pat, k.pat_t)
        assert r.status == 200 and (await r.json())["state"] == "cancelled"
    else:
        for action in ("ticket", "admit"):
            r = await call(k.c, "POST", f"/v1/sessions/{sid}/{action}", k.prov, k.prov_t)
            assert r.status == 409, await r.text()
            assert "revoked" in (await r.json())["detail"]
        r = await call(k.c, "POST", f"/v1/sessions/{sid}/no-show", k.prov, k.prov_t)
        assert r.status == 200, await r.text()


async def test_the_waiting_room_lists_no_call_of_a_revoked_patient(k: Call, config: Config) -> None:
    """Admitting a revoked patient answers 409: the room does not offer them. The call
    stays among the provider's active calls (GET /v1/sessions), where it can be ended."""
    sid = await k.schedule()
    pat_ws = await k.ws(sid, await k.ticket(sid, k.pat, k.pat_t))
    r = await call(k.c, "GET", "/v1/sessions/waiting", k.prov, k.prov_t)
    assert [s["id"] for s in (await r.json())["waiting"]] == [sid]
    r = await call(
        k.c, "POST", "/v1/revocations", k.adm, k.adm_t, json={"sub": k.pat.sub, "reason": "left"}
    )
    assert r.status == 200, await r.text()
    r = await call(k.c, "GET", "/v1/sessions/waiting", k.prov, k.prov_t)
    assert r.status == 200 and (await r.json()) == {"waiting": [], "names": {}}
    r = await call(k.c, "GET", "/v1/sessions?active=true", k.prov, k.prov_t)
    assert [s["id"] for s in (await r.json())["sessions"]] == [sid]
    r = await call(k.c, "POST", f"/v1/sessions/{sid}/end", k.prov, k.prov_t)
    assert r.status == 200 and (await r.json())["state"] == "cancelled"
    await pat_ws.close()
