"""The FHIR export beyond what ``fhir.resources`` checks: Consents carry their status as of
the export, AuditEvents follow IHE BALP (action codes, purposeOfEvent), and every output
names FHIR R4 (4.0.1), the version its profile URLs point at."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from gateway.app import create_app
from gateway.audit.fhir import audit_event, consent_resource
from gateway.config import Config
from ledger.events import EventType
from tests.gateway.idclient import call, get_token, invite_and_enroll
from tests.gateway.test_consent import Clock, World

PURPOSE = "http://terminology.hl7.org/CodeSystem/v3-ActReason"


@pytest.fixture
async def w(aiohttp_client: Any, config: Config) -> World:
    clock = Clock()
    client = await aiohttp_client(create_app(config, clock=clock))
    return await World(client, clock).setup(config)


async def _fhir_export(w: World, query: str) -> tuple[Any, list[dict[str, Any]]]:
    from fhir.resources.R4B.bundle import Bundle

    aud = await invite_and_enroll(w.client, w.adm, w.adm_t, "auditor")
    aud.clock = w.clock
    token = await get_token(w.client, aud)
    r = await call(w.client, "GET", f"/v1/audit/export?format=fhir&{query}", aud, token)
    assert r.status == 200, await r.text()
    text = await r.text()
    Bundle.model_validate_json(text)
    return r, [e["resource"] for e in (await r.json())["entry"]]


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_a_revoked_consent_is_exported_inactive_ending_at_its_revocation(w: World) -> None:
    kept = await (await w.grant(w.prov.sub, ["call"], seconds=86400)).json()
    gone = await (await w.grant(w.prov2.sub, ["vitals.read"], seconds=86400)).json()
    w.clock.t += 100
    r = await call(w.client, "DELETE", f"/v1/consents/{gone['id']}", w.pat, w.pat_t)
    assert r.status == 200
    revoked_at = w.clock.t
    w.clock.t += 50
    _, resources = await _fhir_export(w, f"subject={w.pat.sub}")
    consents = {c["id"]: c for c in resources if c["resourceType"] == "Consent"}
    assert consents[f"consent-{kept['id']}"]["status"] == "active"
    assert consents[f"consent-{kept['id']}"]["provision"]["period"]["end"] == _iso(
        w.clock.t - 150 + 86400
    )
    inactive = consents[f"consent-{gone['id']}"]
    assert inactive["status"] == "inactive"
    assert inactive["provision"]["period"]["end"] == _iso(revoked_at)
    # The revocation keeps its own AuditEvent.
    subtypes = [
        s["code"] for a in resources if a["resourceType"] == "AuditEvent" for s in a["subtype"]
    ]
    assert "consent.revoked" in subtypes


async def test_an_expired_consent_is_exported_inactive(w: World) -> None:
    r = await w.grant(w.prov.sub, ["call"], seconds=60)
    assert r.status == 201
    granted_until = w.clock.t + 60
    w.clock.t += 61
    _, resources = await _fhir_export(w, f"subject={w.pat.sub}&type=consent.granted")
    (c,) = [x for x in resources if x["resourceType"] == "Consent"]
    assert c["status"] == "inactive"
    assert c["provision"]["period"]["end"] == _iso(granted_until)


def test_consent_status_is_judged_at_the_export_time() -> None:
    event = {
        "type": "consent.granted",
        "time": "2026-12-01T09:00:00.000Z",
        "subject": "pat:1",
        "data": {"consent": "c1", "grantee": "prov:1", "scopes": ["call"], "until": 2000},
    }
    assert consent_resource(event, now=1999, revoked=None)["status"] == "active"  # type: ignore[index]
    assert consent_resource(event, now=2000, revoked=None)["status"] == "inactive"  # type: ignore[index]
    c = consent_resource(event, now=1500, revoked=1200)
    assert c is not None and c["status"] == "inactive"
    assert c["provision"]["period"]["end"] == _iso(1200)


async def test_reads_are_balp_reads_with_their_purpose(w: World) -> None:
    assert (await w.grant(w.prov.sub, ["vitals.read"])).status == 201
    await w.authorize(w.prov, "provider", "vitals.read")
    r = await call(
        w.client,
        "POST",
        "/v1/emergency-access",
        w.prov2,
        w.prov2_t,
        json={"patient": w.pat.sub, "reason": "unconscious in the ER, allergy check"},
    )
    assert r.status == 201
    await w.authorize(w.prov2, "provider", "vitals.read")
    _, resources = await _fhir_export(w, "type=consent.used")
    reads = {a["agent"][0]["who"]["identifier"]["value"]: a for a in resources}
    for who, purpose in ((w.prov.sub, "TREAT"), (w.prov2.sub, "ETREAT")):
        a = reads[who]
        assert a["action"] == "R"
        ((coding,),) = [p["coding"] for p in a["purposeOfEvent"]]
        assert (coding["system"], coding["code"]) == (PURPOSE, purpose)
        assert {"system": "http://hl7.org/fhir/restful-interaction", "code": "read"} in [
            {k: s[k] for k in ("system", "code")} for s in a["subtype"]
        ]
        patient = next(e for e in a["entity"] if e.get("role", {}).get("code") == "1")
        assert patient["what"]["identifier"]["value"] == w.pat.sub


# What IHE BALP (and DICOM PS3.15 for the event types it reuses) says each ledger event is:
# C create, R read, U update, D delete, E execute (authentication, queries, system events).
BALP_ACTION = {
    EventType.GATEWAY_STARTED: "E",
    EventType.GATEWAY_STOPPED: "E",
    EventType.IDENTITY_ENROLLED: "C",
    EventType.INVITE_CREATED: "C",
    EventType.ATTESTATION_ISSUED: "E",  # DICOM 110114 User Authentication is an execute
    EventType.ATTESTATION_REVOKED: "U",
    EventType.CONSENT_GRANTED: "C",
    EventType.CONSENT_REVOKED: "U",
    EventType.CONSENT_USED: "R",
    EventType.CONSENT_REFUSED: "R",
    EventType.EMERGENCY_ACCESS: "C",
    EventType.SESSION_SCHEDULED: "C",
    EventType.SESSION_WAITING: "U",
    EventType.SESSION_ADMITTED: "U",
    EventType.SESSION_CONNECTED: "U",
    EventType.SESSION_MEDIA_BOUND: "U",
    EventType.SESSION_ENDED: "U",
    EventType.SESSION_CANCELLED: "U",
    EventType.SESSION_NO_SHOW: "U",
    EventType.SESSION_SOCKET_CLOSED: "U",
    EventType.VITALS_BATCH: "C",
    EventType.PATIENT_ERASED: "D",
    EventType.AUDIT_QUERY: "E",  # BALP Query / DICOM 110112 Query: execute
    EventType.AUTH_REFUSED: "E",
    EventType.AUTH_REFUSED_SUMMARY: "E",
    EventType.WITNESS_ALARM: "E",
    EventType.FEDERATION_ACCEPTED: "E",
    EventType.FEDERATION_REFUSED: "E",
    EventType.SUPPLY_EVENT: "C",
    EventType.SUPPLY_REFUSED: "E",
    EventType.PROGRAM_PUBLISHED: "C",
    EventType.INCENTIVE_EVALUATED: "E",
    EventType.REWARD_ISSUED: "C",
    EventType.REWARD_REVOKED: "U",
}
FAILED = {
    EventType.AUTH_REFUSED,
    EventType.AUTH_REFUSED_SUMMARY,
    EventType.CONSENT_REFUSED,
    EventType.FEDERATION_REFUSED,
    EventType.SUPPLY_REFUSED,
}


@pytest.mark.parametrize("kind", list(EventType))
def test_every_event_kind_has_its_balp_action_and_outcome(kind: EventType) -> None:
    from fhir.resources.R4B.auditevent import AuditEvent

    data = {"scope": "vitals.read", "purpose": "treatment"} if kind.startswith("consent.") else {}
    event = {"v": 1, "type": str(kind), "time": "2026-12-01T09:00:00.000Z", "actor": "prov:1"}
    a = audit_event(7, "aGFzaA==", {**event, "subject": "pat:1", "data": data})
    AuditEvent.model_validate(a)
    assert a["action"] == BALP_ACTION[kind]
    assert (a["outcome"] != "0") == (kind in FAILED)


@pytest.mark.parametrize(
    ("scope", "action"), [("vitals.read", "R"), ("vitals.stream", "R"), ("call", "E")]
)
def test_a_consent_use_is_a_read_only_for_reading_scopes(scope: str, action: str) -> None:
    event = {
        "type": "consent.used",
        "time": "2026-12-01T09:00:00.000Z",
        "actor": "prov:1",
        "subject": "pat:1",
        "data": {"scope": scope, "purpose": "treatment", "consent": "c1"},
    }
    assert audit_event(1, "aGFzaA==", event)["action"] == action


def test_the_patient_entity_is_a_person_in_the_patient_role_and_others_are_not() -> None:
    event = {"type": "identity.enrolled", "time": "2026-12-01T09:00:00.000Z", "actor": "adm:1"}
    pat = audit_event(1, "aGFzaA==", {**event, "subject": "pat:1"})["entity"][1]
    prov = audit_event(1, "aGFzaA==", {**event, "subject": "prov:1"})["entity"][1]
    assert pat["role"]["code"] == "1" and pat["type"]["code"] == "1"
    assert prov["role"]["code"] != "1"


async def test_fhir_responses_name_r4(w: World) -> None:
    r, _ = await _fhir_export(w, "type=consent.granted")
    assert r.content_type == "application/fhir+json"
    assert "fhirVersion=4.0" in r.headers["Content-Type"].replace(" ", "")
    r = await call(
        w.client, "GET", f"/v1/patients/{w.pat.sub}/access-report?format=fhir", w.pat, w.pat_t
    )
    assert r.status == 200 and "fhirVersion=4.0" in r.headers["Content-Type"].replace(" ", "")


async def test_an_export_that_fails_midway_is_cut_not_left_hanging(
    w: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: an error after the 200 was sent left the client waiting forever for the
    rest of a Bundle (the problem+json the middleware built could not be sent)."""
    import asyncio

    import aiohttp

    import gateway.audit.http as audit_http

    def broken(*_: Any) -> Any:
        raise RuntimeError("a bug while mapping a row")

    aud = await invite_and_enroll(w.client, w.adm, w.adm_t, "auditor")
    aud.clock = w.clock
    token = await get_token(w.client, aud)
    monkeypatch.setattr(audit_http, "audit_event", broken)
    r = await call(w.client, "GET", "/v1/audit/export?format=fhir", aud, token)
    assert r.status == 200
    with pytest.raises(aiohttp.ClientPayloadError):
        await asyncio.wait_for(r.read(), 10)
