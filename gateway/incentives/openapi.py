"""OpenAPI paths of incentives (``gateway.incentives.http``): programs, enrollment,
progress, evaluation and its disclosure, rewards."""

from __future__ import annotations

from typing import Any

from ..openapi_parts import (
    AUTH_ERRORS,
    BODY_ERRORS,
    DATABASE_DOWN,
    DB_UNAVAILABLE,
    DPOP,
    MALFORMED,
    STRING,
    json_body,
    json_limits,
    json_reply,
    path_param,
    problem,
)

__all__ = ["PATHS"]

_PROGRAM = {
    "type": "object",
    "required": ["name", "start", "rule"],
    "properties": {
        "name": {"type": "string", "maxLength": 120},
        "start": {"type": "string", "format": "date", "description": "a UTC date, YYYY-MM-DD"},
        "period_days": {"type": "integer", "minimum": 1, "maximum": 31, "default": 7},
        "periods": {"type": "integer", "minimum": 1, "maximum": 104, "default": 1},
        "points": {"type": "integer", "minimum": 0, "maximum": 1000, "default": 1},
        "rule": {
            "type": "string",
            "maxLength": 2000,
            "description": "CEL over the period's aggregates (docs/incentives.md): the "
            "variable `days` and the functions count, days_with, streak, min, max, mean of "
            "one LOINC code; gives a bool or an int 0..10",
        },
    },
}
_ID = path_param("id")
_NOT_FOUND = {"404": problem("no program with that id")}

PATHS: dict[str, Any] = {
    "/v1/programs": {
        "post": {
            "summary": "Publish an incentive program (admin or provider); its id is the "
            "SHA-256 of its canonical text",
            "security": DPOP,
            "requestBody": json_body(_PROGRAM),
            "responses": {
                "200": json_reply("the same program, published before", {"type": "object"}),
                "201": json_reply("the program and its ledger receipt", {"type": "object"}),
                **AUTH_ERRORS,
                **BODY_ERRORS,
                "400": json_limits(
                    "a malformed program, or a rule that is not valid CEL, names an unknown "
                    "variable, function or code, or does not give a bool or an int 0..10 "
                    "(problem type invalid-rule)"
                ),
                **DB_UNAVAILABLE,
            },
        },
        "get": {
            "summary": "Published programs (any enrolled caller), optionally by publisher",
            "security": DPOP,
            "parameters": [
                {"name": "publisher", "in": "query", "required": False, "schema": STRING}
            ],
            "responses": {
                "200": json_reply(
                    "programs",
                    {
                        "type": "object",
                        "required": ["programs"],
                        "properties": {"programs": {"type": "array"}},
                    },
                ),
                **AUTH_ERRORS,
                **MALFORMED,
                **DB_UNAVAILABLE,
            },
        },
    },
    "/v1/programs/{id}/enroll": {
        "post": {
            "summary": "Enroll (patient): an `incentives` consent naming the program, "
            "revoked with DELETE /v1/consents/{id}",
            "security": DPOP,
            "parameters": [_ID],
            "responses": {
                "200": json_reply("already enrolled", {"type": "object"}),
                "201": json_reply("the consent and its ledger receipt", {"type": "object"}),
                **AUTH_ERRORS,
                **BODY_ERRORS,
                **_NOT_FOUND,
                "409": problem("the program has ended"),
                **DB_UNAVAILABLE,
            },
        }
    },
    "/v1/programs/{id}/progress": {
        "get": {
            "summary": "The patient's own standing: enrollment, this period's aggregates "
            "and result so far, evaluations",
            "security": DPOP,
            "parameters": [_ID],
            "responses": {
                "200": json_reply("progress", {"type": "object"}),
                **AUTH_ERRORS,
                **MALFORMED,
                **_NOT_FOUND,
                "410": problem("the patient's vitals were erased"),
                **DB_UNAVAILABLE,
            },
        }
    },
    "/v1/programs/{id}/evaluate": {
        "post": {
            "summary": "Evaluate a finished period for the calling patient (once; again "
            "answers the first evaluation)",
            "security": DPOP,
            "parameters": [_ID],
            "requestBody": json_body(
                {
                    "type": "object",
                    "required": ["period"],
                    "properties": {"period": {"type": "integer", "minimum": 0}},
                }
            ),
            "responses": {
                "200": json_reply(
                    "the evaluation (result, points, ledger index)", {"type": "object"}
                ),
                **AUTH_ERRORS,
                **BODY_ERRORS,
                "400": json_limits("no such period, or a rule that failed on this period"),
                "403": problem(
                    "the caller's role or scope does not allow this, or the "
                    "patient is not enrolled (problem type not-enrolled)"
                ),
                **_NOT_FOUND,
                "409": problem("the period is not over"),
                "410": problem("the patient's vitals were erased"),
                "503": problem(
                    "another evaluator (a replica, the periodic sweep) is evaluating that "
                    "period now (problem type evaluation-in-progress). "
                    + DB_UNAVAILABLE["503"]["description"]
                ),
            },
        }
    },
    "/v1/programs/{id}/evaluations/{period}": {
        "get": {
            "summary": "The patient's disclosure of an evaluation: program text, aggregates "
            "and salt, to re-check with `telegate incentives verify`",
            "security": DPOP,
            "parameters": [_ID, path_param("period")],
            "responses": {
                "200": json_reply("the disclosure", {"type": "object"}),
                **AUTH_ERRORS,
                **MALFORMED,
                "404": problem("no such program, or that period was not evaluated"),
                "410": problem("the patient's vitals were erased: the aggregates are gone"),
                **DB_UNAVAILABLE,
            },
        }
    },
    "/v1/rewards": {
        "get": {
            "summary": "The calling patient's reward credentials (SD-JWT VC, `dc+sd-jwt`)",
            "security": DPOP,
            "responses": {
                "200": json_reply(
                    "rewards",
                    {
                        "type": "object",
                        "required": ["rewards"],
                        "properties": {"rewards": {"type": "array"}},
                    },
                ),
                **AUTH_ERRORS,
                **MALFORMED,
                **DB_UNAVAILABLE,
            },
        }
    },
    "/v1/rewards/{id}/revoke": {
        "post": {
            "summary": "Revoke a reward credential (admin): its status-list bit is set",
            "security": DPOP,
            "parameters": [_ID],
            "responses": {
                "200": json_reply("revoked", {"type": "object"}),
                **AUTH_ERRORS,
                **MALFORMED,
                "404": problem("no live reward with that id"),
                **DB_UNAVAILABLE,
            },
        }
    },
    "/v1/rewards/status": {
        "get": {
            "summary": "The reward credentials' Token Status List (`statuslist+jwt`), signed "
            "with a key of /.well-known/jwks.json",
            "responses": {
                "200": {
                    "description": "the status list token",
                    "content": {"application/statuslist+jwt": {"schema": STRING}},
                },
                **MALFORMED,
                "503": problem(DATABASE_DOWN),
            },
        }
    },
}
