"""Building blocks of the OpenAPI description, shared by each area's paths."""

from __future__ import annotations

from typing import Any

__all__ = [
    "AUTH_ERRORS",
    "BODY_ERRORS",
    "DPOP",
    "DPOP_HEADER",
    "PROBLEM",
    "_body",
    "_json",
    "_problem",
    "_text",
]

PROBLEM = {"$ref": "#/components/schemas/Problem"}


def _problem(desc: str) -> dict[str, Any]:
    return {"description": desc, "content": {"application/problem+json": {"schema": PROBLEM}}}


def _json(desc: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": desc, "content": {"application/json": {"schema": schema}}}


def _text(desc: str) -> dict[str, Any]:
    return {"description": desc, "content": {"text/plain": {"schema": {"type": "string"}}}}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


DPOP: list[dict[str, list[str]]] = [{"DPoP": []}]
DPOP_HEADER = {"name": "DPoP", "in": "header", "required": True, "schema": {"type": "string"}}
AUTH_ERRORS = {
    "401": _problem("missing, invalid, expired or revoked credentials"),
    "403": _problem("the caller's role or scope does not allow this"),
    "503": _problem(
        "DPoP replay cache full, or (a peer organization's provider) the peer's token status "
        "list is due and unreachable; see Retry-After"
    ),
}
BODY_ERRORS = {
    "400": _problem("malformed body"),
    "413": _problem("body too large"),
    "415": _problem("wrong content type"),
}
