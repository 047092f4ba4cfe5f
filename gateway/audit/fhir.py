"""Ledger events as FHIR R4 (4.0.1) AuditEvent, Consent and Provenance resources, following
IHE Basic Audit Log Patterns (BALP).

Built as plain dicts (a page of thousands is serialised while streaming); the tests validate
every resource with ``fhir.resources``' R4B models, which for these resources are R4's
(R4B changed only the subscription, medication-definition and evidence modules). Identifiers
only: the ledger holds no PHI, so neither does an export.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

__all__ = ["audit_event", "consent_resource", "provenance_resource"]

EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
TELEGATE_TYPE = "urn:telegate:event-type"
SUBJECT_SYSTEM = "urn:telegate:subject"
LEDGER_SYSTEM = "urn:telegate:ledger-index"

# BALP action codes: C create, R read, U update, D delete, E execute. Every kind of event
# is named here (a test over EventType fails for a kind added without one); the fallback E
# is for kinds written by a newer gateway than this one.
_ACTION = {
    "gateway.started": "E",
    "gateway.stopped": "E",
    "identity.enrolled": "C",
    "identity.invite_created": "C",
    # DICOM 110114 User Authentication (the type below) is an execute, as BALP reuses it.
    "attestation.issued": "E",
    "attestation.revoked": "U",
    "consent.granted": "C",
    "consent.revoked": "U",
    "consent.emergency_access": "C",
    "session.scheduled": "C",
    "session.waiting": "U",
    "session.admitted": "U",
    "session.connected": "U",
    "session.media_bound": "U",
    "session.ended": "U",
    "session.cancelled": "U",
    "session.no_show": "U",
    # The gateway closing a party's socket (a revocation ended what allowed it).
    "session.socket_closed": "U",
    "vitals.batch": "C",
    "patient.erased": "D",
    # BALP Query and DICOM 110112 Query are executes, not reads.
    "audit.query": "E",
    "auth.refused": "E",
    "witness.alarm": "E",
    "federation.accepted": "E",
    "federation.refused": "E",
    "auth.refused_summary": "E",
    "supply.event": "C",
    "supply.refused": "E",
    "incentive.program_published": "C",
    "incentive.evaluated": "E",
    "incentive.reward_issued": "C",
    "incentive.reward_revoked": "U",
}
#: A consent use (or refusal) is a read of the patient's data for these scopes; ``call``
#: opens a session, which is its own create.
_READ_SCOPES = frozenset({"vitals.read", "vitals.stream"})
_CONSENT_CHECK = frozenset({"consent.used", "consent.refused"})
#: The system working as meant, refusing (BALP outcome 4, minor failure).
_FAILED = frozenset(
    {
        "auth.refused",
        "auth.refused_summary",
        "consent.refused",
        "federation.refused",
        "supply.refused",
    }
)
RESTFUL = "http://hl7.org/fhir/restful-interaction"
_RESTFUL = {"C": "create", "R": "read", "U": "update", "D": "delete"}
# The recorded purpose as a v3 PurposeOfUse code (BALP purposeOfEvent).
PURPOSE_OF_USE = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
_PURPOSE = {
    "treatment": ("TREAT", "treatment"),
    "emergency": ("ETREAT", "Emergency Treatment"),
    "break_the_glass": ("ETREAT", "Emergency Treatment"),
    "payment": ("HPAYMT", "healthcare payment"),
    "operations": ("HOPERAT", "healthcare operations"),
    "research": ("HRESCH", "healthcare research"),
    "public_health": ("PUBHLTH", "public health"),
    "patient_request": ("PATRQT", "patient requested"),
}
# DICOM audit event ids where one fits (BALP profiles reuse them).
_DICOM = {
    "auth.refused": ("110114", "User Authentication"),
    "auth.refused_summary": ("110114", "User Authentication"),
    "attestation.issued": ("110114", "User Authentication"),
    "federation.accepted": ("110114", "User Authentication"),
    "federation.refused": ("110114", "User Authentication"),
    "audit.query": ("110112", "Query"),
    "gateway.started": ("110100", "Application Activity"),
    "gateway.stopped": ("110100", "Application Activity"),
}
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"


def _ref(value: str) -> dict[str, Any]:
    return {"identifier": {"system": SUBJECT_SYSTEM, "value": value}}


def _action(kind: str, data: dict[str, Any]) -> str:
    if kind in _CONSENT_CHECK:
        return "R" if data.get("scope") in _READ_SCOPES else "E"
    return _ACTION.get(kind, "E")


def _purpose(kind: str, data: dict[str, Any]) -> list[dict[str, Any]]:
    """purposeOfEvent from what the ledger recorded; an emergency access (or a use that
    relied on one) is emergency treatment whatever purpose was named."""
    if kind == "consent.emergency_access" or data.get("break_glass"):
        key: Any = "emergency"
    else:
        key = data.get("purpose")
    if key not in _PURPOSE:
        return []
    code, display = _PURPOSE[key]
    return [{"coding": [{"system": PURPOSE_OF_USE, "code": code, "display": display}]}]


def _subject_entity(subject: str) -> dict[str, Any]:
    """BALP's patient entity (Person in the Patient role); other subjects are users, and
    devices system objects."""
    prefix = subject.split(":", 1)[0]
    if prefix == "pat":
        etype, role = ("1", "Person"), ("1", "Patient")
    elif prefix == "dev":
        etype, role = ("2", "System Object"), ("4", "Domain Resource")
    else:
        etype, role = ("1", "Person"), ("6", "User")
    return {
        "what": _ref(subject),
        "type": {"system": ENTITY_TYPE, "code": etype[0], "display": etype[1]},
        "role": {"system": OBJECT_ROLE, "code": role[0], "display": role[1]},
    }


def audit_event(index: int, leaf_hash_b64: str, event: dict[str, Any]) -> dict[str, Any]:
    """One ledger event as a FHIR R4 AuditEvent (IHE BALP shape)."""
    kind = str(event.get("type", ""))
    raw = event.get("data")
    data: dict[str, Any] = raw if isinstance(raw, dict) else {}
    code, display = _DICOM.get(kind, ("rest", "RESTful Operation"))
    system = DCM if kind in _DICOM else EVENT_TYPE
    failed = kind in _FAILED
    action = _action(kind, data)
    subtype = [{"system": TELEGATE_TYPE, "code": kind}]
    if system == EVENT_TYPE and action in _RESTFUL:
        # BALP's rest events name the RESTful interaction they stand for.
        subtype.append({"system": RESTFUL, "code": _RESTFUL[action]})
    res: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": f"ledger-{index}",
        "type": {"system": system, "code": code, "display": display},
        "subtype": subtype,
        "action": action,
        "recorded": event.get("time"),
        # 0 success, 4 minor failure (a refused request is the system working as meant).
        "outcome": "4" if failed else "0",
        "agent": [{"who": _ref(str(event.get("actor", "unknown"))), "requestor": True}],
        "source": {"observer": {"display": "telegate gateway"}},
        "entity": [
            {
                "what": {"identifier": {"system": LEDGER_SYSTEM, "value": str(index)}},
                "description": f"ledger leaf hash {leaf_hash_b64}",
            }
        ],
    }
    purpose = _purpose(kind, data)
    if purpose:
        res["purposeOfEvent"] = purpose
    if event.get("subject"):
        res["entity"].append(_subject_entity(str(event["subject"])))
    if event.get("session"):
        res["entity"].append(
            {
                "what": {
                    "identifier": {"system": "urn:telegate:session", "value": str(event["session"])}
                }
            }
        )
    if "jti" in data:
        # BALP: the OAuth token is identified by its jti as a URN.
        res["entity"].append(
            {"what": {"identifier": {"value": f"urn:ietf:params:oauth:jti:{data['jti']}"}}}
        )
    if failed:
        res["outcomeDesc"] = str(data.get("problem", data.get("reason", "refused")))
    return res


def _stamp(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def consent_resource(
    event: dict[str, Any], *, now: int, revoked: int | None
) -> dict[str, Any] | None:
    """A ``consent.granted`` event as a FHIR Consent with its status as of ``now`` (epoch
    seconds): ``inactive`` (R4 ConsentState) once revoked at ``revoked`` or expired, with
    ``provision.period.end`` when it stopped. The revocation also stays its own AuditEvent."""
    if event.get("type") != "consent.granted":
        return None
    raw = event.get("data")
    data: dict[str, Any] = raw if isinstance(raw, dict) else {}
    until = int(data.get("until", 0))
    end = min(until, revoked) if revoked is not None else until
    return {
        "resourceType": "Consent",
        "id": f"consent-{data.get('consent')}",
        "status": "active" if revoked is None and now < until else "inactive",
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "patient-privacy",
                }
            ]
        },
        "category": [
            {
                "coding": [
                    {"system": "http://loinc.org", "code": "59284-0", "display": "Patient Consent"}
                ]
            }
        ],
        "patient": _ref(str(event.get("subject"))),
        "dateTime": event.get("time"),
        "policyRule": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}
            ]
        },
        "provision": {
            "type": "permit",
            "period": {"start": event.get("time"), "end": _stamp(end)},
            "actor": [
                {
                    "role": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                "code": "PRCP",
                            }
                        ]
                    },
                    "reference": _ref(str(data.get("grantee"))),
                }
            ],
            "action": [
                {"coding": [{"system": "urn:telegate:scope", "code": str(s)}]}
                for s in data.get("scopes", [])
            ],
        },
    }


SOURCE_SIGNATURE = {
    "system": "urn:iso-astm:E1762-95:2013",
    "code": "1.2.840.10065.1.12.1.14",
    "display": "Source Signature",
}


def provenance_resource(index: int, event: dict[str, Any]) -> dict[str, Any] | None:
    """A ``vitals.batch`` event as a FHIR Provenance: the device made and signed the batch.

    The signature itself is not exported: with the device's public key it would let anyone
    confirm a guessed reading (values and times are low-entropy). The entity names the
    SHA-256 of the signature instead; the patient or a provider with consent gets the JWS
    with the readings and can match the two.
    """
    if event.get("type") != "vitals.batch":
        return None
    raw = event.get("data")
    data: dict[str, Any] = raw if isinstance(raw, dict) else {}
    device = _ref(str(data.get("device", event.get("actor"))))
    return {
        "resourceType": "Provenance",
        "id": f"ledger-{index}",
        "target": [
            {
                "identifier": {
                    "system": "urn:telegate:vitals-batch",
                    "value": f"{data.get('device')}/{data.get('batch_id')}",
                }
            }
        ],
        "recorded": event.get("time"),
        "activity": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                    "code": "CREATE",
                }
            ]
        },
        "agent": [
            {
                "type": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                            "code": "author",
                        }
                    ]
                },
                "who": device,
                "onBehalfOf": _ref(str(event.get("subject"))),
            }
        ],
        "entity": [
            {
                "role": "source",
                "what": {
                    "identifier": {
                        "system": "urn:telegate:jws-signature-sha256",
                        "value": str(data.get("sig_hash")),
                    }
                },
            },
            {
                "role": "source",
                "what": {"identifier": {"system": LEDGER_SYSTEM, "value": str(index)}},
            },
        ],
        "signature": [
            {
                "type": [SOURCE_SIGNATURE],
                "when": event.get("time"),
                "who": device,
                "sigFormat": "application/jose",
            }
        ],
    }
