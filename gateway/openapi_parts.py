"""What every area's OpenAPI paths share: the response and body builders, the DPoP security
requirement, the error responses common to many operations, and the components
(``Problem``, the ``DPoP`` scheme, the shared responses) that ``gateway.openapi`` serves once.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AUTH_ERRORS",
    "B64",
    "BODY_ERRORS",
    "COMPONENTS",
    "DATABASE_DOWN",
    "DB_UNAVAILABLE",
    "DPOP",
    "DPOP_HEADER",
    "EPOCH",
    "LEDGER_DOWN",
    "MALFORMED",
    "NAMES",
    "OLD_PROOF",
    "PROBLEM",
    "RATE_LIMITED",
    "SHARED_SCHEMAS",
    "STRING",
    "TIME",
    "UINT",
    "json_body",
    "json_limits",
    "json_reply",
    "obj",
    "path_param",
    "problem",
    "ref",
    "text_reply",
    "time_query",
    "uint_query",
]

PROBLEM = {"$ref": "#/components/schemas/Problem"}
STRING = {"type": "string"}
UINT = {"type": "string", "pattern": "^[0-9]{1,19}$"}
#: Standard base64 (RFC 4648 4, padded): hashes, proofs and leaves.
B64 = {"type": "string", "contentEncoding": "base64"}
#: A time the gateway answers with as a number: Unix time in whole seconds.
EPOCH = {"type": "integer", "minimum": 0, "description": "Unix time, seconds"}


#: The old spelling of ``inclusion_proof`` / ``consistency_proof``, still sent beside the new
#: one until 0.2.0 (docs/api-changes.md).
OLD_PROOF = {
    "type": "array",
    "items": B64,
    "deprecated": True,
    "description": "Deprecated: the same hashes as `inclusion_proof` (or `consistency_proof`), "
    "under their old name; sent until 0.2.0, then removed (docs/api-changes.md).",
}


def ref(name: str) -> dict[str, str]:
    """A reference to the named schema in ``components/schemas``."""
    return {"$ref": f"#/components/schemas/{name}"}


def obj(
    properties: dict[str, Any],
    required: list[str] | None = None,
    *,
    closed: bool = True,
    description: str | None = None,
) -> dict[str, Any]:
    """An object schema. ``required`` defaults to every property but deprecated ones (a
    client must not come to need what is going away); ``closed`` (the default)
    says the gateway sends no other member (``additionalProperties: false``): a shape a
    client may rely on. Open objects are those the gateway passes through (token claims,
    ledger events, FHIR resources) or may grow without a version change."""
    out: dict[str, Any] = {
        "type": "object",
        "required": [k for k, v in properties.items() if not v.get("deprecated")]
        if required is None
        else required,
        "properties": properties,
    }
    if closed:
        out["additionalProperties"] = False
    if description is not None:
        out["description"] = description
    return out


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


#: What every date-time a client sends must be (gateway.rfc3339): the grammar, and an instant
#: that can be converted to UTC.
TIME = (
    "an RFC 3339 date-time with an offset, such as 2026-12-01T09:30:00Z, whose instant lies "
    "between years 0001 and 9999 in UTC"
)


def time_query(name: str, desc: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """An optional date-time query parameter (``desc``, then what the value must be)."""
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema or {"type": "string", "format": "date-time"},
        "description": f"{desc}: {TIME}",
    }


#: The bounded JSON decoder (gateway.jsonio) refuses these before any field is looked at.
JSON_LIMITS = (
    "malformed JSON, or JSON beyond the gateway's limits: nesting deeper than 32, an integer "
    "beyond 2^63\u22121, a non-finite number, NaN/Infinity, or an unpaired UTF-16 surrogate "
    "(problem type `https://telegate.dev/problems/invalid-json`)"
)


def json_limits(desc: str) -> dict[str, Any]:
    """A 400 of an operation with a JSON body that has refusals of its own (``desc``)."""
    return problem(f"{desc}; or {JSON_LIMITS}")


#: Display names beside the rows of an answer that lists people (gateway.auth.names).
NAMES = {
    "type": "object",
    "additionalProperties": {"type": "string"},
    "description": "Display names of the people in this answer whom the caller may see named "
    "(a device: its model), by subject id; an id missing here has no name for this caller. "
    "Names are not on the ledger.",
}

DPOP: list[dict[str, list[str]]] = [{"DPoP": []}]
DPOP_HEADER = {"name": "DPoP", "in": "header", "required": True, "schema": STRING}

# The gateway derives its own URL from the Host header (DPoP htu, issuer, discovery), so any
# operation that authenticates or names its origin can refuse a malformed one. Operations that
# describe a 400 of their own keep it: the answer is the same problem+json.
MALFORMED = {"400": {"$ref": "#/components/responses/Malformed"}}
# Per-source limit on anonymous refusals: any request that would end in one can get this.
RATE_LIMITED = {"429": {"$ref": "#/components/responses/RateLimited"}}
# An operation that records an event waits for the ledger to take it (errors.py: 503 with
# Retry-After when it cannot).
LEDGER_DOWN = (
    "the ledger cannot take the operation's event now (its writer has stopped, or its "
    "database cannot be reached)"
)
_AUTH_DOWN = (
    "DPoP replay cache full, (a peer organization's provider) the peer's token status list "
    f"is due and unreachable, or {LEDGER_DOWN}; see Retry-After"
)
AUTH_ERRORS = {
    "401": problem("missing, invalid, expired or revoked credentials"),
    "403": problem("the caller's role or scope does not allow this"),
    **RATE_LIMITED,
    "503": problem(_AUTH_DOWN),
}
# The stores on the shared database (consents, emergencies, call sessions: ``database_url``)
# answer 503 with Retry-After when it cannot be used; AUTH_ERRORS's own 503 causes stand too.
DATABASE_DOWN = (
    "Service unavailable: the database cannot be reached or is locked (for example while "
    "PostgreSQL restarts); retry after the `Retry-After` header"
)
DB_UNAVAILABLE = {"503": problem(f"{DATABASE_DOWN}. Also: {_AUTH_DOWN}")}
BODY_ERRORS = {
    **MALFORMED,
    "413": problem("body too large"),
    "415": problem("wrong content type"),
}

#: The schemas every area shares. Each area names its own in its ``SCHEMAS``
#: (gateway/<area>/openapi.py); gateway.openapi merges them into ``components/schemas``.
SHARED_SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details. Members beyond these name what the problem "
        "type defines (for example `error` of an OAuth refusal, `errors` of refused readings).",
        "required": ["type", "title", "status"],
        "properties": {
            "type": {"type": "string", "format": "uri"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
        },
    },
    "Checkpoint": {
        "type": "string",
        "description": "A C2SP tlog-checkpoint in a C2SP signed note: origin, tree size, base64 "
        "root hash, a blank line, then one signature line per signer (the log's, then any "
        "witness cosignatures). Verify it with the log's vkey (`GET /ledger/vkey`).",
        "pattern": "^[^\\n]+\\n[0-9]+\\n[A-Za-z0-9+/]{43}=\\n",
    },
    "InclusionProof": {
        "type": "array",
        "items": B64,
        "maxItems": 64,
        "description": "An RFC 6962 / RFC 9162 inclusion path: the sibling hashes from the "
        "leaf up to the root, each base64 SHA-256.",
    },
    "LedgerEvent": {
        "type": "object",
        "description": "A ledger event envelope (docs: the ledger's events): `data` holds "
        "identifiers, hashes and salted commitments only. Open: event types add members of "
        "`data`, and an envelope version may add optional members.",
        "required": ["v", "type", "time", "actor", "data"],
        "properties": {
            "v": {"type": "integer"},
            "type": STRING,
            "time": {"type": "string", "format": "date-time"},
            "actor": STRING,
            "subject": STRING,
            "session": STRING,
            "data": {"type": "object"},
        },
    },
    "Receipt": obj(
        {
            "index": {"type": "integer", "minimum": 0, "description": "the leaf's index"},
            "leaf_hash": {**B64, "description": "SHA-256(0x00 || leaf bytes), base64"},
            "checkpoint": ref("Checkpoint"),
            "inclusion_proof": ref("InclusionProof"),
        },
        description="Proof that an event is on the ledger: its leaf index and hash, a signed "
        "checkpoint and the inclusion proof against that checkpoint; verifiable offline with "
        "the log's vkey alone (`telegate verify`, ledger.verify).",
    ),
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
    "schemas": SHARED_SCHEMAS,
    "responses": {
        "Malformed": problem(
            "malformed request: a malformed Host header; or, with a JSON body, "
            + JSON_LIMITS
            + "; or a field missing or of the wrong type"
        ),
        "RateLimited": {
            **problem(
                "this source (its address, or the X-Forwarded-For hop a trusted proxy names) "
                "was refused too often without valid credentials (TELEGATE_REFUSAL_RATE / "
                "TELEGATE_REFUSAL_BURST); every request from it gets this until Retry-After "
                "seconds have passed. Counted in the source's auth.refused_summary ledger entry."
            ),
            "headers": {
                "Retry-After": {
                    "description": "seconds to wait before retrying (RFC 9110 10.2.3)",
                    "required": True,
                    "schema": {"type": "integer", "minimum": 0},
                }
            },
        },
        "Overloaded": {
            **problem(
                "load shed (problem type `https://telegate.dev/problems/overloaded`): the "
                "gateway is at capacity (requests under way, its event loop's lateness, or "
                "WebSockets in total; docs/reliability.md, Overload) and refused the request at "
                "once rather than queue it. Not an outage: retry after Retry-After. A 503 of "
                "any other problem type (`unavailable`) means a store or the ledger is down."
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
