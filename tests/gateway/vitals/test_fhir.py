"""FHIR R4 in and out: a Bundle of vital-signs Observations is accepted like a native batch;
reads come back as a searchset Bundle that validates with fhir.resources."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.gateway.vitals.world import World, iso, sign

LOINC, UCUM = "http://loinc.org", "http://unitsofmeasure.org"


def obs(code: str, unit: str, value: float, t: float, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "effectiveDateTime": iso(t),
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
        **extra,
    }


def bp_obs(sys: float, dia: float, t: float) -> dict[str, Any]:
    o = obs("85354-9", "mm[Hg]", 0, t)
    del o["valueQuantity"]
    o["component"] = [
        {
            "code": {"coding": [{"system": LOINC, "code": c}]},
            "valueQuantity": {"value": v, "unit": "mm[Hg]", "system": UCUM, "code": "mm[Hg]"},
        }
        for c, v in (("8480-6", sys), ("8462-4", dia))
    ]
    return o


def bundle(batch_id: str, *observations: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "identifier": {"system": "urn:example:device-batches", "value": batch_id},
        "entry": [{"resource": o} for o in observations],
    }


async def send_fhir(world: World, b: dict[str, Any] | bytes) -> Any:
    return await world.send(b, cty="fhir+json")


async def test_a_fhir_bundle_is_accepted_and_validates(world: World) -> None:
    from fhir.resources.R4B.bundle import Bundle

    now = time.time()
    b = bundle(
        "fhir-1",
        obs("8867-4", "/min", 64, now - 60),
        obs("8310-5", "[degF]", 99.5, now - 50),
        obs("15074-8", "mg/dL", 126, now - 40),
        bp_obs(118, 76, now - 30),
    )
    Bundle.model_validate(b)  # what the test sends is itself valid FHIR
    resp = await send_fhir(world, b)
    body = await resp.json()
    assert resp.status == 201, body
    assert body["batch_id"] == "fhir-1" and body["count"] == 4
    (ev,) = await world.events("vitals.batch")
    assert ev["data"]["form"] == "fhir"
    again = await send_fhir(world, b)
    assert again.status == 200


async def test_bad_observations_are_named_by_entry(world: World) -> None:
    now = time.time()
    no_ucum = obs("8867-4", "/min", 64, now - 60)
    no_ucum["valueQuantity"]["system"] = "http://example.org"
    b = bundle(
        "fhir-bad",
        obs("8867-4", "/min", 64, now - 60),
        obs("8867-4", "/min", 640, now - 59),
        no_ucum,
        {**obs("8867-4", "/min", 64, now - 58), "status": "entered-in-error"},
        {"resourceType": "Patient"},
    )
    resp = await send_fhir(world, b)
    body = await resp.json()
    assert resp.status == 422, body
    assert [e["pointer"] for e in body["errors"]] == [
        "/entry/2/resource",
        "/entry/3/resource",
        "/entry/4/resource",
    ]
    # Fix those: the range error of entry 1 is found next.
    b["entry"] = b["entry"][:2]
    body = await (await send_fhir(world, b)).json()
    assert [e["pointer"] for e in body["errors"]] == ["/entry/1/resource"]


async def test_a_bundle_about_another_patient_is_refused(world: World) -> None:
    ref = {"identifier": {"system": "urn:telegate:subject", "value": world.other.sub}}
    b = bundle("fhir-x", obs("8867-4", "/min", 64, time.time() - 5, subject=ref))
    assert (await send_fhir(world, b)).status == 403
    ref["identifier"]["value"] = world.pat.sub
    assert (await send_fhir(world, b)).status == 201


async def test_malformed_bundles(world: World) -> None:
    now = time.time()
    for b in (
        {"resourceType": "Observation"},
        {**bundle("x", obs("8867-4", "/min", 64, now)), "type": "searchset"},
        {**bundle("x", obs("8867-4", "/min", 64, now)), "identifier": {}},
        {**bundle("has space", obs("8867-4", "/min", 64, now))},
        {k: v for k, v in bundle("x").items() if k != "entry"},
    ):
        resp = await send_fhir(world, b)
        assert resp.status == 400, b
    # A FHIR payload signed without its cty is read as native, and refused.
    resp = await world.send(bundle("y", obs("8867-4", "/min", 64, now)))
    assert resp.status == 400
    assert (await world.send(bundle("z"), cty="text/csv")).status == 400


async def test_reads_as_fhir_validate_and_carry_the_vital_signs_profiles(world: World) -> None:
    from fhir.resources.R4B.bundle import Bundle
    from fhir.resources.R4B.observation import Observation

    now = time.time()
    b = bundle(
        "fhir-2",
        obs("59408-5", "%", 97, now - 20),
        obs("29463-7", "[lb_av]", 165, now - 10),
        bp_obs(125, 82, now - 5),
    )
    assert (await send_fhir(world, b)).status == 201
    resp = await world.read(world.pat, world.pat_t, format="fhir")
    assert resp.status == 200 and resp.content_type == "application/fhir+json"
    # R4, as the profile URLs claimed: the media type says so (R4 http.html, fhirVersion).
    assert "fhirVersion=4.0" in resp.headers["Content-Type"].replace(" ", "")
    out = await resp.json()
    parsed = Bundle.model_validate(out)
    assert parsed.type == "searchset" and out["total"] == 3
    observations = [Observation.model_validate(e["resource"]) for e in out["entry"]]
    by_code = {o.code.coding[0].code: o for o in observations}
    assert by_code["29463-7"].valueQuantity.code == "kg"
    assert float(by_code["29463-7"].valueQuantity.value) == 74.84
    assert "http://hl7.org/fhir/StructureDefinition/bp" in by_code["85354-9"].meta.profile
    assert [c.valueQuantity.value for c in by_code["85354-9"].component] == [125, 82]
    assert all(o.subject.identifier.value == world.pat.sub for o in observations)


async def test_the_next_page_link_is_absolute_and_keeps_the_search(world: World) -> None:
    """FHIR R4 paging (http.html#paging): Bundle.link[next].url is an absolute URL the
    client follows as is; it keeps the search's parameters (format=fhir, code, limit) and
    moves only the cursor, so following it gives the next page of the same search."""
    from yarl import URL

    now = time.time()
    b = bundle("fhir-p", *(obs("8867-4", "/min", 60 + i, now - 50 + i) for i in range(3)))
    assert (await send_fhir(world, b)).status == 201
    resp = await world.read(world.pat, world.pat_t, format="fhir", code="8867-4", limit="2")
    out = await resp.json()
    (link,) = out["link"]
    url = URL(link["url"])
    assert link["relation"] == "next" and url.is_absolute()
    assert str(url.origin()) == str(world.client.make_url("/").origin())
    assert url.path == f"/v1/patients/{world.pat.sub}/vitals"
    assert {k: url.query[k] for k in ("format", "code", "limit")} == {
        "format": "fhir",
        "code": "8867-4",
        "limit": "2",
    }
    resp = await world.read(world.pat, world.pat_t, **dict(url.query))
    page = await resp.json()
    assert resp.content_type == "application/fhir+json" and len(page["entry"]) == 1
    assert "link" not in page


async def test_the_audit_export_has_a_provenance_per_batch_without_the_signature(
    world: World,
) -> None:
    import hashlib

    from fhir.resources.R4B.bundle import Bundle
    from fhir.resources.R4B.provenance import Provenance

    from tests.gateway.idclient import call, get_token, invite_and_enroll

    now = time.time()
    jws = sign(world.dev, bundle("prov-1", obs("8867-4", "/min", 64, now - 5)), cty="fhir+json")
    assert (await world.post(jws)).status == 201
    aud = await invite_and_enroll(world.client, world.adm, world.adm_t, "auditor")
    tok = await get_token(world.client, aud)
    r = await call(world.client, "GET", "/v1/audit/export?format=fhir&type=vitals.batch", aud, tok)
    assert r.status == 200, await r.text()
    out = await r.json()
    Bundle.model_validate(out)
    provs = [e["resource"] for e in out["entry"] if e["resource"]["resourceType"] == "Provenance"]
    assert len(provs) == 1
    p = Provenance.model_validate(provs[0])
    assert p.agent[0].who.identifier.value == world.dev.sub
    assert p.agent[0].onBehalfOf.identifier.value == world.pat.sub
    assert p.target[0].identifier.value == f"{world.dev.sub}/prov-1"
    assert p.signature[0].sigFormat == "application/jose" and p.signature[0].data is None
    import base64

    sig = base64.urlsafe_b64decode(jws.rsplit(".", 1)[1] + "==")
    assert p.entity[0].what.identifier.value == hashlib.sha256(sig).hexdigest()
    assert jws.rsplit(".", 1)[1] not in await r.text()


# What each FHIR R4 (4.0.1) vital-signs profile requires of an Observation, written out from
# https://hl7.org/fhir/R4/observation-vitalsigns.html and the profile pages it links to:
# the LOINC coding the profile fixes, the UCUM codes its value set allows, and for the
# blood-pressure panel the components it requires (each 1..1, in mm[Hg]). Every profile also
# derives from the base vitalsigns profile: status, the vital-signs category, a subject that is
# a Patient, effective[x], and a value or components carrying UCUM quantities.
R4_PROFILE = "http://hl7.org/fhir/StructureDefinition/"
R4_VITAL_SIGNS: dict[str, dict[str, Any]] = {
    "vitalspanel": {"code": "85353-1"},
    "resprate": {"code": "9279-1", "units": {"/min"}},
    "heartrate": {"code": "8867-4", "units": {"/min"}},
    "oxygensat": {"code": "2708-6", "units": {"%"}},
    "bodytemp": {"code": "8310-5", "units": {"Cel", "[degF]"}},
    "bodyheight": {"code": "8302-2", "units": {"cm", "[in_i]"}},
    "headcircum": {"code": "9843-4", "units": {"cm", "[in_i]"}},
    "bodyweight": {"code": "29463-7", "units": {"kg", "g", "[lb_av]"}},
    "bmi": {"code": "39156-5", "units": {"kg/m2"}},
    "bp": {"code": "85354-9", "components": {"8480-6": {"mm[Hg]"}, "8462-4": {"mm[Hg]"}}},
}
VITALSIGNS = R4_PROFILE + "vitalsigns"
VS_CATEGORY = ("http://terminology.hl7.org/CodeSystem/observation-category", "vital-signs")


def _loincs(concept: dict[str, Any]) -> set[str]:
    return {c["code"] for c in concept.get("coding", []) if c.get("system") == LOINC}


def _check_quantity(q: Any, units: set[str] | None, where: str) -> None:
    assert isinstance(q, dict), f"{where}: no valueQuantity"
    assert isinstance(q.get("value"), int | float), f"{where}: no value"
    assert q.get("system") == UCUM, f"{where}: quantity system is not UCUM"
    assert isinstance(q.get("unit"), str) and q.get("code"), f"{where}: unit and code required"
    if units is not None:
        assert q["code"] in units, f"{where}: {q['code']!r} is not one of {sorted(units)}"


def check_vital_signs_profiles(o: dict[str, Any]) -> None:
    """Raise AssertionError naming the first requirement of a claimed R4 vital-signs profile
    that ``o`` misses; also fail when ``o`` carries a profile's code without claiming it."""
    claimed = set(o.get("meta", {}).get("profile", []))
    codes = _loincs(o["code"])
    categories = {(c.get("system"), c.get("code")) for k in o["category"] for c in k["coding"]}
    for name, rule in R4_VITAL_SIGNS.items():
        url = R4_PROFILE + name
        if rule["code"] in codes:
            assert url in claimed, f"carries {rule['code']} but does not claim {url}"
        if url not in claimed:
            continue
        assert VITALSIGNS in claimed, f"{url} derives from {VITALSIGNS}: claim both"
        assert rule["code"] in codes, f"{url} requires the LOINC coding {rule['code']}"
        if "components" in rule:
            comps = {next(iter(_loincs(c["code"]))): c for c in o.get("component", [])}
            for ccode, units in rule["components"].items():
                assert ccode in comps, f"{url} requires the component {ccode}"
                _check_quantity(comps[ccode].get("valueQuantity"), units, f"{url} {ccode}")
        elif "units" in rule:
            _check_quantity(o.get("valueQuantity"), rule["units"], url)
    if VITALSIGNS in claimed:
        assert VS_CATEGORY in categories, "vitalsigns requires the vital-signs category"
        assert o.get("status") in {"registered", "preliminary", "final", "amended"} | {
            "corrected",
            "cancelled",
            "entered-in-error",
            "unknown",
        }
        subject = o.get("subject") or {}
        assert subject.get("type") == "Patient" or str(subject.get("reference", "")).startswith(
            "Patient/"
        ), "vitalsigns requires subject: Reference(Patient)"
        assert o.get("effectiveDateTime") or o.get("effectivePeriod"), "effective[x] is 1..1"
        assert "valueQuantity" in o or o.get("component") or o.get("dataAbsentReason")
    else:
        assert VS_CATEGORY not in categories, "vital-signs category without the vitalsigns profile"
        assert not any(p.startswith(R4_PROFILE) for p in claimed), claimed


def _reading_of(code: str) -> dict[str, Any]:
    from gateway.vitals.codes import BP_PANEL, CODES

    t = "2026-12-01T09:30:00.000Z"
    if code == BP_PANEL:
        parts = (("8480-6", 120.0), ("8462-4", 80.0))
        comps = [{"code": c, "unit": CODES[c].unit, "value": v} for c, v in parts]
        return {"code": code, "time": t, "components": comps}
    c = CODES[code]
    return {"code": code, "unit": c.unit, "value": round((c.low + c.high) / 2, 1), "time": t}


def _table() -> list[str]:
    from gateway.vitals.codes import BP_PANEL, CODES

    return [*CODES, BP_PANEL]


@pytest.mark.parametrize("code", _table())
def test_every_code_in_the_table_meets_the_r4_profiles_it_claims(code: str) -> None:
    from fhir.resources.R4B.observation import Observation

    from gateway.vitals.fhir import observation

    o = observation(_reading_of(code), "pat:p1", "dev:d1", "b1", 0)
    Observation.model_validate(o)
    check_vital_signs_profiles(o)


def test_spo2_by_pulse_oximetry_carries_the_oxygensat_coding() -> None:
    from gateway.vitals.fhir import observation

    o = observation(_reading_of("59408-5"), "pat:p1", "dev:d1", "b1", 0)
    assert [c["code"] for c in o["code"]["coding"]] == ["2708-6", "59408-5"]
    assert R4_PROFILE + "oxygensat" in o["meta"]["profile"]


def test_glucose_claims_no_vital_signs_profile() -> None:
    from gateway.vitals.fhir import observation

    o = observation(_reading_of("15074-8"), "pat:p1", "dev:d1", "b1", 0)
    assert "meta" not in o
    assert o["category"][0]["coding"][0]["code"] == "laboratory"


def test_the_profile_check_catches_what_the_profiles_require() -> None:
    """The checker itself: each requirement it enforces is seen to fail once."""
    from gateway.vitals.fhir import observation

    def broken(code: str, change: Any) -> None:
        o = observation(_reading_of(code), "pat:p1", "dev:d1", "b1", 0)
        change(o)
        with pytest.raises(AssertionError):
            check_vital_signs_profiles(o)

    broken("59408-5", lambda o: o["code"].update(coding=o["code"]["coding"][1:]))
    broken("8867-4", lambda o: o["valueQuantity"].update(code="beats/min"))
    broken("8867-4", lambda o: o["valueQuantity"].update(system="urn:x"))
    broken("85354-9", lambda o: o["component"].pop())
    broken("8310-5", lambda o: o.pop("effectiveDateTime"))
    broken("8310-5", lambda o: o["subject"].pop("type", None))
    broken("29463-7", lambda o: o["meta"]["profile"].remove(VITALSIGNS))
    broken("29463-7", lambda o: o.pop("meta"))
    broken("15074-8", lambda o: o.update(meta={"profile": [R4_PROFILE + "bodyweight"]}))


async def test_a_value_quantity_of_hundreds_of_digits_is_refused_not_a_500(world: World) -> None:
    b = bundle("huge", obs("8867-4", "/min", 10**400, time.time() - 5))
    resp = await send_fhir(world, b)
    assert resp.status in (400, 422), await resp.text()
    assert resp.content_type == "application/problem+json"


async def test_a_deeply_nested_bundle_is_a_400_not_a_500(world: World) -> None:
    o = obs("8867-4", "/min", 64, time.time() - 5)
    payload = json.dumps(bundle("deep", o)).encode()
    payload = payload[:-1] + b', "extension": ' + b"[" * 2500 + b"]" * 2500 + b"}"
    resp = await send_fhir(world, payload)
    assert resp.status == 400, await resp.text()
    assert resp.content_type == "application/problem+json"


async def test_a_status_that_is_not_a_string_is_refused_by_entry(world: World) -> None:
    # A list looked up in the set of statuses was a TypeError: a 500.
    b = bundle("status-list", obs("8867-4", "/min", 64, time.time() - 5, status=[]))
    resp = await send_fhir(world, b)
    body = await resp.json()
    assert resp.status == 422, body
    assert body["errors"][0]["pointer"] == "/entry/0/resource"


def test_a_profile_conformant_spo2_reads_back_as_pulse_oximetry() -> None:
    """Found by fuzz/fhir.py: the oxygensat profile puts 2708-6 (arterial blood) first and
    the specific 59408-5 (pulse oximetry) beside it, as observation() writes it; reading the
    first LOINC coding turned every such reading into an arterial blood gas."""
    from gateway.vitals.fhir import bundle_readings, observation

    o = observation(_reading_of("59408-5"), "pat:p1", "dev:d1", "b1", 0)
    _, raw, _ = bundle_readings(json.dumps(bundle("b1", o)).encode())
    assert [r["code"] for r in raw] == ["59408-5"]
    alone = obs("2708-6", "%", 97, time.time())
    _, raw, _ = bundle_readings(json.dumps(bundle("b2", alone)).encode())
    assert [r["code"] for r in raw] == ["2708-6"]
