"""FHIR R4 in and out: a Bundle of vital-signs Observations is accepted like a native batch;
reads come back as a searchset Bundle that validates with fhir.resources."""

from __future__ import annotations

import json
import time
from typing import Any

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
