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
    EPOCH,
    MALFORMED,
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
_PROGRAM_ID = {
    "type": "string",
    "pattern": "^[0-9a-f]{64}$",
    "description": "the SHA-256 of the program's canonical text, hex",
}
_INDEX = {"type": "integer", "minimum": 0, "description": "the leaf of its ledger event"}
_PENDING_INDEX = {
    "type": ["integer", "null"],
    "minimum": 0,
    "description": "the leaf of its ledger event (null while it is being recorded)",
}
_RESULT = {
    "oneOf": [{"type": "boolean"}, {"type": "integer", "minimum": 0, "maximum": 10}],
    "description": "what the rule gave: a bool, or an int 0..10 (passed when true or > 0)",
}
_B64U = {"type": "string", "contentEncoding": "base64url", "description": "unpadded base64url"}
_PERIOD = {"type": "integer", "minimum": 0, "description": "0-based period number"}
#: A program as stored: its published text, with when and where it was published.
_PROGRAM_VIEW: dict[str, Any] = {
    "id": _PROGRAM_ID,
    "name": {"type": "string", "maxLength": 120},
    "start": {"type": "string", "format": "date", "description": "a UTC date, YYYY-MM-DD"},
    "period_days": {"type": "integer", "minimum": 1, "maximum": 31},
    "periods": {"type": "integer", "minimum": 1, "maximum": 104},
    "rule": {"type": "string", "maxLength": 2000, "description": "the rule's CEL text"},
    "points": {"type": "integer", "minimum": 0, "maximum": 1000},
    "publisher": {"type": "string", "description": "the publisher's subject id"},
    "published": EPOCH,
    "ledger_index": _INDEX,
}
_ENROLLMENT: dict[str, Any] = {
    "program": _PROGRAM_ID,
    "consent": {"type": "string", "description": "the `incentives` consent's id"},
    "until": {**EPOCH, "description": "when the enrollment (its consent) ends, Unix time"},
}
_EVALUATION: dict[str, Any] = {
    "period": _PERIOD,
    "result": _RESULT,
    "passed": {"type": "boolean"},
    "points": {"type": "integer", "minimum": 0, "description": "the points earned"},
    "commitment": {
        "type": "string",
        "description": "the salted commitment to the aggregates, as on the ledger",
    },
    "evaluated": EPOCH,
    "ledger_index": _PENDING_INDEX,
}

#: The named shapes of the incentives answers (``components/schemas``).
SCHEMAS: dict[str, Any] = {
    "Program": obj(_PROGRAM_VIEW, description="A published incentive program"),
    "ProgramPublished": obj(
        {**_PROGRAM_VIEW, "receipt": ref("Receipt")},
        description="A program just published, and the ledger receipt of its event",
    ),
    "ProgramList": obj({"programs": {"type": "array", "items": ref("Program")}}),
    "ProgramEnrollment": obj(_ENROLLMENT, description="A live enrollment in a program"),
    "ProgramEnrolled": obj(
        {**_ENROLLMENT, "receipt": ref("Receipt")},
        description="A new enrollment, and the ledger receipt of its consent",
    ),
    "IncentiveCodeAggregates": obj(
        {
            "count": {"type": "integer", "minimum": 0, "description": "readings"},
            "days_with": {"type": "integer", "minimum": 0, "description": "days with one"},
            "streak": {"type": "integer", "minimum": 0, "description": "longest run of days"},
            "min": {"type": "number"},
            "max": {"type": "number"},
            "mean": {"type": "number", "description": "rounded to 6 decimals; 0.0 if none"},
        },
        description="One LOINC code's aggregates over a period (values in its UCUM unit)",
    ),
    "IncentiveAggregates": obj(
        {
            "days": {"type": "integer", "minimum": 1},
            "codes": {
                "type": "object",
                "additionalProperties": ref("IncentiveCodeAggregates"),
                "description": "by LOINC code: the codes the rule names",
            },
        },
        description="A period's aggregates, what the rule reads (docs/incentives.md)",
    ),
    "IncentiveEvaluation": obj(_EVALUATION, description="A period's evaluation"),
    "IncentiveEvaluated": obj(
        {
            "program": _PROGRAM_ID,
            **_EVALUATION,
            "reward": {
                "type": ["string", "null"],
                "description": "with a passed period: the reward credential's id (null if "
                "it could not be issued now)",
            },
        },
        ["program", *_EVALUATION],
        description="The evaluation of a finished period",
    ),
    "ProgramProgress": obj(
        {
            "program": _PROGRAM_ID,
            "enrolled": {"type": "boolean"},
            "consent": {"type": ["string", "null"], "description": "the enrollment's consent"},
            "period": {
                "type": ["integer", "null"],
                "minimum": 0,
                "description": "the current period (null before the start or after the end)",
            },
            "evaluations": {"type": "array", "items": ref("IncentiveEvaluation")},
            "from": {**EPOCH, "description": "the current period's start, Unix time"},
            "to": {**EPOCH, "description": "the current period's end (excluded), Unix time"},
            "aggregates": ref("IncentiveAggregates"),
            "result_so_far": {
                "oneOf": [*_RESULT["oneOf"], {"type": "null"}],
                "description": "what the rule gives so far this period (null if it fails)",
            },
        },
        ["program", "enrolled", "consent", "period", "evaluations"],
        description="The patient's own standing; enrolled in a running program, the current "
        "period's bounds, aggregates and result so far too",
    ),
    "EvaluationDisclosure": obj(
        {
            "program": {"type": "string", "description": "the program's canonical text"},
            "aggregates": ref("IncentiveAggregates"),
            "salt": _B64U,
            **_EVALUATION,
            "ledger_index": _INDEX,
            "entry": {**_B64U, "description": "the evaluation's ledger entry, base64url"},
            "receipt": ref("Receipt"),
        },
        description="What re-checks an evaluation (`telegate incentives verify`): the "
        "program's text, the aggregates and salt the ledger's commitment covers, the entry "
        "and its receipt",
    ),
    "Reward": obj(
        {
            "id": {"type": "string"},
            "program": _PROGRAM_ID,
            "period": _PERIOD,
            "issued": EPOCH,
            "revoked": {"type": ["integer", "null"], "minimum": 0, "description": "Unix time"},
            "ledger_index": _PENDING_INDEX,
            "credential": {"type": "string", "description": "the SD-JWT VC (`dc+sd-jwt`)"},
        },
        description="A reward credential",
    ),
    "RewardList": obj({"rewards": {"type": "array", "items": ref("Reward")}}),
    "RewardRevoked": obj(
        {"id": {"type": "string"}, "revoked": EPOCH}, description="A revoked reward"
    ),
}
_NOT_FOUND = {"404": problem("no program with that id")}

PATHS: dict[str, Any] = {
    "/v1/programs": {
        "post": {
            "summary": "Publish an incentive program (admin or provider); its id is the "
            "SHA-256 of its canonical text",
            "security": DPOP,
            "requestBody": json_body(_PROGRAM),
            "responses": {
                "200": json_reply("the same program, published before", ref("Program")),
                "201": json_reply("the program and its ledger receipt", ref("ProgramPublished")),
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
                "200": json_reply("programs", ref("ProgramList")),
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
                "200": json_reply("already enrolled", ref("ProgramEnrollment")),
                "201": json_reply("the consent and its ledger receipt", ref("ProgramEnrolled")),
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
                "200": json_reply("progress", ref("ProgramProgress")),
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
                    "the evaluation (result, points, ledger index)", ref("IncentiveEvaluated")
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
                "200": json_reply("the disclosure", ref("EvaluationDisclosure")),
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
                "200": json_reply("rewards", ref("RewardList")),
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
                "200": json_reply("revoked", ref("RewardRevoked")),
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
