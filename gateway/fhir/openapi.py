"""OpenAPI paths of the FHIR API under ``/fhir`` (merged into ``/openapi.json``). Its errors
are FHIR OperationOutcome, not problem+json (but for 429, which every operation shares)."""

from __future__ import annotations

from typing import Any

from ..openapi_parts import DPOP, LEDGER_DOWN, json_reply, path_param, ref
from .params import MAX_COUNT, MAX_VALUE, RESOURCES, Resource

__all__ = ["PATHS", "SCHEMAS"]

FHIR = "application/fhir+json"
# Visible ASCII: a value of other characters is refused all the same (400), and the schema
# keeps a request line within what the HTTP parser takes (8190 bytes, percent-encoded).
VALUE = {"type": "string", "pattern": f"^[!-~]{{1,{MAX_VALUE}}}$"}
_OUTCOME = {
    "type": "object",
    "description": "FHIR OperationOutcome: issue[0].code the IssueType, details.coding the "
    "gateway's problem type (https://telegate.dev/problems), diagnostics the reason",
    "required": ["resourceType", "issue"],
    "properties": {
        "resourceType": {"const": "OperationOutcome"},
        "issue": {"type": "array", "items": {"type": "object"}, "minItems": 1},
    },
}
OUTCOME = ref("FhirOperationOutcome")
BUNDLE = ref("FhirSearchBundle")


def resource(kind: str | None, desc: str) -> dict[str, Any]:
    """A FHIR R4 resource (of type ``kind``, or any). Open: FHIR defines the other elements,
    and a FHIR client ignores those it does not know."""
    return {
        "type": "object",
        "description": desc,
        "required": ["resourceType"],
        "properties": {"resourceType": {"const": kind} if kind else {"type": "string"}},
    }


def _bundle(kind: str, desc: str) -> dict[str, Any]:
    entry = {
        "type": "object",
        "required": ["resource"],
        "properties": {
            "fullUrl": {"type": "string"},
            "resource": ref("FhirResource"),
            "search": {"type": "object"},
        },
    }
    return {
        "type": "object",
        "description": desc,
        "required": ["resourceType", "type", "entry"],
        "properties": {
            "resourceType": {"const": "Bundle"},
            "type": {"const": kind},
            "total": {"type": "integer", "minimum": 0},
            "link": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["relation", "url"],
                    "properties": {"relation": {"type": "string"}, "url": {"type": "string"}},
                },
            },
            "entry": {"type": "array", "items": entry},
        },
    }


#: The named shapes of FHIR answers (``components/schemas``); the /v1 FHIR formats (vitals,
#: access report, audit export) name them too.
SCHEMAS: dict[str, Any] = {
    "FhirOperationOutcome": _OUTCOME,
    "FhirResource": resource(None, "A FHIR R4 resource"),
    "FhirObservation": resource("Observation", "A FHIR R4 Observation (a vital sign)"),
    "FhirCapabilityStatement": resource("CapabilityStatement", "The FHIR CapabilityStatement"),
    "FhirSearchBundle": _bundle(
        "searchset",
        "FHIR searchset Bundle; link self, and next/previous with an opaque cursor bound to "
        "this search and caller",
    ),
    "FhirCollectionBundle": _bundle("collection", "FHIR collection Bundle"),
}


def outcome(desc: str) -> dict[str, Any]:
    return {"description": desc, "content": {FHIR: {"schema": OUTCOME}}}


def fhir_reply(desc: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": desc, "content": {FHIR: {"schema": schema}}}


_FORMAT = {
    "name": "_format",
    "in": "query",
    "required": False,
    "schema": VALUE,
    "description": "json, application/json or application/fhir+json; xml answers 406",
}
_PREFER = {
    "name": "Prefer",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": "handling=lenient: unknown search parameters are ignored, not refused",
}
COMMON = {
    "400": outcome(
        "an unknown search parameter (without Prefer: handling=lenient), a repeated, empty, "
        f"oversized (over {MAX_VALUE} characters) or malformed value, _count out of range, "
        "a cursor of another search, caller or expired; or a malformed Host header"
    ),
    "406": outcome("_format or Accept asks for other than FHIR JSON (such as XML)"),
}
SECURED = {
    **COMMON,
    "401": outcome("missing, invalid, expired, replayed or revoked credentials"),
    "403": outcome(
        "the token lacks the SMART scope, or the role or the patient's consent does not "
        "allow this patient's data (the refusal is a ledger event)"
    ),
    "503": outcome(f"DPoP replay cache full, or {LEDGER_DOWN}; see Retry-After"),
}


def _search_params(r: Resource) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {
            "name": p.name,
            "in": "query",
            "required": False,
            "schema": VALUE,
            "description": f"FHIR {p.type} parameter: {p.doc}",
        }
        for p in r.params
    ]
    out.append(
        {
            "name": "_count",
            "in": "query",
            "required": False,
            "schema": {"type": "string", "pattern": "^[0-9]{1,5}$"},
            "description": f"page size, 1..{MAX_COUNT}",
        }
    )
    out.append(
        {
            "name": "_cursor",
            "in": "query",
            "required": False,
            "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,512}$"},
            "description": "opaque: from a Bundle.link of this search",
        }
    )
    if r.sorts:
        out.append(
            {
                "name": "_sort",
                "in": "query",
                "required": False,
                "schema": {"enum": list(r.sorts)},
                "description": "by effective date (the order readings were recorded in)",
            }
        )
    return [*out, _FORMAT, _PREFER]


_SUMMARY = {
    "Observation": "Search a patient's vital signs (SMART patient/ or user/Observation.rs; a "
    "provider needs the patient's vitals.read consent): the /v1 vitals read, as Observations",
    "AuditEvent": "Search the ledger's events as BALP AuditEvents, each with its inclusion "
    "proof (auditor: user/ or system/AuditEvent.rs; a patient: the events about themself)",
    "Consent": "Search consents (patient: their own; provider: those naming them; auditor: "
    "a named patient's)",
    "Provenance": "The Provenance of the signed batch an Observation came in (target="
    "Observation/{id}; the same consent as reading it)",
}


def _search(r: Resource) -> dict[str, Any]:
    return {
        "get": {
            "summary": _SUMMARY[r.type],
            "security": DPOP,
            "parameters": _search_params(r),
            "responses": {
                "200": fhir_reply("a page of matches", BUNDLE),
                **SECURED,
                **({"410": outcome("the patient's data was erased")} if r.previous else {}),
            },
        }
    }


PATHS: dict[str, Any] = {
    "/fhir/metadata": {
        "get": {
            "summary": "The CapabilityStatement: resources, interactions, search parameters "
            "and the SMART security service, generated from what the handlers implement",
            "parameters": [_FORMAT],
            "responses": {
                "200": fhir_reply("CapabilityStatement", ref("FhirCapabilityStatement")),
                **COMMON,
            },
        }
    },
    "/fhir/.well-known/smart-configuration": {
        "get": {
            "summary": "SMART discovery at the FHIR base: the same document as "
            "/.well-known/smart-configuration",
            "responses": {
                "200": json_reply("SMART configuration", ref("SmartConfiguration")),
                "400": outcome("a malformed Host header"),
            },
        }
    },
    **{f"/fhir/{r.type}": _search(r) for r in RESOURCES.values()},
    "/fhir/Observation/{id}": {
        "get": {
            "summary": "One Observation by id (SMART .r scope; the same consent check)",
            "security": DPOP,
            "parameters": [path_param("id"), _FORMAT, _PREFER],
            "responses": {
                "200": fhir_reply(
                    "Observation",
                    ref("FhirObservation"),
                ),
                **SECURED,
                "400": outcome("a parameter other than _format; or a malformed Host header"),
                "404": outcome("no such Observation"),
                "410": outcome("the patient's data was erased"),
            },
        }
    },
}
