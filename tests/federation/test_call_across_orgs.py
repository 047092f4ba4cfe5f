"""A provider enrolled at organization B treats a patient of organization A, through A.

Two real gateways and an independent witness on loopback: A and B witness each other
(embedded witnesses) and W witnesses both. B's provider trades B's attestation, with B's
issuance receipt cosigned by A's witness and W, for an attestation of A; A's patient
consents; the provider schedules a call through A and both signalling sockets exchange
offer and answer through A; the provider reads the patient's vitals with consent. A's audit
trail shows the acceptance with B's receipt, and every proof verifies offline.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
from typing import Any

from gateway.appkeys import LOG
from gateway.federation import FEDERATION, local_subject_id
from gateway.witnessing import WITNESSING
from ledger.checkpoint import verify_witnessed
from ledger.events import Event
from ledger.log import Receipt
from ledger.merkle import leaf_hash, verify_inclusion
from ledger.note import Verifier
from ledger.receipts import verify_witnessed_receipt
from ledger.verify import HTTPSource, verify_log
from tests.gateway.idclient import call, get_token, token_response
from tests.gateway.test_sessions import FP_PAT, FP_PROV, sdp
from tests.witness.gateways import until

from .conftest import World
from .orgs import Org, claims_of, exchange


def _until(days: int = 1) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _ws(org: Org, sid: str, ticket: str) -> Any:
    ws = await org.c.ws_connect(f"/v1/sessions/{sid}/ws?ticket={ticket}")
    assert (await ws.receive_json(timeout=5))["type"] == "hello"
    return ws


async def test_a_provider_of_b_calls_a_patient_of_a(world: World) -> None:
    w = await world.up()
    a, b, prov, pat = w.a, w.b, w.provider, w.patient

    # 1. B's provider: a token of B for A too, B's receipt once witnessed, the exchange.
    b_token, receipt = await w.b_token()
    claims = claims_of(b_token)
    assert claims["aud"] == [b.url, a.url] and claims["iss"] == b.url
    body = await exchange(a.c, prov, b_token, receipt)
    local = local_subject_id(b.url, prov.sub)
    assert body["sub"] == local and body["token_type"] == "DPoP"
    assert body["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    assert set(body["scope"].split()) == {"call", "vitals.read"}  # never enroll here
    a_token = body["access_token"]
    a_claims = claims_of(a_token)
    assert (a_claims["iss"], a_claims["sub"], a_claims["role"]) == (a.url, local, "provider")
    assert a_claims["exp"] <= claims["exp"] and a_claims["cnf"] == claims["cnf"]
    me = await (await call(a.c, "GET", "/v1/me", prov, a_token)).json()
    assert (me["sub"], me["role"]) == (local, "provider")

    # 2. A's patient consents to the provider by its id at A.
    r = await call(
        a.c,
        "POST",
        "/v1/consents",
        pat,
        w.patient_t,
        json={"grantee": local, "scopes": ["call", "vitals.read"], "until": _until()},
    )
    assert r.status == 201, await r.text()

    # 3. The provider schedules the call through A; both sides signal through A.
    r = await call(a.c, "POST", "/v1/sessions", prov, a_token, json={"patient": pat.sub})
    assert r.status == 201, await r.text()
    sid = (await r.json())["id"]
    tickets = []
    for h, t in ((prov, a_token), (pat, w.patient_t)):
        r = await call(a.c, "POST", f"/v1/sessions/{sid}/ticket", h, t)
        tickets.append((await r.json())["ticket"])
    prov_ws = await _ws(a, sid, tickets[0])
    pat_ws = await _ws(a, sid, tickets[1])
    assert (await prov_ws.receive_json(timeout=5))["type"] == "waiting"
    r = await call(a.c, "POST", f"/v1/sessions/{sid}/admit", prov, a_token)
    assert (await r.json())["state"] == "admitted"
    assert (await pat_ws.receive_json(timeout=5))["type"] == "admitted"
    assert (await prov_ws.receive_json(timeout=5))["type"] == "admitted"
    await pat_ws.send_json({"type": "offer", "sdp": sdp(FP_PAT)})
    offer = await prov_ws.receive_json(timeout=5)
    assert (offer["type"], offer["from"]) == ("offer", "patient")
    await prov_ws.send_json({"type": "answer", "sdp": sdp(FP_PROV)})
    assert (await pat_ws.receive_json(timeout=5))["type"] == "answer"
    bound = {
        (e["actor"], e["data"]["fingerprints"][0]["value"]) for e in a.events("session.media_bound")
    }
    assert bound == {(pat.sub, FP_PAT), (local, FP_PROV)}
    await pat_ws.close()
    await prov_ws.close()

    # 4. Vitals with consent; each use is recorded under the provider's id at A.
    r = await call(a.c, "GET", f"/v1/patients/{pat.sub}/vitals", prov, a_token)
    assert r.status == 200, await r.text()
    used = [e for e in a.events("consent.used") if e["data"]["scope"] == "vitals.read"]
    assert used and used[-1]["actor"] == local

    # 5. A's audit trail: the acceptance, with B's receipt, provable against A's log.
    aud_t = await get_token(a.c, w.auditor)
    r = await call(a.c, "GET", "/v1/audit/events?type=federation.accepted", w.auditor, aud_t)
    page = await r.json()
    (row,) = page["rows"]
    a_cp = verify_witnessed(page["checkpoint"].encode(), a.log, [], 0).checkpoint
    leaf = base64.b64decode(row["leaf"])
    verify_inclusion(row["index"], a_cp.size, leaf_hash(leaf), _hashes(row["proof"]), a_cp.root)
    data = Event.decode(leaf).data
    assert Event.decode(leaf).subject == local
    assert (data["peer"], data["foreign_sub"], data["role"]) == ("b", prov.sub, "provider")
    assert data["foreign_jti"] == claims["jti"] and data["leaf_index"] == claims["ledger"]
    assert data["log_vkey"] == b.log_vkey and data["first"] is True
    assert sorted(data["checkpoint"]["cosigned_by"]) == ["a.example/witness", "w.example/witness"]
    # B's receipt as A recorded it, checked offline with B's vkey and the witnesses' vkeys.
    b_receipt = Receipt.from_json(data["receipt"])
    entry = base64.b64decode(data["entry"])
    witnesses = [Verifier.from_vkey(v) for v in w.required]
    wc = verify_witnessed_receipt(b_receipt, entry, b.log, witnesses, 2)
    assert (wc.checkpoint.size, base64.b64encode(wc.checkpoint.root).decode()) == (
        data["checkpoint"]["size"],
        data["checkpoint"]["root"],
    )
    issued = Event.decode(entry)
    assert (issued.type, issued.subject, issued.data["jti"]) == (
        "attestation.issued",
        prov.sub,
        claims["jti"],
    )
    # A's own issuance for the provider names the acceptance's leaf.
    (mine,) = [e for e in a.events("attestation.issued") if e["subject"] == local]
    assert mine["data"]["federation"] == row["index"]

    # 6. Both whole logs verify offline, each against its checkpoint cosigned by the other
    #    organization's witness and W.
    for org, peer in ((a, b), (b, a)):
        app = org.c.server.app
        size = app[LOG].size
        await until("witnessed", lambda app=app, size=size: app[WITNESSING].published >= size)
        cp = await asyncio.to_thread(
            verify_log,
            HTTPSource(f"{org.url}/ledger/"),
            org.log,
            witnesses=[Verifier.from_vkey(peer.witness_vkey), Verifier.from_vkey(w.w.vkey)],
            min_witnesses=2,
        )
        assert cp.size >= size

    # The provider has no client credential at A: only the exchange gives it tokens there.
    prov.sub, b_sub = local, prov.sub
    r = await token_response(a.c, prov)
    assert r.status == 401 and (await r.json())["error"] == "invalid_client"
    prov.sub = b_sub


async def test_a_second_exchange_reuses_the_identity_and_checks_consistency(world: World) -> None:
    w = await world.up()
    first = await w.accepted()
    # More of B's history, then another token: A checks the new checkpoint extends the old.
    await token_response(w.b.c, w.provider)
    second = await w.accepted()
    assert first["sub"] == second["sub"]
    accepted = [e["data"] for e in w.a.events("federation.accepted")]
    assert [d["first"] for d in accepted] == [True, False]
    assert accepted[1]["checkpoint"]["size"] > accepted[0]["checkpoint"]["size"]
    # A kept the larger checkpoint as the one every later receipt must extend.
    kept = w.a.c.server.app[FEDERATION].state.latest(w.b.log_vkey)
    assert kept is not None and kept.decode() == accepted[1]["receipt"]["checkpoint"]


def _hashes(items: list[str]) -> list[bytes]:
    return [base64.b64decode(x) for x in items]
