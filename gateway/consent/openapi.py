"""OpenAPI paths of consent (``gateway.consent.http``): grants, their revocation, and
break-the-glass."""

from __future__ import annotations

from typing import Any

from ..openapi_parts import (
    AUTH_ERRORS,
    BODY_ERRORS,
    DPOP,
    MALFORMED,
    STRING,
    json_body,
    json_reply,
    path_param,
    problem,
)

__all__ = ["PATHS", "SCOPES"]

#: What a patient can grant. ``devices``: registering a monitoring device for the patient.
SCOPES = ["call", "vitals.read", "vitals.stream", "devices"]

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
                        "until": {"type": "string", "format": "date-time"},
                    },
                }
            ),
            "responses": {
                "201": json_reply("the consent and its ledger receipt", {"type": "object"}),
                **AUTH_ERRORS,
                **BODY_ERRORS,
            },
        },
        "get": {
            "summary": "The patient's grants, or the grants naming the calling provider",
            "security": DPOP,
            "responses": {
                "200": json_reply("consents", {"type": "object", "required": ["consents"]}),
                **AUTH_ERRORS,
                **MALFORMED,
            },
        },
    },
    "/v1/consents/{id}": {
        "delete": {
            "summary": "Revoke a consent, effective at once (the patient who granted it)",
            "security": DPOP,
            "parameters": [path_param("id")],
            "responses": {
                "200": json_reply("revoked, with the ledger receipt", {"type": "object"}),
                "404": problem("no such consent for this patient"),
                **AUTH_ERRORS,
                **MALFORMED,
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
                "201": json_reply("the flagged, time-boxed access", {"type": "object"}),
                **AUTH_ERRORS,
                **BODY_ERRORS,
            },
        }
    },
}
