"""OpenAPI paths of the audit API (``gateway.audit.http``): provable queries, exports and the
patient's access report."""

from __future__ import annotations

from typing import Any

from ..openapi_parts import AUTH_ERRORS, DPOP, STRING, path_param, problem, uint_query

__all__ = ["PATHS"]

_FILTERS = [
    {"name": n, "in": "query", "required": False, "schema": STRING}
    for n in ("type", "actor", "subject", "session", "since", "until")
]


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
                                "required": ["checkpoint", "size", "rows", "next", "query_receipt"],
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
                        "application/fhir+json": {"schema": {"type": "object"}},
                    },
                },
                "400": problem("malformed filter or format"),
                **AUTH_ERRORS,
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
                        "application/json": {"schema": {"type": "object"}},
                        "application/fhir+json": {"schema": {"type": "object"}},
                    },
                },
                "400": problem("malformed parameters"),
                "404": problem("no such patient"),
                **AUTH_ERRORS,
            },
        }
    },
}
