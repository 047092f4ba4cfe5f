"""OpenAPI paths of the audit API (``gateway.audit.http``): provable queries, exports and the
patient's access report."""

from __future__ import annotations

from typing import Any

from ..openapi_parts import (
    AUTH_ERRORS,
    DB_UNAVAILABLE,
    DPOP,
    NAMES,
    STRING,
    path_param,
    problem,
    time_query,
    uint_query,
)

__all__ = ["PATHS"]

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
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": [
                                    "checkpoint",
                                    "size",
                                    "rows",
                                    "names",
                                    "next",
                                    "query_receipt",
                                ],
                                "properties": {"names": NAMES},
                            }
                        }
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
                    "description": "the export, streamed",
                    "content": {
                        "application/x-ndjson": {"schema": STRING},
                        "text/csv": {"schema": STRING},
                        "application/fhir+json": {
                            "schema": {
                                "type": "object",
                                "description": _FHIR_AUDIT + " Each `consent.granted` event also "
                                "gives a Consent carrying its status as of the export: `inactive` "
                                "once revoked or expired, with `provision.period.end` the time it "
                                "stopped.",
                            }
                        },
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
                    "description": "the report",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["patient", "accesses", "names", "next"],
                                "properties": {"names": NAMES},
                            }
                        },
                        "application/fhir+json": {
                            "schema": {
                                "type": "object",
                                "description": _FHIR_AUDIT + " Only AuditEvents: no Consents.",
                            }
                        },
                    },
                },
                "400": problem("malformed parameters"),
                "404": problem("no such patient"),
                **AUTH_ERRORS,
            },
        }
    },
}
