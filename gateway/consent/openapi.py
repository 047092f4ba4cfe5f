"""OpenAPI paths of consent (``gateway.consent.http``): grants, their revocation, and
break-the-glass."""

from __future__ import annotations

from typing import Any

from ..openapi_parts import (
    AUTH_ERRORS,
    BODY_ERRORS,
    DB_UNAVAILABLE,
    DPOP,
    EPOCH,
    MALFORMED,
    NAMES,
    STRING,
    TIME,
    json_body,
    json_limits,
    json_reply,
    obj,
    path_param,
    problem,
    ref,
)

__all__ = ["PATHS", "SCHEMAS", "SCOPES"]

#: What a patient can grant. ``devices``: registering a monitoring device for the patient.
SCOPES = ["call", "vitals.read", "vitals.stream", "devices"]

#: A consent as the gateway answers it (``_view`` in gateway.consent.http).
_CONSENT: dict[str, Any] = {
    "id": {**STRING, "description": "the consent id (32 hex digits)"},
    "patient": {**STRING, "description": "the granting patient's subject id"},
    "grantee": {**STRING, "description": "a provider's subject id, or `role:provider`"},
    "scopes": {"type": "array", "items": {"enum": SCOPES}, "minItems": 1},
    "created": EPOCH,
    "until": {**EPOCH, "description": "when it ends (Unix time, seconds)"},
    "revoked": {"type": ["integer", "null"], "description": "when it was revoked, or null"},
    "active": {"type": "boolean", "description": "neither revoked nor ended, now"},
}

#: The named shapes of consent's answers (``components/schemas``).
SCHEMAS: dict[str, Any] = {
    "Consent": obj(_CONSENT, description="A patient's grant of scopes to a provider"),
    "ConsentGranted": obj(
        {**_CONSENT, "receipt": ref("Receipt")},
        description="A new consent and the ledger receipt of its grant",
    ),
    "ConsentList": obj({"consents": {"type": "array", "items": ref("Consent")}, "names": NAMES}),
    "ConsentRevoked": obj(
        {"id": _CONSENT["id"], "revoked": EPOCH, "receipt": ref("Receipt")},
    ),
    "EmergencyAccess": obj(
        {
            "id": {**STRING, "description": "the emergency access id"},
            "patient": STRING,
            "until": {**EPOCH, "description": "when the access ends"},
            "flagged": {"const": True, "description": "always flagged for review"},
            "receipt": ref("Receipt"),
        },
    ),
}

PATHS: dict[str, Any] = {
    "/v1/consents": {
        "post": {
            "summary": "Grant a provider (or role:provider) scopes until a time (patient)",
            "security": DPOP,
            "requestBody": json_body(
                {
                    "type": "object",
                    "required": ["grantee", "scopes", "until"],
                    "properties": {
                        "grantee": STRING,
                        "scopes": {"type": "array", "items": {"enum": SCOPES}},
                        "until": {
                            "type": "string",
                            "format": "date-time",
                            "description": f"when the consent ends, at most 366 days ahead: {TIME}",
                        },
                    },
                }
            ),
            "responses": {
                "201": json_reply("the consent and its ledger receipt", ref("ConsentGranted")),
                **AUTH_ERRORS,
                **BODY_ERRORS,
                "400": json_limits(
                    "an unknown or revoked grantee, scopes not a non-empty list of these, "
                    "or `until` not a date-time in the future within the allowed days"
                ),
                **DB_UNAVAILABLE,
            },
        },
        "get": {
            "summary": "The patient's grants, or the grants naming the calling provider",
            "security": DPOP,
            "responses": {
                "200": json_reply("consents", ref("ConsentList")),
                **AUTH_ERRORS,
                **MALFORMED,
                **DB_UNAVAILABLE,
            },
        },
    },
    "/v1/consents/{id}": {
        "delete": {
            "summary": "Revoke a consent, effective at once (the patient who granted it)",
            "description": "Live vitals streams it allowed (with no other consent) stop at "
            "once; a call whose provider relied on it (scope `call`) is closed (close code "
            "4403, reason `consent`) and ended. The patient's scheduled or waiting calls "
            "that the named provider scheduled, has not joined and that no other consent "
            "allows are cancelled by the gateway (`session.cancelled`, `closed: consent`).",
            "security": DPOP,
            "parameters": [path_param("id")],
            "responses": {
                "200": json_reply("revoked, with the ledger receipt", ref("ConsentRevoked")),
                "404": problem("no such consent for this patient"),
                **AUTH_ERRORS,
                **MALFORMED,
                **DB_UNAVAILABLE,
            },
        }
    },
    "/v1/emergency-access": {
        "post": {
            "summary": "Break-the-glass: a provider declares an emergency with a reason",
            "security": DPOP,
            "requestBody": json_body(
                {
                    "type": "object",
                    "required": ["patient", "reason"],
                    "properties": {"patient": STRING, "reason": STRING},
                }
            ),
            "responses": {
                "201": json_reply("the flagged, time-boxed access", ref("EmergencyAccess")),
                **AUTH_ERRORS,
                **BODY_ERRORS,
                "400": json_limits(
                    "no patient id, a reason that is not 10-500 characters, or no enrolled, "
                    "unrevoked patient with that id"
                ),
                **DB_UNAVAILABLE,
            },
        }
    },
}
