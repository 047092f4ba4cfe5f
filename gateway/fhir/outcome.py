"""Errors under ``/fhir`` as FHIR OperationOutcome, and content negotiation.

The gateway's handlers raise GatewayError and ``problem_middleware`` renders RFC 9457
problem+json, as everywhere else; the refusal limiter sees every 401/403 on the way. This
middleware sits outside both and turns a problem+json answer to a ``/fhir`` request into the
OperationOutcome FHIR clients expect (https://hl7.org/fhir/R4/http.html#summary), keeping
the status and headers (``WWW-Authenticate``, ``Retry-After``, ``DPoP-Nonce``). The one
exception is 429 from the request limits: every operation documents it as problem+json.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ..errors import PROBLEM_BASE, GatewayError
from ..fhir_version import FHIR_JSON

__all__ = ["NotAcceptable", "fhir_outcome_middleware", "negotiate", "operation_outcome"]

PREFIX = "/fhir"
PROBLEM_SYSTEM = PROBLEM_BASE.rstrip("/")
# IssueType (https://hl7.org/fhir/R4/valueset-issue-type.html) by HTTP status.
_CODE = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    409: "conflict",
    410: "deleted",
    413: "too-long",
    415: "not-supported",
    503: "transient",
}
_JSON = frozenset({"json", "application/json", "application/fhir+json", "*/*", "application/*"})
_XML = frozenset({"xml", "text/xml", "application/xml", "application/fhir+xml"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class NotAcceptable(GatewayError):
    status = 406
    slug = "not-acceptable"
    title = "No acceptable representation"


def operation_outcome(status: int, slug: str, detail: str) -> dict[str, Any]:
    """One error issue: its IssueType from the HTTP status, the gateway's problem type as a
    coding (the same slugs as problem+json), the sentence as diagnostics."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": _CODE.get(status, "exception" if status >= 500 else "processing"),
                "details": {"coding": [{"system": PROBLEM_SYSTEM, "code": slug}]},
                "diagnostics": detail,
            }
        ],
    }


def _media(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


def negotiate(request: web.Request) -> None:
    """Refuse (406) a request that wants other than FHIR JSON: ``_format`` first, then the
    Accept header (absent, ``*/*``, JSON or FHIR JSON are served)."""
    fmt = request.query.get("_format")
    if fmt is not None:
        if _media(fmt) in _JSON:
            return
        kind = "XML" if _media(fmt) in _XML else f"{fmt[:40]!r}"
        raise NotAcceptable(f"_format {kind} is not served: this server speaks FHIR JSON only")
    accept = request.headers.get("Accept")
    if accept is None or not accept.strip():
        return
    offered = [_media(part) for part in accept.split(",")[:32]]
    if not any(m in _JSON or m == "application/fhir+json" for m in offered):
        raise NotAcceptable("this server speaks FHIR JSON only (application/fhir+json)")


@web.middleware
async def fhir_outcome_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    resp = await handler(request)
    if not (request.path == PREFIX or request.path.startswith(PREFIX + "/")):
        return resp
    if resp.content_type != "application/problem+json" or resp.status == 429:
        return resp
    body = resp.body if isinstance(resp, web.Response) else None
    try:
        problem = json.loads(body) if isinstance(body, bytes) else {}
    except ValueError:
        problem = {}
    slug = str(problem.get("type", "")).removeprefix(PROBLEM_BASE) or "error"
    detail = str(problem.get("detail") or problem.get("title") or "error")
    out = web.json_response(
        operation_outcome(resp.status, slug, detail), status=resp.status, content_type=FHIR_JSON
    )
    for name in ("WWW-Authenticate", "Retry-After", "DPoP-Nonce", "Allow"):
        if name in resp.headers:
            out.headers[name] = resp.headers[name]
    return out
