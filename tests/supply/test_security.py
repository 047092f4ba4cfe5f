"""What POST /v1/supply/events and GET /v1/supply/items refuse: forged, misaddressed and
replayed documents, documents outside GS1's schema, oversized or mistyped bodies, callers in
the wrong role; and what never reaches the ledger (a patient, anything a party adds)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.appkeys import LOG
from tests.gateway.idclient import Holder, call, get_token, invite_and_enroll
from tests.supply.world import (
    JOSE,
    World,
    commission,
    document,
    sgtin,
    ship,
    sign,
)

NONE_HEADER = b'{"alg":"none","typ":"epcis+json"}'


def _b64u(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _ledger(client: TestClient[Any, Any]) -> list[bytes]:
    log = client.app[LOG]
    return list(log.store.read_entries(0, log.size))


async def _problem(r: Any, status: int, slug: str) -> dict[str, Any]:
    body: dict[str, Any] = await r.json()
    assert r.status == status, body
    assert r.content_type == "application/problem+json"
    assert body["type"].endswith("/" + slug), body
    return body


@pytest.fixture
async def w(client: TestClient[Any, Any], tmp_path: Path) -> World:
    return await World.make(client, tmp_path / "data")


async def test_a_forged_or_tampered_document_is_refused(w: World) -> None:
    maker = await w.party("manufacturer", 614141000000)
    jws = sign(maker.holder, document(commission([sgtin("F1")])))
    head, _, sig = jws.split(".")
    other = _b64u(json.dumps(document(commission([sgtin("F2")]))).encode())
    await _problem(await w.post(maker, jws=f"{head}.{other}.{sig}"), 400, "invalid-signature")
    # Signed by a key that is not the party's (a forger's own key).
    await _problem(
        await w.post(maker, jws=sign(Holder(), document(commission([sgtin("F3")])))),
        400,
        "invalid-signature",
    )
    # The vitals type, no type, or "none": each refused.
    for bad in (
        sign(maker.holder, document(commission([sgtin("F4")])), typ="vitals+json"),
        _b64u(NONE_HEADER) + f".{other}.",
    ):
        await _problem(await w.post(maker, jws=bad), 400, "invalid-signature")
    for malformed in ("not a jws", "a.b", "a.b.c.d", "é.b.c"):
        r = await w.post(maker, jws=malformed)
        assert r.status == 400, await r.text()
    status, body = await w.item(maker.holder, maker.token, sgtin("F2"))
    assert status == 200 and body["status"] == "unknown"


async def test_a_document_signed_by_another_party_is_refused(w: World) -> None:
    maker = await w.party("manufacturer", 614141000000)
    thief = await w.party("manufacturer", 614141000001)
    jws = sign(maker.holder, document(commission([sgtin("W1")])))
    # The thief replays the maker's signed document under its own token.
    await _problem(await w.post(thief, jws=jws), 400, "invalid-signature")


async def test_a_replayed_document_is_answered_with_its_first_receipts(w: World) -> None:
    maker = await w.party("manufacturer", 614141000000)
    jws = sign(maker.holder, document(commission([sgtin("I1")]), commission([sgtin("I2")])))
    first = await w.post(maker, jws=jws)
    assert first.status == 201
    size = len(_ledger(w.client))
    again = await w.post(maker, jws=jws)
    assert again.status == 200
    a, b = await first.json(), await again.json()
    assert [e["event_id"] for e in a["events"]] == [e["event_id"] for e in b["events"]]
    assert [e["receipt"]["index"] for e in a["events"]] == [
        e["receipt"]["index"] for e in b["events"]
    ]
    assert len(_ledger(w.client)) == size  # nothing appended


async def test_an_event_id_reused_for_another_event_is_refused_and_audited(w: World) -> None:
    maker = await w.party("manufacturer", 614141000000)
    ev = commission([sgtin("E1")])
    await w.ok(maker, ev)
    changed = {**ev, "epcList": [sgtin("E2")]}
    body = await _problem(await w.post(maker, changed), 409, "event-id-reused")
    assert body["reason"] == "event_id_reused"
    last = json.loads(_ledger(w.client)[-1])
    assert last["type"] == "supply.refused" and last["data"]["reason"] == "event_id_reused"


#: Documents GS1's schema refuses, and where the first complaint points.
OUTSIDE_SCHEMA = dict(
    zip(
        [
            "action",
            "schema-version",
            "no-event-time",
            "not-a-cbv-bizstep",
            "event-time-not-a-time",
            "no-such-day",
            "creation-date",
        ],
        [
            (lambda d: d["epcisBody"]["eventList"][0].update(action="MOVE"), "/epcisBody"),
            (lambda d: d.update(schemaVersion=2), "/schemaVersion"),
            (lambda d: d["epcisBody"]["eventList"][0].pop("eventTime"), "/epcisBody"),
            (lambda d: d["epcisBody"]["eventList"][0].update(bizStep="recalling"), "/epcisBody"),
            (lambda d: d["epcisBody"]["eventList"][0].update(eventTime="yesterday"), "/epcisBody"),
            (
                lambda d: d["epcisBody"]["eventList"][0].update(eventTime="2026-02-30T00:00:00Z"),
                "/",
            ),
            (lambda d: d.update(creationDate="2026-12-03 10:00"), "/creationDate"),
        ],
        strict=True,
    )
)
#: Events inside the schema or not, that this gateway does not take, and why.
NOT_TAKEN = dict(
    zip(
        ["transformation", "event-id", "bizstep", "identifier", "twice", "too-many", "expiry"],
        [
            ({"type": "TransformationEvent"}, "EPCIS 2.0 schema"),
            ({"eventID": None}, "eventID"),
            ({"bizStep": "inspecting"}, "not supported"),
            ({"epcList": ["urn:epc:id:sgtin:0614141.712345"]}, "epcList/0"),
            ({"epcList": [sgtin("D"), sgtin("D")]}, "EPCIS 2.0 schema"),  # uniqueItems
            ({"epcList": [sgtin(str(i)) for i in range(257)]}, "at most 256"),
            ({"ilmd": {"cbvmda:itemExpirationDate": "2027-02-30"}}, "expiry"),
        ],
        strict=True,
    )
)


async def test_documents_outside_the_epcis_schema_are_refused(w: World) -> None:
    # One gateway for every case (a gateway per case costs more than the cases).
    maker = await w.party("manufacturer", 614141000000)
    for name, (mutate, where) in OUTSIDE_SCHEMA.items():
        doc = document(commission([sgtin("S1")]))
        mutate(doc)
        r = await w.post(maker, jws=sign(maker.holder, doc))
        body = await _problem(r, 422, "invalid-epcis")
        assert body["errors"], name
        assert all(e["pointer"].startswith(where) for e in body["errors"]), (name, body)


async def test_events_this_gateway_does_not_take(w: World) -> None:
    maker = await w.party("manufacturer", 614141000000)
    for name, (event, detail) in NOT_TAKEN.items():
        ev = {**commission([sgtin("U1")]), **event}
        if ev.get("eventID") is None:
            ev.pop("eventID")
        body = await _problem(await w.post(maker, ev), 422, "invalid-epcis")
        assert detail in body["detail"], (name, body)


async def test_a_shipment_names_its_destination(w: World) -> None:
    maker = await w.party("manufacturer", 614141000000)
    ev = ship([sgtin("T1")], "0614141123452")
    ev.pop("destinationList")
    await _problem(await w.post(maker, ev), 422, "invalid-epcis")


async def test_the_payload_is_an_epcis_document_of_json(w: World) -> None:
    maker = await w.party("manufacturer", 614141000000)
    await _problem(await w.post(maker, jws=sign(maker.holder, b"{not json")), 400, "invalid-json")
    not_doc = sign(maker.holder, {"type": "EPCISQueryDocument"})
    await _problem(await w.post(maker, jws=not_doc), 422, "invalid-epcis")
    deep: Any = []
    for _ in range(40):
        deep = [deep]
    doc = document(commission([sgtin("J1")]))
    doc["example:deep"] = deep
    await _problem(await w.post(maker, jws=sign(maker.holder, doc)), 400, "invalid-json")


async def test_oversized_and_mistyped_bodies(w: World) -> None:
    maker = await w.party("manufacturer", 614141000000)
    big = io.BytesIO(b"a" * (1024 * 1024 + 1))  # max_body_size, by default
    r = await call(
        w.client, "POST", "/v1/supply/events", maker.holder, maker.token, data=big, headers=JOSE
    )
    await _problem(r, 413, "payload-too-large")
    jws = sign(maker.holder, document(commission([sgtin("B1")])))
    r = await call(
        w.client,
        "POST",
        "/v1/supply/events",
        maker.holder,
        maker.token,
        data=jws,
        headers={"Content-Type": "application/json"},
    )
    await _problem(r, 415, "unsupported-media-type")


async def test_wrong_roles_and_missing_credentials(w: World) -> None:
    maker = await w.party("manufacturer", 614141000000)
    await w.ok(maker, commission([sgtin("R1")]))
    prov = await invite_and_enroll(w.client, w.admin, w.admin_token, "provider", npi="1234567893")
    prov_t = await get_token(w.client, prov)
    pat = await invite_and_enroll(w.client, w.admin, w.admin_token, "patient")
    pat_t = await get_token(w.client, pat)
    jws = sign(maker.holder, document(commission([sgtin("R2")])))
    for who, tok in ((w.admin, w.admin_token), (prov, prov_t), (pat, pat_t)):
        r = await call(w.client, "POST", "/v1/supply/events", who, tok, data=jws, headers=JOSE)
        await _problem(r, 403, "forbidden")
    r = await w.client.post("/v1/supply/events", data=jws, headers=JOSE)
    assert r.status == 401
    # A party's token limited to reading does not write.
    read_only = await get_token(w.client, maker.holder, scope="supply.read")
    r = await call(
        w.client, "POST", "/v1/supply/events", maker.holder, read_only, data=jws, headers=JOSE
    )
    await _problem(r, 403, "forbidden")
    # Reading a unit: parties, providers, admins and auditors; never a patient.
    status, body = await w.item(prov, prov_t, sgtin("R1"))
    assert status == 200 and body["status"] == "active"
    status, body = await w.item(pat, pat_t, sgtin("R1"))
    assert status == 403
    r = await w.client.get("/v1/supply/items/01/70614141123451/21/R1")
    assert r.status == 401


async def test_a_revoked_party_can_no_longer_submit(w: World) -> None:
    maker = await w.party("manufacturer", 614141000000)
    r = await call(
        w.client,
        "POST",
        "/v1/revocations",
        w.admin,
        w.admin_token,
        json={"sub": maker.holder.sub, "reason": "key_compromise"},
    )
    assert r.status == 200
    assert (await w.post(maker, commission([sgtin("V1")]))).status == 401


async def test_malformed_unit_identifiers(w: World) -> None:
    maker = await w.party("manufacturer", 614141000000)
    for bad in ("nothing", "01/70614141123452/21/1", "urn:epc:id:sgtin:1.2.3"):
        status, body = await w.item(maker.holder, maker.token, bad)
        assert status == 404, body
    status, _ = await w.item(maker.holder, maker.token, "x" * 2000)
    assert status == 400


async def test_no_patient_and_nothing_a_party_adds_reaches_the_ledger(w: World) -> None:
    maker = await w.party("manufacturer", 614141000000)
    pharmacy = await w.party("pharmacy", 761234500000)
    pat = await invite_and_enroll(w.client, w.admin, w.admin_token, "patient")
    ev = commission([sgtin("H1")])
    # A party may extend an event with anything (EPCIS allows it): it stays off the ledger.
    ev["example:patient"] = pat.sub
    ev["example:note"] = "Dispense to Jane Roe, DOB 1970-01-01"
    await w.ok(maker, ev, ship([sgtin("H1")], pharmacy.gln))
    supply = [e for e in _ledger(w.client) if b'"type":"supply.' in e]
    assert len(supply) == 2
    for entry in supply:
        assert pat.sub.encode() not in entry and b"Jane" not in entry and b"pat:" not in entry
        leaf = json.loads(entry)
        assert "subject" not in leaf
        assert set(leaf["data"]) <= {
            "event_hash",
            "document",
            "gln",
            "event_type",
            "action",
            "biz_step",
            "event_time",
            "items",
            "parent",
            "destination",
            "moved",
            "lot",
            "expiry",
            "lots",
        }
