"""/fhir/metadata says exactly what the handlers do; SMART discovery; errors outside any
handler (unknown path, wrong method) are OperationOutcome too."""

from __future__ import annotations

import pytest

from gateway.auth.smart import SMART_SCOPES, allows
from gateway.fhir.params import RESOURCES
from tests.fhir.conftest import FhirWorld, outcome, validate

EXAMPLE = {
    "patient": None,  # filled per test
    "code": "8867-4",
    "category": "vital-signs",
    "date": "ge2020-01-01",
    "agent": None,
    "entity": None,
    "type": "rest",
    "subtype": "consent.used",
    "status": "active",
    "actor": None,
    "target": None,
}


async def test_capability_statement_validates_and_lists_exactly_what_is_served(
    w: FhirWorld,
) -> None:
    r = await w.client.get("/fhir/metadata")
    assert r.status == 200
    assert r.headers["Content-Type"].startswith("application/fhir+json; fhirVersion=4.0")
    cs = await r.json(content_type=None)
    validate(cs)
    assert cs["fhirVersion"] == "4.0.1" and cs["kind"] == "instance"
    rest = cs["rest"][0]
    (oauth,) = rest["security"]["extension"]
    uris = {e["url"]: e["valueUri"] for e in oauth["extension"]}
    assert uris["token"] == str(w.client.make_url("/oauth/token"))
    assert rest["security"]["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    listed = {
        res["type"]: (
            {i["code"] for i in res["interaction"]},
            {p["name"] for p in res["searchParam"]},
        )
        for res in rest["resource"]
    }
    assert set(listed) == set(RESOURCES)
    for name, resource in RESOURCES.items():
        interactions, params = listed[name]
        assert interactions == set(resource.interactions)
        assert params == {p.name for p in resource.params} | {"_count", "_cursor", "_format"}


@pytest.mark.parametrize("resource", sorted(RESOURCES))
async def test_each_listed_parameter_is_taken_and_no_other(w: FhirWorld, resource: str) -> None:
    """Drift check through HTTP: every parameter the statement lists for a resource gets
    past parameter checking; one it does not list is refused."""
    cs = await (await w.client.get("/fhir/metadata")).json(content_type=None)
    (res,) = [r for r in cs["rest"][0]["resource"] if r["type"] == resource]
    who, tok = (w.aud, w.aud_t) if resource == "AuditEvent" else (w.pat, w.pat_t)
    for p in res["searchParam"]:
        if p["type"] == "special":
            continue
        value = EXAMPLE[p["name"]] or w.pat.sub
        if p["name"] == "target":
            value = f"Observation/{w.pat.sub[4:]}-1-0"
        st, body, _ = await w.fhir(who, tok, resource, {p["name"]: value})
        # 404: the target reading does not exist; anything but a refused parameter.
        assert st in (200, 404), (p["name"], body)
    st, body, _ = await w.fhir(who, tok, resource, {"_elements": "id"})
    assert st == 400 and "_elements" in outcome(body, "invalid")


def test_every_smart_scope_names_a_served_resource() -> None:
    for role, scopes in SMART_SCOPES.items():
        for scope in scopes:
            res = scope.split("/", 1)[1].split(".", 1)[0]
            assert res in RESOURCES, scope
            assert allows(frozenset({scope}), role, res, "s")


@pytest.mark.parametrize(
    ("scope", "role", "resource", "interaction", "ok"),
    [
        ("patient/Observation.rs", "patient", "Observation", "s", True),
        ("patient/Observation.r", "patient", "Observation", "s", False),
        ("patient/Observation.s", "patient", "Observation", "r", False),
        ("patient/Observation.read", "patient", "Observation", "r", True),
        ("patient/*.rs", "patient", "Observation", "r", True),
        ("patient/Observation.cruds", "patient", "Observation", "s", True),
        ("patient/Observation.sr", "patient", "Observation", "s", False),  # not v2 order
        ("user/Observation.rs", "patient", "Observation", "s", False),  # not its context
        ("patient/Observation.rs", "provider", "Observation", "s", False),
        ("system/AuditEvent.rs", "auditor", "AuditEvent", "s", True),
        ("user/Consent.rs", "auditor", "AuditEvent", "s", False),
        ("vitals.read", "patient", "Observation", "s", False),
    ],
)
def test_scope_matching(scope: str, role: str, resource: str, interaction: str, ok: bool) -> None:
    assert allows(frozenset({scope}), role, resource, interaction) is ok


async def test_smart_discovery_at_the_fhir_base(w: FhirWorld) -> None:
    root = await (await w.client.get("/.well-known/smart-configuration")).json()
    at_base = await (await w.client.get("/fhir/.well-known/smart-configuration")).json()
    assert root == at_base
    assert "permission-v2" in root["capabilities"]
    assert {"patient/Observation.rs", "system/AuditEvent.rs"} <= set(root["scopes_supported"])


async def test_errors_outside_handlers_are_operation_outcome(w: FhirWorld) -> None:
    r = await w.client.get("/fhir/Patient")
    assert r.status == 404
    assert r.headers["Content-Type"].startswith("application/fhir+json")
    outcome(await r.json(content_type=None), "not-found")
    r = await w.client.post("/fhir/metadata")
    assert r.status == 405 and "GET" in r.headers["Allow"]
    outcome(await r.json(content_type=None), "not-supported")
    # Outside /fhir nothing changes: problem+json.
    r = await w.client.get("/fhirx")
    assert r.headers["Content-Type"].startswith("application/problem+json")


async def test_metadata_format_and_parameters(w: FhirWorld) -> None:
    r = await w.client.get("/fhir/metadata", params={"_format": "xml"})
    assert r.status == 406
    outcome(await r.json(content_type=None), "not-supported")
    r = await w.client.get("/fhir/metadata", headers={"Accept": "application/fhir+xml"})
    assert r.status == 406
    r = await w.client.get("/fhir/metadata", params={"mode": "full"})
    assert r.status == 400
    outcome(await r.json(content_type=None), "invalid")
