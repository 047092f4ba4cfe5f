"""OpenAPI paths of calls (``gateway.sessions.http`` and ``.turn``): TURN credentials, the
session state machine, and the signalling WebSocket."""

from __future__ import annotations

from typing import Any

from ..openapi_parts import (
    AUTH_ERRORS,
    BODY_ERRORS,
    DPOP,
    MALFORMED,
    RATE_LIMITED,
    STRING,
    json_body,
    json_reply,
    path_param,
    problem,
)

__all__ = ["PATHS"]


def _session_op(
    summary: str, ok: str = "the session", conflict: str | None = None
) -> dict[str, Any]:
    """An authenticated operation on one call session, addressed by its id."""
    responses: dict[str, Any] = {
        "200": json_reply(ok, {"type": "object"}),
        "404": problem("no such session for this caller"),
    }
    if conflict is not None:
        responses["409"] = problem(conflict)
    return {
        "summary": summary,
        "security": DPOP,
        "parameters": [path_param("id")],
        "responses": {**responses, **AUTH_ERRORS, **MALFORMED},
    }


PATHS: dict[str, Any] = {
    "/v1/turn-credentials": {
        "get": {
            "summary": "Short-lived TURN credentials (coturn REST API scheme)",
            "security": DPOP,
            "responses": {
                "200": json_reply(
                    "username, password, ttl and TURN URIs",
                    {"type": "object", "required": ["username", "password", "ttl", "uris"]},
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
                "200": json_reply("sessions", {"type": "object", "required": ["sessions"]}),
                "400": problem("malformed parameters"),
                **AUTH_ERRORS,
            },
        },
        "post": {
            "summary": "Schedule a call (provider, with consent) or request one (patient)",
            "security": DPOP,
            "requestBody": json_body(
                {"type": "object", "properties": {"patient": STRING, "provider": STRING}}
            ),
            "responses": {
                "201": json_reply("the session and its ledger receipt", {"type": "object"}),
                **AUTH_ERRORS,
                **BODY_ERRORS,
            },
        },
    },
    "/v1/sessions/waiting": {
        "get": {
            "summary": "The calling provider's waiting room",
            "security": DPOP,
            "responses": {
                "200": json_reply("sessions waiting", {"type": "object"}),
                **AUTH_ERRORS,
                **MALFORMED,
            },
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
            "parameters": [
                path_param("id"),
                {"name": "ticket", "in": "query", "required": True, "schema": STRING},
            ],
            "responses": {
                "101": {"description": "switching to WebSocket"},
                "403": problem("unknown, spent or expired ticket"),
                "400": problem("not a WebSocket request"),
                # A refused ticket is an anonymous refusal.
                **RATE_LIMITED,
            },
        }
    },
}
