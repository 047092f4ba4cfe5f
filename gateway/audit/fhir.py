"""Ledger events as FHIR AuditEvent resources, following IHE Basic Audit Log Patterns (BALP).

Built as plain dicts (a page of thousands is serialised while streaming); the tests validate
every resource with ``fhir.resources`` (R4B, whose AuditEvent is R4's). Identifiers only:
the ledger holds no PHI, so neither does an export.
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

# BALP action codes: C create, R read, U update, D delete, E execute.
_ACTION = {
    "identity.enrolled": "C",
    "identity.invite_created": "C",
    "attestation.issued": "C",
    "attestation.revoked": "U",
    "consent.granted": "C",
    "consent.revoked": "U",
    "vitals.batch": "C",
    "patient.erased": "D",
    "audit.query": "R",
    "auth.refused": "E",
    "auth.refused_summary": "E",
}
# DICOM audit event ids where one fits (BALP profiles reuse them).
_DICOM = {
    "auth.refused": ("110114", "User Authentication"),
    "auth.refused_summary": ("110114", "User Authentication"),
    "attestation.issued": ("110114", "User Authentication"),
    "audit.query": ("110112", "Query"),
    "gateway.started": ("110100", "Application Activity"),
    "gateway.stopped": ("110100", "Application Activity"),
}


def _ref(value: str) -> dict[str, Any]:
    return {"identifier": {"system": SUBJECT_SYSTEM, "value": value}}


def audit_event(index: int, leaf_hash_b64: str, event: dict[str, Any]) -> dict[str, Any]:
    """One ledger event as a FHIR AuditEvent (BALP shape)."""
    kind = str(event.get("type", ""))
    raw = event.get("data")
    data: dict[str, Any] = raw if isinstance(raw, dict) else {}
    code, display = _DICOM.get(kind, ("rest", "RESTful Operation"))
    system = DCM if kind in _DICOM else EVENT_TYPE
    failed = kind in ("auth.refused", "auth.refused_summary")
    res: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": f"ledger-{index}",
        "type": {"system": system, "code": code, "display": display},
        "subtype": [{"system": TELEGATE_TYPE, "code": kind}],
        "action": _ACTION.get(kind, "E"),
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
    if event.get("subject"):
        res["entity"].append(
            {
                "what": _ref(str(event["subject"])),
                "role": {
                    "system": "http://terminology.hl7.org/CodeSystem/object-role",
                    "code": "1",
                    "display": "Patient" if str(event["subject"]).startswith("pat:") else "Person",
                },
            }
        )
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
        res["outcomeDesc"] = str(data.get("problem", "refused"))
    return res


def consent_resource(event: dict[str, Any]) -> dict[str, Any] | None:
    """A ``consent.granted`` event as a FHIR Consent (the grant as recorded; a later
    revocation is its own event and AuditEvent)."""
    if event.get("type") != "consent.granted":
        return None
    raw = event.get("data")
    data: dict[str, Any] = raw if isinstance(raw, dict) else {}
    until = dt.datetime.fromtimestamp(int(data.get("until", 0)), dt.UTC)
    return {
        "resourceType": "Consent",
        "id": f"consent-{data.get('consent')}",
        "status": "active",
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
            "period": {"end": until.strftime("%Y-%m-%dT%H:%M:%SZ")},
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
