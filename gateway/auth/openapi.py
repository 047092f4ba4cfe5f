"""OpenAPI paths of identity (``gateway.auth.http``): discovery, invites and enrollment, the
token endpoint (with a peer organization's token exchange, docs/federation.md),
introspection, receipts, the status list and revocation."""

from __future__ import annotations

from typing import Any

from ..openapi_parts import (
    AUTH_ERRORS,
    BODY_ERRORS,
    DATABASE_DOWN,
    DB_UNAVAILABLE,
    DPOP,
    DPOP_HEADER,
    LEDGER_DOWN,
    MALFORMED,
    RATE_LIMITED,
    STRING,
    json_body,
    json_limits,
    json_reply,
    path_param,
    problem,
)

__all__ = ["PATHS"]


def _form(required: str, *fields: str) -> dict[str, Any]:
    """A required x-www-form-urlencoded body of string fields."""
    schema = {
        "type": "object",
        "required": [required],
        "properties": {k: {"type": "string"} for k in (required, *fields)},
    }
    return {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": schema}}}


_TOKEN = {
    "summary": "client_credentials with private_key_jwt and a DPoP proof, or a "
    "peer organization's attestation exchanged (RFC 8693)",
    "description": "`grant_type=client_credentials` needs `client_assertion_type` "
    "and `client_assertion`; `resource` (RFC 8707) may name one peer organization "
    "of the trust list the token is also for. With a trust list, "
    "`grant_type=urn:ietf:params:oauth:grant-type:token-exchange` takes a peer's "
    "`subject_token` (`subject_token_type` "
    "`urn:ietf:params:oauth:token-type:access_token`) and its "
    "`subject_token_receipt`; see docs/federation.md.",
    "parameters": [DPOP_HEADER],
    "requestBody": _form(
        "grant_type",
        "client_assertion_type",
        "client_assertion",
        "scope",
        "client_id",
        "resource",
        "subject_token",
        "subject_token_type",
        "subject_token_receipt",
        "requested_token_type",
        "audience",
    ),
    "responses": {
        "200": json_reply(
            "a DPoP-bound access token",
            {"type": "object", "required": ["access_token", "token_type", "expires_in"]},
        ),
        "400": problem(
            "malformed request, bad DPoP proof, scope or resource, or a peer's "
            "attestation refused (invalid_grant)"
        ),
        "401": problem(
            "client authentication failed, the identity has been revoked, or (a device) its "
            "patient has been revoked"
        ),
        "413": problem("body too large"),
        **RATE_LIMITED,
        "503": problem(f"replay cache full, a peer organization unreachable, or {LEDGER_DOWN}"),
    },
}

_NAME = (
    "Your name, only when the invite carries none (not for devices): letters, marks and "
    "numerals of any script, spaces and . , ' \u2019 - ( ) / : @ +; trimmed, runs of spaces "
    "made one, and normalized (NFC); refused if it starts like a subject id (such as "
    "`pat:`); kept off the ledger, which gets its salted commitment."
)

_ENROLL = {
    "summary": "Redeem an invite with the holder's public JWK (EdDSA or ES256)",
    "description": (
        "A device invite needs its patient's devices consent to the inviter still standing "
        "at redemption; an invite whose maker or patient has been revoked is invalid-invite."
    ),
    "requestBody": json_body(
        {
            "type": "object",
            "required": ["invite", "jwk"],
            "properties": {
                "invite": STRING,
                "jwk": {"type": "object"},
                "serial": STRING,
                "model": STRING,
                "udi": {
                    "type": "string",
                    "description": "a device's GS1 UDI ((01)gtin...(21)serial), Digital Link or "
                    "SGTIN URN; its custody on this ledger must show it genuine, else 422 "
                    "device-provenance with the verdict; 409 udi-enrolled when another "
                    "device holds the unit (docs/supply.md)",
                },
                "display_name": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 128,
                    "description": _NAME,
                },
            },
        }
    ),
    "responses": {
        "201": json_reply(
            "the new subject id and the ledger receipt",
            {
                "type": "object",
                "required": ["sub", "role", "receipt"],
                "properties": {
                    "display_name": {
                        "type": ["string", "null"],
                        "description": "the name on record for this identity",
                    }
                },
            },
        ),
        **BODY_ERRORS,
        "400": json_limits(
            "an unknown, used or expired invite (problem type `invalid-invite`); a "
            "display_name the invite does not take or that is not a name; a malformed key "
            "or device field"
        ),
        "403": problem("the consent that allowed this device invite no longer stands"),
        "409": problem("key already enrolled"),
        # An unknown, used or expired invite is an anonymous refusal.
        **RATE_LIMITED,
        # A device invite's consent is read from the shared database.
        "503": problem(f"{DATABASE_DOWN}; or {LEDGER_DOWN}"),
    },
}

_ENROLL_CHECK = {
    "summary": "What enrollment will ask for this invite (nothing is spent)",
    "description": "`asks` lists `display_name` when the invite names nobody and does not "
    "enroll a device: send it with `POST /v1/enroll`. An unknown, used or expired code is "
    "refused with the same `invalid-invite` problem as enrollment.",
    "requestBody": json_body(
        {"type": "object", "required": ["invite"], "properties": {"invite": STRING}}
    ),
    "responses": {
        "200": json_reply(
            "what to ask",
            {
                "type": "object",
                "required": ["asks"],
                "properties": {
                    "asks": {"type": "array", "items": {"type": "string", "enum": ["display_name"]}}
                },
            },
        ),
        **BODY_ERRORS,
        "400": json_limits(
            "an unknown, used or expired invite (problem type `invalid-invite`), or no "
            "`invite` string"
        ),
        # An unknown, used or expired invite is an anonymous refusal.
        **RATE_LIMITED,
    },
}

PATHS: dict[str, Any] = {
    "/.well-known/jwks.json": {
        "get": {
            "summary": "The gateway's attestation signing keys (JWKS)",
            "responses": {
                "200": {
                    "description": "JWK set",
                    "content": {"application/jwk-set+json": {"schema": {"type": "object"}}},
                }
            },
        }
    },
    "/.well-known/smart-configuration": {
        "get": {
            "summary": "SMART Backend Services discovery",
            "responses": {
                "200": json_reply("SMART configuration", {"type": "object"}),
                **MALFORMED,
            },
        }
    },
    "/v1/invites": {
        "post": {
            "summary": (
                "Create a single-use invite (admin: admin, provider, patient, auditor, "
                "party (a supply-chain organization with its GS1 GLN and kind); "
                "provider: patient, or a device with the patient's devices consent; "
                "patient: their own device)"
            ),
            "security": DPOP,
            "requestBody": json_body(
                {
                    "type": "object",
                    "required": ["role"],
                    "properties": {
                        "role": {
                            "enum": ["admin", "provider", "patient", "device", "auditor", "party"]
                        },
                        "npi": STRING,
                        "gln": STRING,
                        "kind": {
                            "enum": [
                                "manufacturer",
                                "distributor",
                                "pharmacy",
                                "provider_organization",
                            ]
                        },
                        "patient": STRING,
                        "display_name": STRING,
                        "ttl": {"type": "integer"},
                    },
                }
            ),
            "responses": {
                "201": json_reply(
                    "the invite code (shown once) and the ledger receipt",
                    {"type": "object", "required": ["invite", "receipt"]},
                ),
                **AUTH_ERRORS,
                **BODY_ERRORS,
                # A device invite needs the patient's devices consent, read from the
                # shared database.
                **DB_UNAVAILABLE,
            },
        }
    },
    "/v1/enroll": {"post": _ENROLL},
    "/v1/enroll/check": {"post": _ENROLL_CHECK},
    "/oauth/token": {"post": _TOKEN},
    "/oauth/introspect": {
        "post": {
            "summary": "RFC 7662 token introspection (admin, auditor)",
            "security": DPOP,
            "requestBody": _form("token"),
            "responses": {
                "200": json_reply(
                    "RFC 7662 answer: `active` is false for a token every endpoint would "
                    "refuse (expired, revoked, its subject revoked, or a device whose patient "
                    "was revoked)",
                    {
                        "type": "object",
                        "required": ["active"],
                        "properties": {"active": {"type": "boolean"}},
                    },
                ),
                **AUTH_ERRORS,
                **BODY_ERRORS,
            },
        }
    },
    "/v1/attestations/{jti}/receipt": {
        "get": {
            "summary": "The ledger receipt of an attestation's issuance",
            "security": DPOP,
            "parameters": [path_param("jti")],
            "responses": {
                "200": json_reply(
                    "the receipt, and the leaf (base64) it proves",
                    {"type": "object", "required": ["receipt", "entry"]},
                ),
                "404": problem("unknown, or not the caller's"),
                **AUTH_ERRORS,
                **MALFORMED,
            },
        }
    },
    "/v1/status/{list}": {
        "get": {
            "summary": "Token Status List (JWT form)",
            "parameters": [path_param("list")],
            "responses": {
                "200": {
                    "description": "status list token",
                    "content": {"application/statuslist+jwt": {"schema": STRING}},
                },
                "404": problem("no such list"),
                **MALFORMED,
            },
        }
    },
    "/v1/revocations": {
        "post": {
            "summary": "Revoke an attestation (jti) or a whole subject (sub) (admin)",
            "description": "Signalling sockets opened with the revoked attestation(s) are "
            "closed at once (`session.socket_closed`).",
            "security": DPOP,
            "requestBody": json_body(
                {
                    "type": "object",
                    "required": ["reason"],
                    "properties": {"jti": STRING, "sub": STRING, "reason": STRING},
                }
            ),
            "responses": {
                "200": json_reply(
                    "revoked status indexes and the ledger receipt",
                    {"type": "object", "required": ["revoked", "receipt"]},
                ),
                "404": problem("no such token or subject"),
                **AUTH_ERRORS,
                **BODY_ERRORS,
            },
        }
    },
    "/v1/me": {
        "get": {
            "summary": "The authenticated caller",
            "security": DPOP,
            "responses": {
                "200": json_reply("caller", {"type": "object", "required": ["sub", "role"]}),
                **AUTH_ERRORS,
                **MALFORMED,
            },
        }
    },
}
