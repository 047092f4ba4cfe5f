"""What every area's OpenAPI paths share: the response and body builders, the DPoP security
requirement, the error responses common to many operations, and the components
(``Problem``, the ``DPoP`` scheme, the shared responses) that ``gateway.openapi`` serves once.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AUTH_ERRORS",
    "BODY_ERRORS",
    "COMPONENTS",
    "DPOP",
    "DPOP_HEADER",
    "MALFORMED",
    "PROBLEM",
    "RATE_LIMITED",
    "STRING",
    "UINT",
    "json_body",
    "json_reply",
    "path_param",
    "problem",
    "text_reply",
    "uint_query",
]

PROBLEM = {"$ref": "#/components/schemas/Problem"}
STRING = {"type": "string"}
UINT = {"type": "string", "pattern": "^[0-9]{1,19}$"}


def problem(desc: str) -> dict[str, Any]:
    """A problem+json (RFC 9457) response."""
    return {"description": desc, "content": {"application/problem+json": {"schema": PROBLEM}}}


def json_reply(desc: str, schema: dict[str, Any]) -> dict[str, Any]:
    """An application/json response."""
    return {"description": desc, "content": {"application/json": {"schema": schema}}}


def text_reply(desc: str) -> dict[str, Any]:
    """A text/plain response."""
    return {"description": desc, "content": {"text/plain": {"schema": STRING}}}


def json_body(schema: dict[str, Any]) -> dict[str, Any]:
    """A required application/json request body."""
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def path_param(name: str) -> dict[str, Any]:
    """A string path parameter, ``{name}`` in the path."""
    return {"name": name, "in": "path", "required": True, "schema": STRING}


def uint_query(name: str, required: bool, desc: str) -> dict[str, Any]:
    """A non-negative integer query parameter, written as digits (up to 2^63)."""
    return {"name": name, "in": "query", "required": required, "schema": UINT, "description": desc}


DPOP: list[dict[str, list[str]]] = [{"DPoP": []}]
DPOP_HEADER = {"name": "DPoP", "in": "header", "required": True, "schema": STRING}

# The gateway derives its own URL from the Host header (DPoP htu, issuer, discovery), so any
# operation that authenticates or names its origin can refuse a malformed one. Operations that
# describe a 400 of their own keep it: the answer is the same problem+json.
MALFORMED = {"400": {"$ref": "#/components/responses/Malformed"}}
# Per-source limit on anonymous refusals: any request that would end in one can get this.
RATE_LIMITED = {"429": {"$ref": "#/components/responses/RateLimited"}}
AUTH_ERRORS = {
    "401": problem("missing, invalid, expired or revoked credentials"),
    "403": problem("the caller's role or scope does not allow this"),
    **RATE_LIMITED,
    "503": problem(
        "DPoP replay cache full, or (a peer organization's provider) the peer's token status "
        "list is due and unreachable; see Retry-After"
    ),
}
BODY_ERRORS = {
    **MALFORMED,
    "413": problem("body too large"),
    "415": problem("wrong content type"),
}

COMPONENTS: dict[str, Any] = {
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
    "responses": {
        "Malformed": problem(
            "malformed request: a malformed Host header, or a body that is not valid (not "
            "JSON, nested too deep, a number too large, a field missing or of the wrong type)"
        ),
        "RateLimited": {
            **problem(
                "too many refused requests from this source (per-source rate limit on "
                "anonymous refusals); retry after Retry-After seconds"
            ),
            "headers": {
                "Retry-After": {
                    "description": "seconds to wait before retrying (RFC 9110 10.2.3)",
                    "required": True,
                    "schema": {"type": "integer", "minimum": 0},
                }
            },
        },
    },
}
