"""/fhir/Observation: the /v1 vitals read as FHIR search and read, with SMART scopes,
consent, paging with signed cursors, and OperationOutcome for everything refused."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.fhir.conftest import FhirWorld, outcome, validate
from tests.gateway.idclient import call, get_token, token_response
from tests.gateway.vitals.world import batch, bp, hr, iso

GLUCOSE = {"code": "15074-8", "unit": "mmol/L", "value": 5.5}


async def _readings(w: FhirWorld, n: int = 6) -> float:
    """``n`` batches of the patient's device: a heart rate and a blood pressure each, ten
    seconds apart, the last with a glucose reading too. Returns the first reading's time."""
    t0 = w.now() - 1000
    for k in range(n):
        rs = [hr(60 + k, t0 + 10 * k), bp(110 + k, 70, t0 + 10 * k + 1)]
        if k == n - 1:
            rs.append({**GLUCOSE, "time": iso(t0 + 10 * k + 2)})
        r = await w.send(batch(rs))
        assert r.status == 201, await r.text()
    return t0


def _cursor_of(bundle: dict[str, Any], relation: str) -> str | None:
    for link in bundle["link"]:
        if link["relation"] == relation:
            return str(parse_qs(urlsplit(link["url"]).query)["_cursor"][0])
    return None


def _values(bundle: dict[str, Any]) -> list[Any]:
    out = []
    for e in bundle["entry"]:
        r = e["resource"]
        out.append(r["valueQuantity"]["value"] if "valueQuantity" in r else "bp")
    return out


async def _search(w: FhirWorld, **params: Any) -> dict[str, Any]:
    st, body, resp = await w.fhir(w.pat, w.pat_t, "Observation", params)
    assert st == 200, body
    assert resp.headers["Content-Type"].startswith("application/fhir+json")
    validate(body)
    for e in body["entry"]:
        validate(e["resource"])
    return dict(body)


async def test_search_by_each_parameter(w: FhirWorld) -> None:
    t0 = await _readings(w)
    everything = await _search(w)
    assert len(everything["entry"]) == 13
    assert _values(await _search(w, code="8867-4")) == [60, 61, 62, 63, 64, 65]
    assert _values(await _search(w, code="http://loinc.org|8867-4", patient=w.pat.sub)) == [
        60,
        61,
        62,
        63,
        64,
        65,
    ]
    labs = await _search(w, category="laboratory")
    assert [e["resource"]["code"]["coding"][0]["code"] for e in labs["entry"]] == ["15074-8"]
    vitals = await _search(w, category="vital-signs")
    assert len(vitals["entry"]) == 12
    # date prefixes: ge and lt together, gt, le, eq on an instant.
    window = await _search(w, code="8867-4", date=[f"ge{iso(t0 + 20)}", f"lt{iso(t0 + 40)}"])
    assert _values(window) == [62, 63]
    assert _values(await _search(w, code="8867-4", date=f"gt{iso(t0 + 40)}")) == [65]
    assert _values(await _search(w, code="8867-4", date=f"le{iso(t0 + 10)}")) == [60, 61]
    assert _values(await _search(w, code="8867-4", date=iso(t0 + 30))) == [63]
    assert _values(await _search(w, code="8867-4", date=f"eq{iso(t0 + 30)}")) == [63]
    # A date without a time is that whole (UTC) day.
    day = iso(t0 + 30)[:10]
    on_day = [60 + k for k in range(6) if iso(t0 + 10 * k)[:10] == day]
    assert _values(await _search(w, code="8867-4", date=day)) == on_day
    assert _values(await _search(w, code="8867-4", date="2001-01-01")) == []
    # _sort=-date walks back.
    assert _values(await _search(w, code="8867-4", _sort="-date")) == [65, 64, 63, 62, 61, 60]


async def test_paging_to_the_end_with_next_and_back_with_previous(w: FhirWorld) -> None:
    await _readings(w)
    seen: list[str] = []
    pages = [await _search(w, _count="4")]
    while (cur := _cursor_of(pages[-1], "next")) is not None:
        pages.append(await _search(w, _count="4", _cursor=cur))
        assert len(pages) < 10
    for p in pages:
        seen += [e["resource"]["id"] for e in p["entry"]]
    assert len(seen) == 13 == len(set(seen))
    assert [len(p["entry"]) for p in pages[:4]] == [4, 4, 4, 1]
    assert _cursor_of(pages[0], "previous") is None
    # Back from the last page to the first, page by page, the same pages.
    page, back = pages[-1], []
    while (cur := _cursor_of(page, "previous")) is not None:
        page = await _search(w, _count="4", _cursor=cur)
        back.append([e["resource"]["id"] for e in page["entry"]])
    expected = [[e["resource"]["id"] for e in p["entry"]] for p in pages[:-1]]
    assert back == list(reversed(expected))
    # ... and forward again from a previous page.
    cur = _cursor_of(page, "next")
    assert cur is not None
    again = await _search(w, _count="4", _cursor=cur)
    assert [e["resource"]["id"] for e in again["entry"]] == expected[1]
    # Descending pages partition the same readings.
    desc, page = [], await _search(w, _count="5", _sort="-date")
    desc += [e["resource"]["id"] for e in page["entry"]]
    while (cur := _cursor_of(page, "next")) is not None:
        page = await _search(w, _count="5", _sort="-date", _cursor=cur)
        desc += [e["resource"]["id"] for e in page["entry"]]
    assert desc == list(reversed(seen))


async def test_cursor_tampering_and_reuse_are_refused(w: FhirWorld) -> None:
    await _readings(w, 3)
    first = await _search(w, _count="2")
    cur = _cursor_of(first, "next")
    assert cur is not None
    body_b64, mac = cur.split(".")
    body = json.loads(base64.urlsafe_b64decode(body_b64 + "=="))
    body["p"] = [0, -1]
    forged = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    for bad in (f"{forged}.{mac}", cur[:-2] + "AA", "x" * 600, "not-a-cursor", cur + "."):
        st, out, _ = await w.fhir(w.pat, w.pat_t, "Observation", {"_count": "2", "_cursor": bad})
        assert st == 400, out
        outcome(out, "invalid")
    # The cursor of one search does not page another (another code, sort or patient); the
    # page size may change from page to page.
    for params in ({"_count": "2", "code": "8867-4"}, {"_sort": "-date"}):
        st, out, _ = await w.fhir(w.pat, w.pat_t, "Observation", {**params, "_cursor": cur})
        assert st == 400, out
    # Nor the same caller's search of another patient (refused before any consent check).
    st, out, _ = await w.fhir(
        w.pat, w.pat_t, "Observation", {"_count": "2", "patient": w.other.sub, "_cursor": cur}
    )
    assert st == 400, out
    await w.grant(["vitals.read"])
    # Nor another caller: the provider with consent, same search, same patient.
    params = {"_count": "2", "patient": w.pat.sub, "_cursor": cur}
    st, out, _ = await w.fhir(w.prov, w.prov_t, "Observation", params)
    assert st == 400, out
    # An expired cursor.
    w.clock.t += 3601
    tok = await get_token(w.client, w.pat)
    st, out, _ = await w.fhir(w.pat, tok, "Observation", {"_count": "2", "_cursor": cur})
    assert st == 400 and "expired" in outcome(out, "invalid")


async def test_read_by_id(w: FhirWorld) -> None:
    await _readings(w, 2)
    found = await _search(w, code="85354-9")
    oid = found["entry"][1]["resource"]["id"]
    st, obs, _ = await w.fhir(w.pat, w.pat_t, f"Observation/{oid}")
    assert st == 200, obs
    validate(obs)
    assert obs == found["entry"][1]["resource"]
    assert [c["valueQuantity"]["value"] for c in obs["component"]] == [111, 70]
    for bad in (oid[:-1] + "9", "nope", oid.replace("-", "_"), "a" * 64):
        st, out, _ = await w.fhir(w.pat, w.pat_t, f"Observation/{bad}")
        assert st == 404, out
        outcome(out, "not-found")
    st, out, _ = await w.fhir(w.pat, w.pat_t, f"Observation/{oid}", {"code": "x"})
    assert st == 400
    outcome(out, "invalid")


async def test_a_provider_needs_consent_and_each_read_is_in_the_access_report(
    w: FhirWorld,
) -> None:
    await _readings(w, 2)
    oid = (await _search(w))["entry"][0]["resource"]["id"]
    params = {"patient": w.pat.sub}
    st, out, _ = await w.fhir(w.prov, w.prov_t, "Observation", params)
    assert st == 403
    assert "consent" in outcome(out, "forbidden")
    st, out, _ = await w.fhir(w.prov, w.prov_t, f"Observation/{oid}")
    assert st == 403
    refused = await w.events("consent.refused")
    assert len(refused) == 2 and all(e["actor"] == w.prov.sub for e in refused)
    # A provider must name the patient.
    st, out, _ = await w.fhir(w.prov, w.prov_t, "Observation")
    assert st == 400
    await w.grant(["vitals.read"])
    st, body, _ = await w.fhir(w.prov, w.prov_t, "Observation", params)
    assert st == 200 and len(body["entry"]) == 5
    st, obs, _ = await w.fhir(w.prov, w.prov_t, f"Observation/{oid}")
    assert st == 200 and obs["id"] == oid
    r = await w.client.get(f"/v1/patients/{w.pat.sub}/access-report")
    assert r.status == 401  # (the report itself needs the patient's credentials)
    r = await call(w.client, "GET", f"/v1/patients/{w.pat.sub}/access-report", w.pat, w.pat_t)
    report = await r.json()
    used = [a for a in report["accesses"] if a["action"] == "consent.used"]
    assert len(used) == 2 and all(a["who"] == w.prov.sub and a["proof"] for a in used)
    assert all(a["event"]["data"]["scope"] == "vitals.read" for a in used)


async def test_wrong_patient_and_wrong_role(w: FhirWorld) -> None:
    await _readings(w, 1)
    oid = (await _search(w))["entry"][0]["resource"]["id"]
    # Another patient: refused by the consent guard (and recorded).
    for path, params in (("Observation", {"patient": w.pat.sub}), (f"Observation/{oid}", None)):
        st, out, _ = await w.fhir(w.other, w.other_t, path, params)
        assert st == 403, out
        outcome(out, "forbidden")
    # Roles with no Observation scope at all: device, auditor, admin.
    for who, tok in ((w.dev, w.dev_t), (w.aud, w.aud_t), (w.adm, w.adm_t)):
        st, out, _ = await w.fhir(who, tok, "Observation", {"patient": w.pat.sub})
        assert st == 403, out
        outcome(out, "forbidden")


async def test_a_token_without_the_smart_scope_is_refused(w: FhirWorld) -> None:
    await _readings(w, 1)
    narrow = await get_token(w.client, w.pat, "vitals.read")
    st, out, _ = await w.fhir(w.pat, narrow, "Observation")
    assert st == 403
    assert "patient/Observation.s" in outcome(out, "forbidden")
    # v1 .read is accepted; .rs too; a search-only token cannot read by id.
    for scope in ("patient/Observation.read", "patient/Observation.rs"):
        tok = await get_token(w.client, w.pat, scope)
        st, body, _ = await w.fhir(w.pat, tok, "Observation")
        assert st == 200, body
    # A role cannot be issued another context's scope.
    r = await token_response(w.client, w.pat, "user/Observation.rs")
    assert r.status == 400 and (await r.json())["error"] == "invalid_scope"
    r = await token_response(w.client, w.prov, "system/AuditEvent.rs")
    assert r.status == 400


async def test_bad_credentials_get_operation_outcome_401(w: FhirWorld) -> None:
    url = str(w.client.make_url("/fhir/Observation"))
    # None at all.
    r = await w.client.get("/fhir/Observation")
    assert r.status == 401 and "DPoP" in r.headers["WWW-Authenticate"]
    outcome(await r.json(content_type=None), "login")
    # Replayed proof.
    proof = w.pat.dpop("GET", url, w.pat_t)
    headers = {"Authorization": f"DPoP {w.pat_t}", "DPoP": proof}
    assert (await w.client.get("/fhir/Observation", headers=headers)).status == 200
    r = await w.client.get("/fhir/Observation", headers=headers)
    assert r.status == 401
    outcome(await r.json(content_type=None), "login")
    # Forged: the token's payload changed (another subject), signature kept.
    head, payload, sig = w.pat_t.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = w.other.sub
    fake = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    forged = f"{head}.{fake}.{sig}"
    headers = {"Authorization": f"DPoP {forged}", "DPoP": w.pat.dpop("GET", url, forged)}
    r = await w.client.get("/fhir/Observation", headers=headers)
    assert r.status == 401
    # Another holder's key proving a stolen token.
    headers = {"Authorization": f"DPoP {w.pat_t}", "DPoP": w.other.dpop("GET", url, w.pat_t)}
    assert (await w.client.get("/fhir/Observation", headers=headers)).status == 401
    # Expired.
    w.clock.t += 300 + 30 + 1
    st, out, _ = await w.fhir(w.pat, w.pat_t, "Observation")
    assert st == 401 and "expired" in outcome(out, "login")


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"date": "yesterday"}, "date"),
        ({"date": "ge2026-13-45"}, "date"),
        ({"date": "sa2026-01-01"}, "prefix"),
        ({"code": "1234-5"}, "LOINC"),
        ({"code": "http://snomed.info/sct|8867-4"}, "loinc"),
        ({"category": "imaging"}, "category"),
        ({"_count": "0"}, "_count"),
        ({"_count": "1001"}, "_count"),
        ({"_count": "ten"}, "_count"),
        ({"_sort": "code"}, "_sort"),
        ({"patient": "Patient/123"}, "patient"),
        ({"code": "8867-4" * 50}, "256"),
        ({"color": "red"}, "color"),
        ({"code": ""}, "empty"),
        ({"code": ["8867-4", "8310-5"]}, "more than once"),
        ({f"p{i}": "x" for i in range(30)}, "at most"),
    ],
)
async def test_malformed_and_oversized_parameters(
    w: FhirWorld, params: dict[str, Any], words: str
) -> None:
    st, out, _ = await w.fhir(w.pat, w.pat_t, "Observation", params)
    assert st == 400, out
    assert words.lower() in outcome(out, "invalid").lower()


async def test_lenient_handling_ignores_unknown_parameters(w: FhirWorld) -> None:
    await _readings(w, 1)
    params = {"color": "red", "code": "8867-4"}
    st, body, _ = await w.fhir(
        w.pat, w.pat_t, "Observation", params, headers={"Prefer": "handling=lenient"}
    )
    assert st == 200 and _values(body) == [60]
    # strict (the default, or said) refuses
    st, _, _ = await w.fhir(
        w.pat, w.pat_t, "Observation", params, headers={"Prefer": "handling=strict"}
    )
    assert st == 400


async def test_format_and_accept(w: FhirWorld) -> None:
    for fmt in ("json", "application/fhir+json", "application/json"):
        st, _, _ = await w.fhir(w.pat, w.pat_t, "Observation", {"_format": fmt})
        assert st == 200
    for fmt in ("xml", "application/fhir+xml", "text/turtle"):
        st, out, resp = await w.fhir(w.pat, w.pat_t, "Observation", {"_format": fmt})
        assert st == 406, out
        assert resp.headers["Content-Type"].startswith("application/fhir+json")
        outcome(out, "not-supported")
    for accept in ("application/fhir+xml", "text/html, application/xml;q=0.9"):
        st, out, _ = await w.fhir(w.pat, w.pat_t, "Observation", headers={"Accept": accept})
        assert st == 406, out
    for accept in ("application/fhir+json", "*/*", "text/html, */*;q=0.1"):
        st, _, _ = await w.fhir(w.pat, w.pat_t, "Observation", headers={"Accept": accept})
        assert st == 200


async def test_erased_patient_is_gone(w: FhirWorld) -> None:
    await _readings(w, 1)
    oid = (await _search(w))["entry"][0]["resource"]["id"]
    r = await call(
        w.client,
        "POST",
        f"/v1/patients/{w.pat.sub}/erase",
        w.adm,
        w.adm_t,
        json={"reason": "patient_request"},
    )
    assert r.status == 200, await r.text()
    for path in ("Observation", f"Observation/{oid}"):
        st, out, _ = await w.fhir(w.pat, w.pat_t, path)
        assert st == 410, out
        outcome(out, "deleted")


async def test_a_code_search_matches_any_coding_of_the_observation(w: FhirWorld) -> None:
    """An SpO2 reading sent as 59408-5 is an Observation with the oxygensat profile's
    2708-6 coding too: a token search for either finds it; a 2708-6 reading only 2708-6."""
    t = w.now() - 100
    spo2 = {"code": "59408-5", "unit": "%", "value": 97, "time": iso(t)}
    arterial = {"code": "2708-6", "unit": "%", "value": 95, "time": iso(t + 1)}
    assert (await w.send(batch([spo2, arterial, hr(70, t + 2)]))).status == 201
    assert _values(await _search(w, code="2708-6")) == [97, 95]
    assert _values(await _search(w, code="59408-5")) == [97]
    for e in (await _search(w, code="2708-6"))["entry"]:
        codes = [c["code"] for c in e["resource"]["code"]["coding"]]
        assert "2708-6" in codes
