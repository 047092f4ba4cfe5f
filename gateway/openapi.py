"""The OpenAPI 3.1 description of every endpoint, served at ``/openapi.json``.

Each area describes its own paths beside its routes (``gateway/<area>/openapi.py``,
``gateway/ledger_openapi.py``), and names the shapes of its answers there (``SCHEMAS``, served
as ``components/schemas``); the shared pieces (``Problem``, ``Receipt``, ``Checkpoint``, ...)
are in ``gateway.openapi_parts``. This module only assembles them, with the service's own
operations (health, readiness, metrics, this document). Tests compare the result with the
app's routes (nothing undocumented), check live answers against the schemas, generate a client
from it and run schemathesis against a live gateway.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from . import __version__
from .audit.openapi import PATHS as AUDIT_PATHS
from .audit.openapi import SCHEMAS as AUDIT_SCHEMAS
from .auth.openapi import PATHS as AUTH_PATHS
from .auth.openapi import SCHEMAS as AUTH_SCHEMAS
from .consent.openapi import PATHS as CONSENT_PATHS
from .consent.openapi import SCHEMAS as CONSENT_SCHEMAS
from .fhir.openapi import PATHS as FHIR_PATHS
from .fhir.openapi import SCHEMAS as FHIR_SCHEMAS
from .incentives.openapi import PATHS as INCENTIVES_PATHS
from .incentives.openapi import SCHEMAS as INCENTIVES_SCHEMAS
from .ledger_openapi import PATHS as LEDGER_PATHS
from .ledger_openapi import SCHEMAS as LEDGER_SCHEMAS
from .openapi_parts import (
    COMPONENTS,
    RATE_LIMITED,
    SHARED_SCHEMAS,
    json_reply,
    obj,
    problem,
    ref,
)
from .sessions.openapi import PATHS as SESSIONS_PATHS
from .sessions.openapi import SCHEMAS as SESSIONS_SCHEMAS
from .supply.openapi import PATHS as SUPPLY_PATHS
from .supply.openapi import SCHEMAS as SUPPLY_SCHEMAS
from .vitals.openapi import PATHS as VITALS_PATHS
from .vitals.openapi import SCHEMAS as VITALS_SCHEMAS

__all__ = ["SPEC", "assemble", "setup"]

DESCRIPTION = (
    "Telemedicine session authentication and audit gateway. Every error is RFC 9457 "
    "problem+json. FHIR outputs follow FHIR R4 (4.0.1): the profile URLs are R4's and FHIR "
    "responses are served as `application/fhir+json; fhirVersion=4.0`. Any operation may "
    "answer 429 (problem type too-many-requests, with Retry-After) to a source whose requests "
    "are refused too often without valid credentials. Any operation but /healthz, /readyz "
    "and /metrics may answer 503 with problem type overloaded (load shedding, with "
    "Retry-After; components/responses/Overloaded), which is not an outage."
)

#: The service's own answers (``components/schemas``).
SERVICE_SCHEMAS: dict[str, Any] = {
    "Health": obj({"status": {"const": "ok"}}),
    "Readiness": obj(
        {
            "status": {"const": "ready"},
            "ledger_size": {"type": "integer", "minimum": 0},
            "witnessing": ref("Witnessing"),
        },
        ["status", "ledger_size"],
    ),
    "Witnessing": obj(
        {
            "quorum": {"type": "integer", "minimum": 0},
            "witnessed_size": {"type": "integer", "minimum": 0},
            "lag": {"type": "integer", "minimum": 0, "description": "entries not yet witnessed"},
            "witnesses": {"type": "array", "items": ref("WitnessStatus")},
        },
        description="With witnesses configured (gateway.witnessing): how far witnessing is behind",
    ),
    "WitnessStatus": obj(
        {
            "name": {"type": "string"},
            "size": {"type": "integer", "minimum": 0},
            "lag": {"type": "integer", "minimum": 0},
            "alarm": {"type": ["string", "null"]},
        }
    ),
    "OpenApiDocument": {
        "type": "object",
        "description": "an OpenAPI 3.1 document",
        "required": ["openapi", "info", "paths"],
        "properties": {"openapi": {"type": "string", "pattern": "^3\\.1\\."}},
    },
}

SERVICE_PATHS: dict[str, Any] = {
    "/healthz": {
        "get": {
            "summary": "Liveness",
            "responses": {"200": json_reply("alive", ref("Health"))},
        }
    },
    "/readyz": {
        "get": {
            "summary": "Readiness: the ledger accepts appends",
            "description": "With witnesses configured, `witnessing` says how far behind "
            "witnessing is (quorum, witnessed size, lag, each witness's size and alarm); "
            "a log whose witnesses lag is still ready.",
            "responses": {
                "200": json_reply("ready", ref("Readiness")),
                "503": problem("not ready"),
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
            "responses": {"200": json_reply("OpenAPI 3.1", ref("OpenApiDocument"))},
        }
    },
}

#: Every area's named schemas: shared ones first, then the areas' in the order of AREAS.
AREA_SCHEMAS: tuple[Mapping[str, Any], ...] = (
    SHARED_SCHEMAS,
    SERVICE_SCHEMAS,
    LEDGER_SCHEMAS,
    AUTH_SCHEMAS,
    AUDIT_SCHEMAS,
    CONSENT_SCHEMAS,
    SESSIONS_SCHEMAS,
    VITALS_SCHEMAS,
    SUPPLY_SCHEMAS,
    FHIR_SCHEMAS,
    INCENTIVES_SCHEMAS,
)

#: Every area's paths, in the order the document lists them.
AREAS: tuple[Mapping[str, Any], ...] = (
    SERVICE_PATHS,
    LEDGER_PATHS,
    AUTH_PATHS,
    AUDIT_PATHS,
    CONSENT_PATHS,
    SESSIONS_PATHS,
    VITALS_PATHS,
    SUPPLY_PATHS,
    FHIR_PATHS,
    INCENTIVES_PATHS,
)


def _op(method: str, path: str) -> str:
    """An OpenAPI ``operationRef`` (a JSON pointer into this document, RFC 6901)."""
    return "#/paths/" + path.replace("~", "~0").replace("/", "~1") + "/" + method


def _link(method: str, path: str, desc: str, **kw: Any) -> dict[str, Any]:
    return {"operationRef": _op(method, path), "description": desc, **kw}


_ID = {"id": "$response.body#/id"}

#: OpenAPI links (3.1 4.8.20): what one answer gives the next call. They chain the
#: stateful test (tests/gateway/test_stateful.py) through enrollment, a token and the calls
#: that need what the earlier ones made; a client may read them the same way.
LINKS: dict[tuple[str, str, str], dict[str, Any]] = {
    ("post", "/v1/invites", "201"): {
        "enroll": _link(
            "post",
            "/v1/enroll",
            "Redeem the invite",
            requestBody={"invite": "$response.body#/invite"},
        ),
        "check": _link(
            "post",
            "/v1/enroll/check",
            "What enrolling with it asks",
            requestBody={"invite": "$response.body#/invite"},
        ),
    },
    ("post", "/v1/enroll", "201"): {
        "token": _link(
            "post",
            "/oauth/token",
            "The new client's first token (client_credentials, private_key_jwt)",
            requestBody={"client_id": "$response.body#/client_id"},
        ),
        "revoke": _link(
            "post",
            "/v1/revocations",
            "Revoke the new identity",
            requestBody={"sub": "$response.body#/sub"},
        ),
    },
    ("post", "/oauth/token", "200"): {
        "me": _link("get", "/v1/me", "Who the token says its holder is"),
        "introspect": _link(
            "post",
            "/oauth/introspect",
            "Introspect the token",
            requestBody={"token": "$response.body#/access_token"},
        ),
    },
    ("get", "/v1/me", "200"): {
        "receipt": _link(
            "get",
            "/v1/attestations/{jti}/receipt",
            "The ledger receipt of the token's issuance",
            parameters={"jti": "$response.body#/jti"},
        ),
        "access_report": _link(
            "get",
            "/v1/patients/{patient}/access-report",
            "The caller's own access report (a patient's)",
            parameters={"patient": "$response.body#/sub"},
        ),
    },
    ("post", "/v1/consents", "201"): {
        "revoke": _link("delete", "/v1/consents/{id}", "Revoke the consent", parameters=_ID),
    },
    ("post", "/v1/sessions", "201"): {
        name: _link(method, f"/v1/sessions/{{id}}{tail}", desc, parameters=_ID)
        for name, method, tail, desc in (
            ("get", "get", "", "The call"),
            ("ticket", "post", "/ticket", "A ticket for the call's signalling socket"),
            ("admit", "post", "/admit", "Admit the patient"),
            ("end", "post", "/end", "End the call"),
            ("no_show", "post", "/no-show", "Mark the patient absent"),
        )
    },
    ("post", "/v1/sessions/{id}/admit", "200"): {
        "end": _link("post", "/v1/sessions/{id}/end", "End the call", parameters=_ID),
    },
}


def _linked(path: str, method: str, responses: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(responses)
    for status, response in responses.items():
        links = LINKS.get((method, path, status))
        if links is not None:
            out[status] = {**response, "links": links}
    return out


def merge_schemas(areas: tuple[Mapping[str, Any], ...]) -> dict[str, Any]:
    """One ``components/schemas`` from the areas' named schemas. Raises ValueError if two
    areas name a schema alike: one would silently replace the other."""
    schemas: dict[str, Any] = {}
    for area in areas:
        for name, schema in area.items():
            if name in schemas:
                raise ValueError(f"schema {name} is named by two areas")
            schemas[name] = schema
    return schemas


def assemble(
    areas: tuple[Mapping[str, Any], ...], schemas: tuple[Mapping[str, Any], ...] = ()
) -> dict[str, Any]:
    """The whole document from the areas' paths and named schemas. Raises ValueError if two
    areas describe the same path or name the same schema: one would silently replace the
    other."""
    paths: dict[str, Any] = {}
    for area in areas:
        for path, ops in area.items():
            if path in paths:
                raise ValueError(f"{path} is described by two areas")
            # The refusal limiter (gateway.auth.refusals) answers a limited source before
            # any handler runs, whatever the route: every operation can get 429.
            paths[path] = {
                method: {
                    **op,
                    "responses": {**_linked(path, method, op["responses"]), **RATE_LIMITED},
                }
                for method, op in ops.items()
            }
    return {
        "openapi": "3.1.0",
        "info": {"title": "telegate", "version": __version__, "description": DESCRIPTION},
        "paths": paths,
        "components": {**COMPONENTS, "schemas": merge_schemas(schemas)},
    }


SPEC = assemble(AREAS, AREA_SCHEMAS)


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(SPEC)


def setup(app: web.Application) -> None:
    app.router.add_get("/openapi.json", openapi)
