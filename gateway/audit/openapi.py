"""OpenAPI paths of the audit API (``gateway.audit.http``): provable queries, exports and the
patient's access report."""

from __future__ import annotations

from typing import Any

from ..openapi_parts import (
    AUTH_ERRORS,
    B64,
    DB_UNAVAILABLE,
    DPOP,
    NAMES,
    OLD_PROOF,
    STRING,
    obj,
    path_param,
    problem,
    ref,
    time_query,
    uint_query,
)

__all__ = ["PATHS", "SCHEMAS"]

_PROVED: dict[str, Any] = {
    "index": {"type": "integer", "minimum": 0, "description": "the leaf index"},
    "leaf_hash": {**B64, "description": "SHA-256(0x00 || leaf), base64"},
    "leaf": {**B64, "description": "the exact leaf bytes (hash these, not a re-encoding)"},
    "inclusion_proof": ref("InclusionProof"),
    "proof": OLD_PROOF,
}
_NEXT = {"type": ["string", "null"], "description": "the `cursor` of the next page, or null"}

#: The named shapes of the audit answers (``components/schemas``).
SCHEMAS: dict[str, Any] = {
    "AuditRow": obj(
        {**_PROVED, "event": ref("LedgerEvent")},
        description="A ledger event and its inclusion proof against the page's checkpoint",
    ),
    "AuditPage": obj(
        {
            "checkpoint": ref("Checkpoint"),
            "size": {"type": "integer", "minimum": 0, "description": "the checkpoint's size"},
            "rows": {"type": "array", "items": ref("AuditRow")},
            "names": NAMES,
            "next": _NEXT,
            "query_receipt": ref("Receipt"),
        },
        description="A page of matching events, proved against one checkpoint; the query "
        "itself is recorded (`query_receipt`)",
    ),
    "AccessRow": obj(
        {
            "index": _PROVED["index"],
            "time": {"type": "string", "format": "date-time"},
            "who": {**STRING, "description": "the actor's subject id"},
            "role": {"enum": ["patient", "provider", "auditor", "admin", "unknown"]},
            "action": {**STRING, "description": "the event type"},
            "purpose": {"type": ["string", "null"]},
            "consent": {"type": ["string", "null"], "description": "the consent relied on"},
            "break_the_glass": {"type": "boolean"},
            "leaf_hash": _PROVED["leaf_hash"],
            "leaf": _PROVED["leaf"],
            "inclusion_proof": _PROVED["inclusion_proof"],
            "proof": OLD_PROOF,
            "event": ref("LedgerEvent"),
        },
        description="One action on the patient's record by someone else",
    ),
    "AccessReport": obj(
        {
            "patient": STRING,
            "checkpoint": ref("Checkpoint"),
            "size": {"type": "integer", "minimum": 0},
            "accesses": {"type": "array", "items": ref("AccessRow")},
            "names": NAMES,
            "next": _NEXT,
            "query_receipt": ref("Receipt"),
        },
        description="Accounting of disclosures, proved against one checkpoint",
    ),
}

_FILTERS = [
    *(
        {"name": n, "in": "query", "required": False, "schema": STRING}
        for n in ("type", "actor", "subject", "session")
    ),
    time_query("since", "events at or after this time", STRING),
    time_query("until", "events before this time", STRING),
]
_FHIR_AUDIT = (
    "A FHIR R4 collection Bundle. AuditEvents follow IHE BALP: action C/R/U/D/E, and "
    "`purposeOfEvent` is the recorded purpose as a v3 PurposeOfUse code (TREAT, ETREAT for "
    "break-the-glass)."
)


def _format(*formats: str) -> dict[str, Any]:
    return {"name": "format", "in": "query", "required": False, "schema": {"enum": list(formats)}}


PATHS: dict[str, Any] = {
    "/v1/audit/events": {
        "get": {
            "summary": "Ledger events by filter, each with an inclusion proof (auditor)",
            "security": DPOP,
            "parameters": [
                *_FILTERS,
                uint_query("limit", False, "rows per page, 1..1000 (default 100)"),
                uint_query("cursor", False, "the next value of the previous page"),
            ],
            "responses": {
                "200": {
                    "description": "a page of rows and the checkpoint they are proved against",
                    "content": {
                        "application/json": {"schema": ref("AuditPage")},
                    },
                },
                "400": problem("malformed filter"),
                **AUTH_ERRORS,
            },
        }
    },
    "/v1/audit/export": {
        "get": {
            "summary": "Stream matching events: JSON Lines with proofs, CSV, or a FHIR Bundle "
            "of AuditEvents (auditor)",
            "security": DPOP,
            "parameters": [_format("jsonl", "csv", "fhir"), *_FILTERS],
            "responses": {
                "200": {
                    "description": "the export, streamed. FHIR: "
                    + _FHIR_AUDIT
                    + " Each `consent.granted` event also gives a Consent carrying its status "
                    "as of the export: `inactive` once revoked or expired, with "
                    "`provision.period.end` the time it stopped.",
                    "content": {
                        "application/x-ndjson": {"schema": STRING},
                        "text/csv": {"schema": STRING},
                        "application/fhir+json": {"schema": ref("FhirCollectionBundle")},
                    },
                },
                "400": problem("malformed filter or format"),
                **AUTH_ERRORS,
                # The FHIR export reads the consents' revocations from the shared database.
                **DB_UNAVAILABLE,
            },
        }
    },
    "/v1/patients/{patient}/access-report": {
        "get": {
            "summary": "Accounting of disclosures: every action on a patient's record by "
            "someone else, with proofs (the patient, or an auditor)",
            "security": DPOP,
            "parameters": [
                path_param("patient"),
                _format("json", "fhir"),
                uint_query("limit", False, "rows scanned per page, 1..1000"),
                uint_query("cursor", False, "the next value of the previous page"),
            ],
            "responses": {
                "200": {
                    "description": "the report. FHIR: "
                    + _FHIR_AUDIT
                    + " Only AuditEvents: no Consents.",
                    "content": {
                        "application/json": {"schema": ref("AccessReport")},
                        "application/fhir+json": {"schema": ref("FhirCollectionBundle")},
                    },
                },
                "400": problem("malformed parameters"),
                "404": problem("no such patient"),
                **AUTH_ERRORS,
            },
        }
    },
}
