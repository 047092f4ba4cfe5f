"""OpenAPI paths of identity (``gateway.auth.http``): discovery, invites and enrollment, the
token endpoint (with a peer organization's token exchange, docs/federation.md),
introspection, receipts, the status list and revocation."""

from __future__ import annotations

from typing import Any

from ..openapi_parts import (
    AUTH_ERRORS,
    B64,
    BODY_ERRORS,
    DATABASE_DOWN,
    DB_UNAVAILABLE,
    DPOP,
    DPOP_HEADER,
    EPOCH,
    LEDGER_DOWN,
    MALFORMED,
    RATE_LIMITED,
    STRING,
    json_body,
    json_limits,
    json_reply,
    obj,
    path_param,
    problem,
    ref,
)

__all__ = ["PATHS", "SCHEMAS"]

_SUBJECT = {
    "type": "string",
    "description": "a subject id: a role prefix (`pat:`, `prov:`, `dev:`, `aud:`, `adm:`, "
    "`party:`) and 32 hex digits",
}
_ROLE = {"type": "string", "enum": ["patient", "provider", "device", "auditor", "admin", "party"]}
_SCOPES = {"type": "string", "description": "space-separated scopes (RFC 6749 3.3)"}
_URL = {"type": "string", "format": "uri"}
_STRINGS = {"type": "array", "items": STRING}

#: The claims of an attestation the gateway signs (gateway.auth.tokens).
_CLAIMS: dict[str, Any] = {
    "iss": _URL,
    "sub": _SUBJECT,
    "aud": {"oneOf": [STRING, _STRINGS]},
    "iat": EPOCH,
    "nbf": EPOCH,
    "exp": EPOCH,
    "jti": STRING,
    "role": _ROLE,
    "scope": _SCOPES,
    "cnf": ref("KeyConfirmation"),
    "status": ref("StatusReference"),
    "ledger": {"type": "integer", "minimum": 0, "description": "the issuance's leaf"},
}

#: The named shapes of identity's answers (``components/schemas``).
SCHEMAS: dict[str, Any] = {
    "Jwk": {
        "type": "object",
        "description": "A public JSON Web Key (RFC 7517) of the gateway: OKP Ed25519 or EC P-256",
        "required": ["kty", "kid", "alg", "use"],
        "properties": {
            "kty": {"enum": ["OKP", "EC"]},
            "crv": {"enum": ["Ed25519", "P-256"]},
            "x": STRING,
            "y": STRING,
            "kid": {**STRING, "description": "the RFC 7638 thumbprint"},
            "alg": {"enum": ["EdDSA", "ES256"]},
            "use": {"const": "sig"},
        },
        "additionalProperties": False,
    },
    "JwkSet": obj({"keys": {"type": "array", "items": ref("Jwk")}}),
    "SmartConfiguration": obj(
        {
            "issuer": _URL,
            "jwks_uri": _URL,
            "token_endpoint": _URL,
            "introspection_endpoint": _URL,
            "grant_types_supported": _STRINGS,
            "token_endpoint_auth_methods_supported": _STRINGS,
            "token_endpoint_auth_signing_alg_values_supported": _STRINGS,
            "dpop_signing_alg_values_supported": _STRINGS,
            "scopes_supported": _STRINGS,
            "capabilities": _STRINGS,
        },
        ["issuer", "jwks_uri", "token_endpoint", "grant_types_supported"],
        # SMART App Launch 2.x lets a server add members: a client ignores unknown ones.
        closed=False,
        description="SMART App Launch 2.x discovery (Backend Services)",
    ),
    "InviteCreated": obj(
        {
            "invite": {**STRING, "description": "the invite code, shown once"},
            "role": _ROLE,
            "expires": EPOCH,
            "enroll_endpoint": _URL,
            "receipt": ref("Receipt"),
        }
    ),
    "Enrollment": obj(
        {
            "sub": _SUBJECT,
            "client_id": {**_SUBJECT, "description": "the OAuth client id: the subject id"},
            "role": _ROLE,
            "display_name": {
                "type": ["string", "null"],
                "description": "the name on record for this identity",
            },
            "jkt": {**STRING, "description": "RFC 7638 thumbprint of the enrolled key"},
            "token_endpoint": _URL,
            "receipt": ref("Receipt"),
        }
    ),
    "EnrollmentCheck": obj(
        {"asks": {"type": "array", "items": {"type": "string", "enum": ["display_name"]}}}
    ),
    "TokenResponse": obj(
        {
            "access_token": {**STRING, "description": "a DPoP-bound attestation (JWT)"},
            "token_type": {"const": "DPoP"},
            "expires_in": {"type": "integer", "minimum": 0},
            "scope": _SCOPES,
            "issued_token_type": {
                **STRING,
                "description": "(token exchange, RFC 8693) the type of the issued token",
            },
            "sub": {**_SUBJECT, "description": "(token exchange) the local subject"},
            "federation": obj(
                {"peer": STRING, "accepted": {"type": "integer", "minimum": 0}},
                description="(token exchange) the peer organization, and the ledger index "
                "of the acceptance",
            ),
        },
        ["access_token", "token_type", "expires_in", "scope"],
    ),
    "AttestationClaims": {
        "type": "object",
        "description": "The claims of an attestation (a JWT the gateway signed). A JWT may "
        "carry claims beyond these (RFC 7519 4.3): a client ignores unknown ones.",
        "required": ["iss", "sub", "aud", "iat", "nbf", "exp", "jti", "role", "cnf"],
        "properties": _CLAIMS,
    },
    "StatusListEntry": obj(
        {"idx": {"type": "integer", "minimum": 0}, "uri": _URL},
        description="The token's index in a Token Status List, and the list's URL",
    ),
    "StatusReference": obj({"status_list": ref("StatusListEntry")}),
    "KeyConfirmation": obj(
        {"jkt": STRING}, description="RFC 7800 confirmation: the holder key's RFC 7638 thumbprint"
    ),
    # One object rather than a oneOf of "inactive" and "claims": generators make one model of
    # it, and RFC 7662 says the same (only `active` is required).
    "Introspection": {
        "type": "object",
        "description": 'RFC 7662: `{"active": false}`, or the token\'s claims (see '
        "AttestationClaims) with `active: true` and `token_type: DPoP`",
        "required": ["active"],
        "properties": {
            "active": {"type": "boolean"},
            "token_type": {"const": "DPoP"},
            **_CLAIMS,
        },
    },
    "AttestationReceipt": obj(
        {
            "jti": STRING,
            "sub": _SUBJECT,
            "receipt": ref("Receipt"),
            "entry": {**B64, "description": "the leaf bytes the receipt proves"},
        }
    ),
    "Revocation": obj(
        {
            "revoked": {
                "type": "array",
                "items": {"type": "integer", "minimum": 0},
                "description": "the status list indexes set",
            },
            "receipt": ref("Receipt"),
        }
    ),
    "Me": obj(
        {
            "sub": _SUBJECT,
            "role": _ROLE,
            "scope": {**_STRINGS, "description": "the token's scopes, sorted"},
            "jti": STRING,
            "jkt": STRING,
        }
    ),
}


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
            ref("TokenResponse"),
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
        "201": json_reply("the new subject id and the ledger receipt", ref("Enrollment")),
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
        "200": json_reply("what to ask", ref("EnrollmentCheck")),
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
                    "content": {"application/jwk-set+json": {"schema": ref("JwkSet")}},
                }
            },
        }
    },
    "/.well-known/smart-configuration": {
        "get": {
            "summary": "SMART Backend Services discovery",
            "responses": {
                "200": json_reply("SMART configuration", ref("SmartConfiguration")),
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
                    ref("InviteCreated"),
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
                    ref("Introspection"),
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
                    ref("AttestationReceipt"),
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
                    ref("Revocation"),
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
                "200": json_reply("caller", ref("Me")),
                **AUTH_ERRORS,
                **MALFORMED,
            },
        }
    },
}
