"""The OpenAPI 3.1 description of every endpoint, served at ``/openapi.json``.

A test compares it with the app's routes (nothing undocumented) and runs schemathesis
against a live gateway; each feature adds its paths here.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from . import __version__

__all__ = ["SPEC", "setup"]

from .openapi_parts import (
    AUTH_ERRORS,
    BODY_ERRORS,
    DPOP,
    DPOP_HEADER,
    _body,
    _json,
    _problem,
    _text,
)
from .vitals.openapi import PATHS as VITALS_PATHS


def _session_op(summary: str, ok: str = "the session", conflict: str | None = None) -> Any:
    """An authenticated operation on one call session, addressed by its id."""
    responses: dict[str, Any] = {
        "200": _json(ok, {"type": "object"}),
        "404": _problem("no such session for this caller"),
    }
    if conflict is not None:
        responses["409"] = _problem(conflict)
    return {
        "summary": summary,
        "security": DPOP,
        "parameters": [
            {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
        ],
        "responses": {**responses, **AUTH_ERRORS},
    }


B64 = {"type": "string", "contentEncoding": "base64"}
TILE_PATH = r"^(entries|[0-9]{1,2})/(x[0-9]{3}/)*[0-9]{3}(\.p/[0-9]{1,3})?$"
UINT = {"type": "string", "pattern": "^[0-9]{1,19}$"}


def _q(name: str, required: bool, desc: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": UINT, "description": desc}


SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "telegate",
        "version": __version__,
        "description": "Telemedicine session authentication and audit gateway. Every error is "
        "RFC 9457 problem+json.",
    },
    "paths": {
        "/healthz": {
            "get": {"summary": "Liveness", "responses": {"200": _json("alive", {"type": "object"})}}
        },
        "/readyz": {
            "get": {
                "summary": "Readiness: the ledger accepts appends",
                "description": "With witnesses configured, `witnessing` says how far behind "
                "witnessing is (quorum, witnessed size, lag, each witness's size and alarm); "
                "a log whose witnesses lag is still ready.",
                "responses": {
                    "200": _json(
                        "ready",
                        {
                            "type": "object",
                            "required": ["status", "ledger_size"],
                            "properties": {"witnessing": {"type": "object"}},
                        },
                    ),
                    "503": _problem("not ready"),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {
                        "description": "text exposition format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {"200": _json("OpenAPI 3.1", {"type": "object"})},
            }
        },
        "/ledger/checkpoint": {
            "get": {
                "summary": "Newest C2SP checkpoint (signed note)",
                "description": "With witnesses configured: the newest checkpoint cosigned by "
                "the witness quorum, their tlog-cosignature lines appended to the log's "
                "signature, or the newest checkpoint until one is.",
                "responses": {"200": _text("signed note, text/plain")},
            }
        },
        "/ledger/vkey": {
            "get": {"summary": "The log's C2SP verifier key", "responses": {"200": _text("vkey")}}
        },
        "/ledger/tile/{path}": {
            "get": {
                "summary": "C2SP tlog-tiles hash tile `<L>/<N>[.p/<W>]` or entry bundle "
                "`entries/<N>[.p/<W>]`",
                "parameters": [
                    {
                        "name": "path",
                        "in": "path",
                        "required": True,
                        "schema": {
                            "type": "string",
                            "pattern": TILE_PATH,
                        },
                        "description": "tile path below /ledger/tile/ (contains '/')",
                    }
                ],
                "responses": {
                    "200": {
                        "description": "tile bytes",
                        "content": {
                            "application/octet-stream": {
                                "schema": {"type": "string", "format": "binary"}
                            }
                        },
                    },
                    "400": _problem("malformed tile path"),
                    "404": _problem("beyond the tree"),
                },
            }
        },
        "/ledger/proof/inclusion": {
            "get": {
                "summary": "RFC 6962 inclusion proof of a leaf",
                "parameters": [
                    _q("index", True, "leaf index"),
                    _q("size", False, "tree size (default: newest)"),
                ],
                "responses": {
                    "200": _json(
                        "proof",
                        {
                            "type": "object",
                            "required": ["index", "size", "leaf_hash", "proof"],
                            "properties": {
                                "index": {"type": "integer"},
                                "size": {"type": "integer"},
                                "leaf_hash": B64,
                                "proof": {"type": "array", "items": B64},
                            },
                        },
                    ),
                    "400": _problem("malformed parameters"),
                    "404": _problem("size beyond the tree"),
                },
            }
        },
        "/ledger/proof/consistency": {
            "get": {
                "summary": "RFC 6962 consistency proof between two tree sizes",
                "parameters": [
                    _q("old", True, "older size"),
                    _q("new", False, "newer size (default: newest)"),
                ],
                "responses": {
                    "200": _json(
                        "proof",
                        {
                            "type": "object",
                            "required": ["old", "new", "proof"],
                            "properties": {
                                "old": {"type": "integer"},
                                "new": {"type": "integer"},
                                "proof": {"type": "array", "items": B64},
                            },
                        },
                    ),
                    "400": _problem("malformed parameters"),
                    "404": _problem("size beyond the tree"),
                },
            }
        },
        "/ledger/entries/{index}": {
            "get": {
                "summary": "One ledger entry (its leaf bytes, hash and parsed event)",
                "parameters": [{"name": "index", "in": "path", "required": True, "schema": UINT}],
                "responses": {
                    "200": _json(
                        "entry",
                        {
                            "type": "object",
                            "required": ["index", "leaf_hash", "data"],
                            "properties": {
                                "index": {"type": "integer"},
                                "leaf_hash": B64,
                                "data": B64,
                                "event": {"type": "object"},
                            },
                        },
                    ),
                    "400": _problem("malformed index"),
                    "404": _problem("beyond the tree"),
                },
            }
        },
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
                "responses": {"200": _json("SMART configuration", {"type": "object"})},
            }
        },
        "/v1/invites": {
            "post": {
                "summary": "Create a single-use invite (admin: any; provider: patient, device)",
                "security": DPOP,
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["role"],
                        "properties": {
                            "role": {"enum": ["admin", "provider", "patient", "device", "auditor"]},
                            "npi": {"type": "string"},
                            "patient": {"type": "string"},
                            "display_name": {"type": "string"},
                            "ttl": {"type": "integer"},
                        },
                    }
                ),
                "responses": {
                    "201": _json(
                        "the invite code (shown once) and the ledger receipt",
                        {"type": "object", "required": ["invite", "receipt"]},
                    ),
                    **AUTH_ERRORS,
                    **BODY_ERRORS,
                },
            }
        },
        "/v1/enroll": {
            "post": {
                "summary": "Redeem an invite with the holder's public JWK (EdDSA or ES256)",
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["invite", "jwk"],
                        "properties": {
                            "invite": {"type": "string"},
                            "jwk": {"type": "object"},
                            "serial": {"type": "string"},
                            "model": {"type": "string"},
                        },
                    }
                ),
                "responses": {
                    "201": _json(
                        "the new subject id and the ledger receipt",
                        {"type": "object", "required": ["sub", "role", "receipt"]},
                    ),
                    "409": _problem("key already enrolled"),
                    **BODY_ERRORS,
                },
            }
        },
        "/oauth/token": {
            "post": {
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
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/x-www-form-urlencoded": {
                            "schema": {
                                "type": "object",
                                "required": ["grant_type"],
                                "properties": {
                                    k: {"type": "string"}
                                    for k in (
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
                                    )
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json(
                        "a DPoP-bound access token",
                        {
                            "type": "object",
                            "required": ["access_token", "token_type", "expires_in"],
                        },
                    ),
                    "400": _problem(
                        "malformed request, bad DPoP proof, scope or resource, or a peer's "
                        "attestation refused (invalid_grant)"
                    ),
                    "401": _problem("client authentication failed"),
                    "413": _problem("body too large"),
                    "503": _problem("replay cache full, or a peer organization unreachable"),
                },
            }
        },
        "/oauth/introspect": {
            "post": {
                "summary": "RFC 7662 token introspection (admin, auditor)",
                "security": DPOP,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/x-www-form-urlencoded": {
                            "schema": {
                                "type": "object",
                                "required": ["token"],
                                "properties": {"token": {"type": "string"}},
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json(
                        "RFC 7662 answer",
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
                "parameters": [
                    {"name": "jti", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": _json(
                        "the receipt, and the leaf (base64) it proves",
                        {"type": "object", "required": ["receipt", "entry"]},
                    ),
                    "404": _problem("unknown, or not the caller's"),
                    **AUTH_ERRORS,
                },
            }
        },
        "/v1/status/{list}": {
            "get": {
                "summary": "Token Status List (JWT form)",
                "parameters": [
                    {"name": "list", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": {
                        "description": "status list token",
                        "content": {"application/statuslist+jwt": {"schema": {"type": "string"}}},
                    },
                    "404": _problem("no such list"),
                },
            }
        },
        "/v1/revocations": {
            "post": {
                "summary": "Revoke an attestation (jti) or a whole subject (sub) (admin)",
                "security": DPOP,
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["reason"],
                        "properties": {
                            "jti": {"type": "string"},
                            "sub": {"type": "string"},
                            "reason": {"type": "string"},
                        },
                    }
                ),
                "responses": {
                    "200": _json(
                        "revoked status indexes and the ledger receipt",
                        {"type": "object", "required": ["revoked", "receipt"]},
                    ),
                    "404": _problem("no such token or subject"),
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
                    "200": _json("caller", {"type": "object", "required": ["sub", "role"]}),
                    **AUTH_ERRORS,
                },
            }
        },
        "/v1/audit/events": {
            "get": {
                "summary": "Ledger events by filter, each with an inclusion proof (auditor)",
                "security": DPOP,
                "parameters": [
                    *(
                        {"name": n, "in": "query", "required": False, "schema": {"type": "string"}}
                        for n in ("type", "actor", "subject", "session", "since", "until")
                    ),
                    _q("limit", False, "rows per page, 1..1000 (default 100)"),
                    _q("cursor", False, "the next value of the previous page"),
                ],
                "responses": {
                    "200": _json(
                        "a page of rows and the checkpoint they are proved against",
                        {
                            "type": "object",
                            "required": ["checkpoint", "size", "rows", "next", "query_receipt"],
                        },
                    ),
                    "400": _problem("malformed filter"),
                    **AUTH_ERRORS,
                },
            }
        },
        "/v1/audit/export": {
            "get": {
                "summary": "Stream matching events: JSON Lines with proofs, CSV, or a FHIR Bundle "
                "of AuditEvents (auditor)",
                "security": DPOP,
                "parameters": [
                    {
                        "name": "format",
                        "in": "query",
                        "required": False,
                        "schema": {"enum": ["jsonl", "csv", "fhir"]},
                    },
                    *(
                        {"name": n, "in": "query", "required": False, "schema": {"type": "string"}}
                        for n in ("type", "actor", "subject", "session", "since", "until")
                    ),
                ],
                "responses": {
                    "200": {
                        "description": "the export, streamed",
                        "content": {
                            "application/x-ndjson": {"schema": {"type": "string"}},
                            "text/csv": {"schema": {"type": "string"}},
                            "application/fhir+json": {"schema": {"type": "object"}},
                        },
                    },
                    "400": _problem("malformed filter or format"),
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
                    {
                        "name": "patient",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "format",
                        "in": "query",
                        "required": False,
                        "schema": {"enum": ["json", "fhir"]},
                    },
                    _q("limit", False, "rows scanned per page, 1..1000"),
                    _q("cursor", False, "the next value of the previous page"),
                ],
                "responses": {
                    "200": {
                        "description": "the report",
                        "content": {
                            "application/json": {"schema": {"type": "object"}},
                            "application/fhir+json": {"schema": {"type": "object"}},
                        },
                    },
                    "400": _problem("malformed parameters"),
                    "404": _problem("no such patient"),
                    **AUTH_ERRORS,
                },
            }
        },
        "/v1/consents": {
            "post": {
                "summary": "Grant a provider (or role:provider) scopes until a time (patient)",
                "security": DPOP,
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["grantee", "scopes", "until"],
                        "properties": {
                            "grantee": {"type": "string"},
                            "scopes": {
                                "type": "array",
                                "items": {"enum": ["call", "vitals.read", "vitals.stream"]},
                            },
                            "until": {"type": "string", "format": "date-time"},
                        },
                    }
                ),
                "responses": {
                    "201": _json("the consent and its ledger receipt", {"type": "object"}),
                    **AUTH_ERRORS,
                    **BODY_ERRORS,
                },
            },
            "get": {
                "summary": "The patient's grants, or the grants naming the calling provider",
                "security": DPOP,
                "responses": {
                    "200": _json("consents", {"type": "object", "required": ["consents"]}),
                    **AUTH_ERRORS,
                },
            },
        },
        "/v1/consents/{id}": {
            "delete": {
                "summary": "Revoke a consent, effective at once (the patient who granted it)",
                "security": DPOP,
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": _json("revoked, with the ledger receipt", {"type": "object"}),
                    "404": _problem("no such consent for this patient"),
                    **AUTH_ERRORS,
                },
            }
        },
        "/v1/emergency-access": {
            "post": {
                "summary": "Break-the-glass: a provider declares an emergency with a reason",
                "security": DPOP,
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["patient", "reason"],
                        "properties": {"patient": {"type": "string"}, "reason": {"type": "string"}},
                    }
                ),
                "responses": {
                    "201": _json("the flagged, time-boxed access", {"type": "object"}),
                    **AUTH_ERRORS,
                    **BODY_ERRORS,
                },
            }
        },
        "/v1/turn-credentials": {
            "get": {
                "summary": "Short-lived TURN credentials (coturn REST API scheme)",
                "security": DPOP,
                "responses": {
                    "200": _json(
                        "username, password, ttl and TURN URIs",
                        {"type": "object", "required": ["username", "password", "ttl", "uris"]},
                    ),
                    **AUTH_ERRORS,
                },
            }
        },
        "/v1/sessions": {
            "get": {
                "summary": "The caller's calls (patient or provider), most recently changed first",
                "security": DPOP,
                "parameters": [
                    {"name": "active", "in": "query", "schema": {"enum": ["true", "false"]}},
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 200},
                    },
                ],
                "responses": {
                    "200": _json("sessions", {"type": "object", "required": ["sessions"]}),
                    "400": _problem("malformed parameters"),
                    **AUTH_ERRORS,
                },
            },
            "post": {
                "summary": "Schedule a call (provider, with consent) or request one (patient)",
                "security": DPOP,
                "requestBody": _body(
                    {
                        "type": "object",
                        "properties": {
                            "patient": {"type": "string"},
                            "provider": {"type": "string"},
                        },
                    }
                ),
                "responses": {
                    "201": _json("the session and its ledger receipt", {"type": "object"}),
                    **AUTH_ERRORS,
                    **BODY_ERRORS,
                },
            },
        },
        "/v1/sessions/waiting": {
            "get": {
                "summary": "The calling provider's waiting room",
                "security": DPOP,
                "responses": {"200": _json("sessions waiting", {"type": "object"}), **AUTH_ERRORS},
            }
        },
        "/v1/sessions/{id}": {"get": _session_op("A session (its participants only)")},
        "/v1/sessions/{id}/ticket": {
            "post": _session_op(
                "A single-use, short-lived signalling ticket",
                ok="ticket and WebSocket path",
                conflict="session over",
            )
        },
        "/v1/sessions/{id}/admit": {
            "post": _session_op(
                "Admit the waiting patient (the session's provider)", conflict="not waiting"
            )
        },
        "/v1/sessions/{id}/end": {
            "post": _session_op(
                "End or cancel the session (a participant)", conflict="already over"
            )
        },
        "/v1/sessions/{id}/no-show": {
            "post": _session_op(
                "Record that the patient did not come (the session's provider)",
                conflict="already admitted or over",
            )
        },
        "/v1/sessions/{id}/ws": {
            "get": {
                "summary": "Signalling WebSocket (offer, answer, candidate, bye), by ticket",
                "parameters": [
                    *[{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                    {
                        "name": "ticket",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "101": {"description": "switching to WebSocket"},
                    "403": _problem("unknown, spent or expired ticket"),
                    "400": _problem("not a WebSocket request"),
                },
            }
        },
    },
    "components": {
        "securitySchemes": {
            "DPoP": {
                "type": "http",
                "scheme": "DPoP",
                "description": "Authorization: DPoP <access token>, plus a DPoP proof header "
                "(RFC 9449)",
            }
        },
        "schemas": {
            "Problem": {
                "type": "object",
                "description": "RFC 9457 problem details",
                "required": ["type", "title", "status"],
                "properties": {
                    "type": {"type": "string", "format": "uri"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string"},
                },
            }
        },
    },
}


SPEC["paths"].update(VITALS_PATHS)


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(SPEC)


def setup(app: web.Application) -> None:
    app.router.add_get("/openapi.json", openapi)
