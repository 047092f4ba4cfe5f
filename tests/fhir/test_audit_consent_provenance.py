"""/fhir/AuditEvent (each with a ledger proof that verifies offline), /fhir/Consent and
/fhir/Provenance: who may search what, filters, paging, refusals."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

from gateway.fhir.audit import PROOF_EXT
from ledger.checkpoint import open_checkpoint
from ledger.merkle import leaf_hash, verify_inclusion
from ledger.note import Verifier
from tests.fhir.conftest import FhirWorld, outcome, validate
from tests.gateway.idclient import call, get_token
from tests.gateway.vitals.world import batch, hr, iso


def _proof(res: dict[str, Any]) -> dict[str, list[Any]]:
    (ext,) = [e for e in res["extension"] if e["url"] == PROOF_EXT]
    out: dict[str, list[Any]] = {}
    for sub in ext["extension"]:
        value = next(v for k, v in sub.items() if k.startswith("value"))
        out.setdefault(sub["url"], []).append(value)
    return out


async def _events(w: FhirWorld, who: Any, tok: str, **params: Any) -> dict[str, Any]:
    st, body, _ = await w.fhir(who, tok, "AuditEvent", params)
    assert st == 200, body
    validate(body)
    return dict(body)


async def test_auditor_searches_with_proofs_that_verify(w: FhirWorld) -> None:
    vkey = Verifier.from_vkey(await (await w.client.get("/ledger/vkey")).text())
    await w.grant(["vitals.read"])
    r = await w.read(w.prov, w.prov_t)
    assert r.status == 200
    body = await _events(w, w.aud, w.aud_t, patient=w.pat.sub, subtype="consent.used")
    (entry,) = body["entry"]
    ev = entry["resource"]
    validate(ev)
    assert ev["subtype"][0] == {"system": "urn:telegate:event-type", "code": "consent.used"}
    p = _proof(ev)
    (index,), (size,), (leaf_b64,) = p["leafIndex"], p["treeSize"], p["leaf"]
    leaf = base64.b64decode(leaf_b64)
    assert json.loads(leaf)["actor"] == w.prov.sub
    assert base64.b64decode(p["leafHash"][0]) == leaf_hash(leaf)
    cp = open_checkpoint(p["checkpoint"][0].encode(), vkey).checkpoint
    assert cp.size == size
    path = [base64.b64decode(h) for h in p["auditPath"]]
    verify_inclusion(index, size, leaf_hash(leaf), path, cp.root)
    # agent, entity, type and date narrow the search.
    mine = await _events(w, w.aud, w.aud_t, agent=w.prov.sub, entity=w.pat.sub)
    assert {e["resource"]["subtype"][0]["code"] for e in mine["entry"]} == {"consent.used"}
    dicom = await _events(
        w, w.aud, w.aud_t, type="http://dicom.nema.org/resources/ontology/DCM|110114"
    )
    assert dicom["entry"] and all(e["resource"]["type"]["code"] == "110114" for e in dicom["entry"])
    # entity: a session id names the call's events.
    await w.grant(["call"])
    r = await call(w.client, "POST", "/v1/sessions", w.prov, w.prov_t, json={"patient": w.pat.sub})
    assert r.status == 201, await r.text()
    sid = (await r.json())["id"]
    calls = await _events(w, w.aud, w.aud_t, entity=sid)
    assert [e["resource"]["subtype"][0]["code"] for e in calls["entry"]] == ["session.scheduled"]
    future = await _events(w, w.aud, w.aud_t, date=f"gt{iso(w.now() + 60)}")
    assert future["entry"] == []
    # Each search is itself on the ledger.
    queries = await w.events("audit.query")
    assert queries and all(q["data"]["api"] == "fhir" for q in queries)


async def test_paging_audit_events_to_the_end_and_cursor_tampering(w: FhirWorld) -> None:
    everything = await _events(w, w.aud, w.aud_t, _count="1000")
    total = len(everything["entry"])
    assert total > 5
    ids: list[str] = []
    page = await _events(w, w.aud, w.aud_t, _count="2")
    while True:
        ids += [e["resource"]["id"] for e in page["entry"]]
        nxt = [link["url"] for link in page["link"] if link["relation"] == "next"]
        if not nxt:
            break
        cur = parse_qs(urlsplit(nxt[0]).query)["_cursor"][0]
        page = await _events(w, w.aud, w.aud_t, _count="2", _cursor=cur)
    # Pages were taken while the log grew (each search is an event): every event of the
    # first listing is on some page, once.
    assert len(ids) == len(set(ids))
    assert {e["resource"]["id"] for e in everything["entry"]} <= set(ids)
    first = await _events(w, w.aud, w.aud_t, _count="2")
    cur = parse_qs(urlsplit(first["link"][1]["url"]).query)["_cursor"][0]
    # Another filter, another caller, a flipped byte: refused.
    st, out, _ = await w.fhir(
        w.aud, w.aud_t, "AuditEvent", {"_count": "2", "agent": w.prov.sub, "_cursor": cur}
    )
    assert st == 400
    outcome(out, "invalid")
    st, _, _ = await w.fhir(w.pat, w.pat_t, "AuditEvent", {"_count": "2", "_cursor": cur})
    assert st == 400
    flipped = cur[:-3] + ("A" if cur[-3] != "A" else "B") + cur[-2:]
    st, _, _ = await w.fhir(w.aud, w.aud_t, "AuditEvent", {"_count": "2", "_cursor": flipped})
    assert st == 400


async def test_a_patient_sees_the_events_about_themself_only(w: FhirWorld) -> None:
    await w.grant(["vitals.read"])
    assert (await w.read(w.prov, w.prov_t)).status == 200
    own = await _events(w, w.pat, w.pat_t)
    assert own["entry"]
    for e in own["entry"]:
        entities = [x["what"]["identifier"]["value"] for x in e["resource"]["entity"]]
        assert w.pat.sub in entities
    assert any(e["resource"]["subtype"][0]["code"] == "consent.used" for e in own["entry"])
    for params in ({"patient": w.other.sub}, {"entity": w.other.sub}):
        st, out, _ = await w.fhir(w.pat, w.pat_t, "AuditEvent", params)
        assert st == 403, out
        outcome(out, "forbidden")
    # A provider and a device reach no AuditEvent; an auditor token without the scope neither.
    for who, tok in ((w.prov, w.prov_t), (w.dev, w.dev_t)):
        st, out, _ = await w.fhir(who, tok, "AuditEvent", {"patient": w.pat.sub})
        assert st == 403
    narrow = await get_token(w.client, w.aud, "audit")
    st, out, _ = await w.fhir(w.aud, narrow, "AuditEvent")
    assert st == 403 and "AuditEvent.s" in outcome(out, "forbidden")
    system = await get_token(w.client, w.aud, "system/AuditEvent.rs")
    assert (await w.fhir(w.aud, system, "AuditEvent", {"_count": "1"}))[0] == 200


async def test_audit_event_bad_parameters(w: FhirWorld) -> None:
    for params in (
        {"patient": "prov:" + "0" * 32},
        {"agent": "nobody"},
        {"date": "2026-02-30"},
        {"type": "urn:other|rest"},
        {"subtype": "urn:other|consent.used"},
        {"patient": w.pat.sub, "entity": w.other.sub},
        {"_sort": "date"},
        {"actor": w.pat.sub},
        {"entity": "s" * 129},
    ):
        st, out, _ = await w.fhir(w.aud, w.aud_t, "AuditEvent", params)
        assert st == 400, (params, out)
        outcome(out, "invalid")


async def test_consent_search(w: FhirWorld) -> None:
    granted = await w.grant(["vitals.read"])
    cid = granted["id"]
    st, body, _ = await w.fhir(w.pat, w.pat_t, "Consent")
    assert st == 200, body
    validate(body)
    (entry,) = body["entry"]
    res = entry["resource"]
    validate(res)
    assert res["id"] == f"consent-{cid}" and res["status"] == "active"
    assert res["provision"]["actor"][0]["reference"]["identifier"]["value"] == w.prov.sub
    # status and actor filters
    st, body, _ = await w.fhir(w.pat, w.pat_t, "Consent", {"status": "inactive"})
    assert st == 200 and body["entry"] == []
    st, body, _ = await w.fhir(w.pat, w.pat_t, "Consent", {"actor": w.other.sub})
    assert st == 200 and body["entry"] == []
    # the provider sees the consents naming them; the auditor a named patient's (recorded).
    st, body, _ = await w.fhir(w.prov, w.prov_t, "Consent", {"patient": w.pat.sub})
    assert st == 200 and [e["resource"]["id"] for e in body["entry"]] == [f"consent-{cid}"]
    st, body, _ = await w.fhir(w.aud, w.aud_t, "Consent", {"patient": w.pat.sub})
    assert st == 200 and len(body["entry"]) == 1
    queries = [q for q in await w.events("audit.query") if q["data"].get("consents_of")]
    assert queries[-1]["actor"] == w.aud.sub and queries[-1]["subject"] == w.pat.sub
    # revoked: inactive
    r = await call(w.client, "DELETE", f"/v1/consents/{cid}", w.pat, w.pat_t)
    assert r.status == 200, await r.text()
    st, body, _ = await w.fhir(w.pat, w.pat_t, "Consent", {"status": "inactive"})
    assert st == 200 and len(body["entry"]) == 1
    validate(body["entry"][0]["resource"])
    # refusals
    st, out, _ = await w.fhir(w.other, w.other_t, "Consent", {"patient": w.pat.sub})
    assert st == 403
    outcome(out, "forbidden")
    st, out, _ = await w.fhir(w.aud, w.aud_t, "Consent")
    assert st == 400
    for params in ({"status": "draft"}, {"actor": "x"}, {"patient": "pat:zz"}):
        st, out, _ = await w.fhir(w.pat, w.pat_t, "Consent", params)
        assert st == 400, params
    st, out, _ = await w.fhir(w.dev, w.dev_t, "Consent")
    assert st == 403


async def test_consent_paging(w: FhirWorld) -> None:
    for _ in range(3):
        await w.grant(["vitals.read"])
    st, page, _ = await w.fhir(w.pat, w.pat_t, "Consent", {"_count": "2"})
    assert st == 200 and len(page["entry"]) == 2
    cur = parse_qs(urlsplit(page["link"][1]["url"]).query)["_cursor"][0]
    st, rest, _ = await w.fhir(w.pat, w.pat_t, "Consent", {"_count": "2", "_cursor": cur})
    assert st == 200 and len(rest["entry"]) == 1
    assert [x["relation"] for x in rest["link"]] == ["self"]
    st, _, _ = await w.fhir(w.other, w.other_t, "Consent", {"_count": "2", "_cursor": cur})
    assert st == 400


async def test_provenance_of_an_observation(w: FhirWorld) -> None:
    r = await w.send(batch([hr(70, w.now() - 30)]))
    assert r.status == 201
    receipt = (await r.json())["receipt"]
    st, body, _ = await w.fhir(w.pat, w.pat_t, "Observation")
    oid = body["entry"][0]["resource"]["id"]
    st, body, _ = await w.fhir(w.pat, w.pat_t, "Provenance", {"target": f"Observation/{oid}"})
    assert st == 200, body
    validate(body)
    (entry,) = body["entry"]
    prov = entry["resource"]
    validate(prov)
    assert prov["id"] == f"ledger-{receipt['index']}"
    assert {"reference": f"Observation/{oid}"} in prov["target"]
    assert prov["agent"][0]["who"]["identifier"]["value"] == w.dev.sub
    # The same consent as the reading: the provider without it, the other patient: refused.
    for who, tok in ((w.prov, w.prov_t), (w.other, w.other_t)):
        st, out, _ = await w.fhir(who, tok, "Provenance", {"target": f"Observation/{oid}"})
        assert st == 403, out
        outcome(out, "forbidden")
    await w.grant(["vitals.read"])
    st, _, _ = await w.fhir(w.prov, w.prov_t, "Provenance", {"target": f"Observation/{oid}"})
    assert st == 200
    missing = f"Observation/{w.pat.sub.removeprefix('pat:')}-999-0"
    for params in ({}, {"target": "Device/1"}, {"target": missing}):
        st, out, _ = await w.fhir(w.pat, w.pat_t, "Provenance", params)
        assert st in (400, 404), params
        outcome(out, "invalid" if st == 400 else "not-found")
    st, _, _ = await w.fhir(w.aud, w.aud_t, "Provenance", {"target": f"Observation/{oid}"})
    assert st == 403
