"""OpenAPI paths of calls (``gateway.sessions.http`` and ``.turn``): TURN credentials, the
session state machine, and the signalling WebSocket."""

from __future__ import annotations

from typing import Any

from ..openapi_parts import (
    AUTH_ERRORS,
    BODY_ERRORS,
    DATABASE_DOWN,
    DB_UNAVAILABLE,
    DPOP,
    EPOCH,
    LEDGER_DOWN,
    MALFORMED,
    NAMES,
    RATE_LIMITED,
    STRING,
    json_body,
    json_reply,
    obj,
    path_param,
    problem,
    ref,
)
from .store import State

__all__ = ["PATHS", "SCHEMAS"]

#: A session as the gateway answers it (``_view`` in gateway.sessions.http).
_SESSION_FIELDS: dict[str, Any] = {
    "id": {**STRING, "description": "the session id (32 hex digits)"},
    "patient": {**STRING, "description": "the patient's subject id (`pat:...`)"},
    "provider": {**STRING, "description": "the provider's subject id (`prov:...`)"},
    "state": {"type": "string", "enum": [str(s) for s in State]},
    "created": EPOCH,
    "updated": EPOCH,
}

#: The named shapes of the calls' answers (``components/schemas``).
SCHEMAS: dict[str, Any] = {
    "Session": obj(_SESSION_FIELDS, description="A call session"),
    "SessionCreated": obj(
        {**_SESSION_FIELDS, "receipt": ref("Receipt")},
        description="A new call session and the ledger receipt of its scheduling",
    ),
    "SessionNamed": obj(
        {**_SESSION_FIELDS, "names": NAMES},
        description="A call session and its participants' display names",
    ),
    "SessionList": obj({"sessions": {"type": "array", "items": ref("Session")}, "names": NAMES}),
    "WaitingRoom": obj({"waiting": {"type": "array", "items": ref("Session")}, "names": NAMES}),
    "SignallingTicket": obj(
        {
            "ticket": {**STRING, "description": "single use"},
            "expires": EPOCH,
            "ws": {**STRING, "description": "the WebSocket path to open, ticket included"},
        }
    ),
    "TurnCredentials": obj(
        {
            "username": {**STRING, "description": "`<expiry>:<opaque user>` (coturn REST)"},
            "password": {**STRING, "description": "base64 HMAC-SHA1 of the username"},
            "ttl": {"type": "integer", "minimum": 0, "description": "seconds left"},
            "expires": EPOCH,
            "uris": {"type": "array", "items": STRING},
        }
    ),
}
_SESSION = ref("Session")
#: Ticket and admit refuse to carry a call on with a party revoked since it was scheduled.
_NOT_NOW = (
    "the session is over or not in a state for this, or its other party has been revoked "
    "since it was scheduled"
)


def _session_op(
    summary: str,
    ok: str = "the session",
    conflict: str | None = None,
    schema: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An authenticated operation on one call session, addressed by its id."""
    responses: dict[str, Any] = {
        "200": json_reply(ok, schema or ref("Session")),
        "404": problem("no such session for this caller"),
    }
    if conflict is not None:
        responses["409"] = problem(conflict)
    return {
        "summary": summary,
        "security": DPOP,
        "parameters": [path_param("id")],
        "responses": {**responses, **AUTH_ERRORS, **MALFORMED, **DB_UNAVAILABLE},
    }


PATHS: dict[str, Any] = {
    "/v1/turn-credentials": {
        "get": {
            "summary": "Short-lived TURN credentials (coturn REST API scheme)",
            "security": DPOP,
            "responses": {
                "200": json_reply(
                    "username, password, ttl and TURN URIs: `ttl` is what is left of the "
                    "credential, at most `turn_ttl` and never past the `exp` of the "
                    "attestation it was asked with (coturn REST credentials cannot be "
                    "revoked, so this bounds a revoked party's relay access)",
                    ref("TurnCredentials"),
                ),
                **AUTH_ERRORS,
                **MALFORMED,
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
                "200": json_reply("sessions", ref("SessionList")),
                "400": problem("malformed parameters"),
                **AUTH_ERRORS,
                **DB_UNAVAILABLE,
            },
        },
        "post": {
            "summary": "Schedule a call (provider, with consent) or request one (patient)",
            "security": DPOP,
            "requestBody": json_body(
                {"type": "object", "properties": {"patient": STRING, "provider": STRING}}
            ),
            "responses": {
                "201": json_reply("the session and its ledger receipt", ref("SessionCreated")),
                **AUTH_ERRORS,
                **BODY_ERRORS,
                **DB_UNAVAILABLE,
            },
        },
    },
    "/v1/sessions/waiting": {
        "get": {
            "summary": "The calling provider's waiting room",
            "description": "Calls whose patient was revoked are not listed (admitting them "
            "answers 409); they stay in `GET /v1/sessions?active=true`, where they can be "
            "ended.",
            "security": DPOP,
            "responses": {
                "200": json_reply("sessions waiting", ref("WaitingRoom")),
                **AUTH_ERRORS,
                **MALFORMED,
                **DB_UNAVAILABLE,
            },
        }
    },
    "/v1/sessions/{id}": {
        "get": _session_op(
            "A session (its participants only)",
            schema=ref("SessionNamed"),
        )
    },
    "/v1/sessions/{id}/ticket": {
        "post": _session_op(
            "A single-use, short-lived signalling ticket",
            ok="ticket and WebSocket path",
            schema=ref("SignallingTicket"),
            conflict=_NOT_NOW,
        )
    },
    "/v1/sessions/{id}/admit": {
        "post": _session_op("Admit the waiting patient (the session's provider)", conflict=_NOT_NOW)
    },
    "/v1/sessions/{id}/end": {
        "post": _session_op("End or cancel the session (a participant)", conflict="already over")
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
            "description": "The gateway closes the socket when what allowed it ends: 4403 "
            "(reason `revoked`, `consent`, `consent_expired` or `emergency_ended`, after a "
            "`bye` from `gateway`; recorded as `session.socket_closed`); 4401 `expired` when "
            "the attestation the ticket was bound to expires (reconnect with a fresh ticket; "
            "no `bye`, not recorded); 1000 after the `bye` of a call that is over; 4409 when a "
            "newer socket of the same party replaces it (on any replica); 1001 when the replica "
            "shuts down or drains (reconnect: the load balancer picks another); 1013 after an "
            "`error` message when a message could not be recorded (`store unavailable`, with "
            "`retry_after`) or, with several replicas, could not cross the shared state "
            "(`shared state unavailable`): reconnect after a moment. An "
            "attestation revoked while the socket opens gets 4403 `revoked` at once, with no "
            "`bye`, recorded as `auth.refused`.",
            "parameters": [
                path_param("id"),
                {"name": "ticket", "in": "query", "required": True, "schema": STRING},
            ],
            "responses": {
                "101": {"description": "switching to WebSocket"},
                "403": problem(
                    "unknown, spent or expired ticket, the session is over, or the attestation "
                    "the ticket is bound to was revoked or has expired"
                ),
                "400": problem("not a WebSocket request"),
                # A refused ticket is an anonymous refusal.
                **RATE_LIMITED,
                "503": problem(
                    f"{DATABASE_DOWN}; {LEDGER_DOWN}; the replica is draining; or, with "
                    "several replicas, the shared state (Redis) does not answer (Retry-After)"
                ),
            },
        }
    },
}
