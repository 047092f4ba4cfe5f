"""The OpenAPI 3.1 description of every endpoint, served at ``/openapi.json``.

Each area describes its own paths beside its routes (``gateway/<area>/openapi.py``,
``gateway/ledger_openapi.py``); the shared pieces are in ``gateway.openapi_parts``. This
module only assembles them, with the service's own operations (health, readiness, metrics,
this document). A test compares the result with the app's routes (nothing undocumented) and
runs schemathesis against a live gateway.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from . import __version__
from .audit.openapi import PATHS as AUDIT_PATHS
from .auth.openapi import PATHS as AUTH_PATHS
from .consent.openapi import PATHS as CONSENT_PATHS
from .ledger_openapi import PATHS as LEDGER_PATHS
from .openapi_parts import COMPONENTS, RATE_LIMITED, json_reply, problem
from .sessions.openapi import PATHS as SESSIONS_PATHS
from .vitals.openapi import PATHS as VITALS_PATHS

__all__ = ["SPEC", "assemble", "setup"]

DESCRIPTION = (
    "Telemedicine session authentication and audit gateway. Every error is RFC 9457 "
    "problem+json. FHIR outputs follow FHIR R4 (4.0.1): the profile URLs are R4's and FHIR "
    "responses are served as `application/fhir+json; fhirVersion=4.0`. Any operation may "
    "answer 429 (problem type too-many-requests, with Retry-After) to a source whose requests "
    "are refused too often without valid credentials."
)

SERVICE_PATHS: dict[str, Any] = {
    "/healthz": {
        "get": {
            "summary": "Liveness",
            "responses": {"200": json_reply("alive", {"type": "object"})},
        }
    },
    "/readyz": {
        "get": {
            "summary": "Readiness: the ledger accepts appends",
            "description": "With witnesses configured, `witnessing` says how far behind "
            "witnessing is (quorum, witnessed size, lag, each witness's size and alarm); "
            "a log whose witnesses lag is still ready.",
            "responses": {
                "200": json_reply(
                    "ready",
                    {
                        "type": "object",
                        "required": ["status", "ledger_size"],
                        "properties": {"witnessing": {"type": "object"}},
                    },
                ),
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
            "responses": {"200": json_reply("OpenAPI 3.1", {"type": "object"})},
        }
    },
}

#: Every area's paths, in the order the document lists them.
AREAS: tuple[Mapping[str, Any], ...] = (
    SERVICE_PATHS,
    LEDGER_PATHS,
    AUTH_PATHS,
    AUDIT_PATHS,
    CONSENT_PATHS,
    SESSIONS_PATHS,
    VITALS_PATHS,
)


def assemble(areas: tuple[Mapping[str, Any], ...]) -> dict[str, Any]:
    """The whole document from the areas' paths. Raises ValueError if two areas describe the
    same path: one would silently replace the other."""
    paths: dict[str, Any] = {}
    for area in areas:
        for path, ops in area.items():
            if path in paths:
                raise ValueError(f"{path} is described by two areas")
            # The refusal limiter (gateway.auth.refusals) answers a limited source before
            # any handler runs, whatever the route: every operation can get 429.
            paths[path] = {
                method: {**op, "responses": {**op["responses"], **RATE_LIMITED}}
                for method, op in ops.items()
            }
    return {
        "openapi": "3.1.0",
        "info": {"title": "telegate", "version": __version__, "description": DESCRIPTION},
        "paths": paths,
        "components": COMPONENTS,
    }


SPEC = assemble(AREAS)


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(SPEC)


def setup(app: web.Application) -> None:
    app.router.add_get("/openapi.json", openapi)
