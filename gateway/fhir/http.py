"""The routes under ``/fhir``: the CapabilityStatement, SMART discovery beside it, and the
searches and reads (gateway.fhir.observation, gateway.fhir.audit)."""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from ..appkeys import AUTHORITY
from ..auth import http as auth_http
from ..auth.http import origin
from .audit import search_audit_events, search_consents
from .capability import capability_statement
from .common import fhir_response, no_params
from .cursor import cursor_key_ctx
from .observation import read_observation, search_observation, search_provenance
from .outcome import negotiate

__all__ = ["setup"]


async def metadata(request: web.Request) -> web.Response:
    """Public, as FHIR servers publish it: what the server does, not anyone's data."""
    negotiate(request)
    no_params(request)
    now = dt.datetime.fromtimestamp(request.app[AUTHORITY].now(), dt.UTC)
    return fhir_response(capability_statement(origin(request), now.strftime("%Y-%m-%d")))


async def smart_configuration(request: web.Request) -> web.Response:
    """SMART discovery at ``[base]/.well-known/smart-configuration``, as SMART clients of a
    FHIR base look for it: the gateway's own document."""
    return await auth_http.smart_configuration(request)


def setup(app: web.Application) -> None:
    app.cleanup_ctx.append(cursor_key_ctx)
    app.router.add_get("/fhir/metadata", metadata)
    app.router.add_get("/fhir/.well-known/smart-configuration", smart_configuration)
    app.router.add_get("/fhir/Observation", search_observation)
    app.router.add_get("/fhir/Observation/{id}", read_observation)
    app.router.add_get("/fhir/AuditEvent", search_audit_events)
    app.router.add_get("/fhir/Consent", search_consents)
    app.router.add_get("/fhir/Provenance", search_provenance)
