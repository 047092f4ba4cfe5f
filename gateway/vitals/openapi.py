"""OpenAPI paths of the vitals endpoints (merged into ``/openapi.json``)."""

from __future__ import annotations

from typing import Any

from ..openapi_parts import (
    AUTH_ERRORS,
    BODY_ERRORS,
    DB_UNAVAILABLE,
    DPOP,
    json_body,
    json_reply,
    obj,
    path_param,
    problem,
    ref,
    time_query,
)
from .codes import BP_COMPONENTS, BP_PANEL, CODES

__all__ = ["PATHS", "SCHEMAS"]

_PATIENT = path_param("id")
_CODES = sorted([*CODES, BP_PANEL])
_NUMBER = {"type": "number", "description": "in the code's canonical UCUM unit"}
_SENT = ref("VitalsSent")


def _measured(codes: list[str]) -> dict[str, Any]:
    return {
        "code": {"enum": codes},
        "unit": {"type": "string", "description": "the canonical UCUM unit"},
        "value": _NUMBER,
        "sent": _SENT,
    }


_WHERE = {
    "time": {"type": "string", "format": "date-time", "description": "when it was taken"},
    "device": {"type": "string", "description": "the device's subject id"},
    "batch_id": {"type": "string"},
    "ledger_index": {
        "type": ["integer", "null"],
        "description": "the leaf of the batch's event (null while it is being recorded)",
    },
}

#: The named shapes of the vitals answers (``components/schemas``).
SCHEMAS: dict[str, Any] = {
    "VitalsSent": obj(
        {"unit": {"type": "string"}, "value": {"type": "number"}},
        description="what the device sent, when its unit was not the canonical one",
    ),
    "VitalsAccepted": obj(
        {
            "batch_id": {"type": "string"},
            "count": {"type": "integer", "minimum": 0, "description": "readings accepted"},
            "receipt": ref("Receipt"),
        },
        description="An accepted batch and the ledger receipt of its event",
    ),
    "VitalsComponent": obj(_measured(list(BP_COMPONENTS)), ["code", "unit", "value"]),
    "VitalsReading": {
        "oneOf": [
            obj(
                {**_measured(sorted(CODES)), **_WHERE},
                ["code", "unit", "value", *_WHERE],
                description="A single-valued vital sign",
            ),
            obj(
                {
                    "code": {"const": BP_PANEL},
                    "components": {
                        "type": "array",
                        "items": ref("VitalsComponent"),
                        "minItems": 2,
                        "maxItems": 2,
                    },
                    **_WHERE,
                },
                description="A blood pressure panel: systolic and diastolic components",
            ),
        ]
    },
    "VitalsPage": obj(
        {
            "patient": {"type": "string"},
            "readings": {"type": "array", "items": ref("VitalsReading")},
            "signed": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "each batch's compact JWS as the device signed it, by "
                "`<device>/<batch_id>`",
            },
            "next": {
                "type": ["string", "null"],
                "description": "the `after` cursor of the next page, or null",
            },
        },
        description="A page of a patient's readings",
    ),
    "Erasure": obj(
        {
            "patient": {"type": "string"},
            "erased_batches": {"type": "integer", "minimum": 0},
            "receipt": ref("Receipt"),
        }
    ),
}

PATHS: dict[str, Any] = {
    "/v1/vitals": {
        "post": {
            "summary": "A device posts a signed batch of readings (compact JWS, typ vitals+json; "
            "payload: batch_id + readings, or a FHIR Bundle of Observations with cty fhir+json)",
            "security": DPOP,
            "requestBody": {
                "required": True,
                "content": {"application/jose": {"schema": {"type": "string"}}},
            },
            "responses": {
                "201": json_reply(
                    "accepted: batch id, count and the ledger receipt",
                    ref("VitalsAccepted"),
                ),
                "200": json_reply(
                    "a repeat of an accepted batch: its first receipt", ref("VitalsAccepted")
                ),
                "409": problem("this batch id was accepted before with other content"),
                "410": problem("the patient's data was erased"),
                "422": problem("readings refused; errors lists each one by position"),
                **AUTH_ERRORS,
                "403": problem(
                    "not a device (or its scope does not allow this), the batch names another "
                    "device or patient, or the device's patient has been revoked; "
                    "device-not-genuine (with its verdict) when the device's unit was recalled, "
                    "decommissioned or made suspect since its enrollment (docs/supply.md)"
                ),
                **BODY_ERRORS,
            },
        }
    },
    "/v1/patients/{id}/vitals": {
        "get": {
            "summary": "A patient's readings (the patient, or a provider with vitals.read consent)",
            "security": DPOP,
            "parameters": [
                _PATIENT,
                {"name": "code", "in": "query", "schema": {"enum": _CODES}},
                time_query("since", "readings taken at or after this time"),
                time_query("until", "readings taken at or before this time"),
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 10000},
                },
                {
                    "name": "after",
                    "in": "query",
                    "description": "the next cursor of the previous page",
                    "schema": {"type": "string", "pattern": "^[0-9]{1,18}\\.-?[0-9]{1,6}$"},
                },
                {"name": "format", "in": "query", "schema": {"enum": ["json", "fhir"]}},
            ],
            "responses": {
                "200": {
                    "description": "readings (JSON), or a FHIR R4 searchset Bundle of "
                    "Observations. Each vital sign claims the R4 `vitalsigns` profile and its "
                    "own profile where R4 has one; glucose is a laboratory Observation with no "
                    "profile.",
                    "content": {
                        "application/json": {"schema": ref("VitalsPage")},
                        "application/fhir+json": {"schema": ref("FhirSearchBundle")},
                    },
                },
                "400": problem("malformed parameters"),
                "404": problem("no such patient"),
                "410": problem("the patient's data was erased"),
                **AUTH_ERRORS,
                # A provider's read is authorized by consent, read from the shared database.
                **DB_UNAVAILABLE,
            },
        }
    },
    "/v1/patients/{id}/erase": {
        "post": {
            "summary": "Crypto-shred a patient's vitals (admin, with a recorded reason code)",
            "security": DPOP,
            "parameters": [_PATIENT],
            "requestBody": json_body(
                {
                    "type": "object",
                    "required": ["reason"],
                    "properties": {
                        "reason": {
                            "enum": [
                                "patient_request",
                                "legal_order",
                                "retention_expired",
                                "entered_in_error",
                            ]
                        },
                        "reference": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,64}$"},
                    },
                    "additionalProperties": False,
                }
            ),
            "responses": {
                "200": json_reply("erased: batch count and the ledger receipt", ref("Erasure")),
                "404": problem("no such patient"),
                "409": problem("already erased"),
                **AUTH_ERRORS,
                **BODY_ERRORS,
            },
        }
    },
}
