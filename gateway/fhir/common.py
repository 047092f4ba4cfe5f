"""What every ``/fhir`` handler does first (authenticate, negotiate the format, check the
SMART scope) and how it answers (a searchset Bundle with its paging links)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..auth.http import authenticate, origin
from ..auth.smart import ROLE_CONTEXTS, allows
from ..auth.tokens import Forbidden, Principal
from ..errors import BadRequest
from ..fhir_version import FHIR_JSON
from .outcome import negotiate

__all__ = ["fhir_response", "no_params", "searchset", "smart_principal"]

_INTERACTION = {"r": "read", "s": "search"}


def smart_principal(request: web.Request, resource: str, interaction: str) -> Principal:
    """The caller, if their token's SMART scopes allow ``interaction`` (``r`` or ``s``) on
    ``resource``. Raises 401, NotAcceptable (406) for a non-JSON format, or Forbidden (403)
    naming the scope needed."""
    p = authenticate(request)  # first: a request without credentials learns nothing more
    negotiate(request)
    if not allows(p.scope, p.role, resource, interaction):
        contexts = ROLE_CONTEXTS.get(p.role)
        if not contexts:
            raise Forbidden(f"a {p.role} has no access to {resource} through FHIR")
        needed = " or ".join(f"{c}/{resource}.{interaction}" for c in contexts)
        raise Forbidden(f"this {_INTERACTION[interaction]} needs the SMART scope {needed}")
    return p


def no_params(request: web.Request) -> None:
    """A read takes no search parameters, only ``_format``. Raises BadRequest."""
    lenient = "handling=lenient" in request.headers.get("Prefer", "").replace(" ", "").lower()
    extra = [k for k in request.query if k != "_format"]
    if extra and not lenient:
        raise BadRequest(f"a read takes no parameter {extra[0][:64]!r}")


def fhir_response(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(body, status=status, content_type=FHIR_JSON)


def searchset(
    request: web.Request, resources: list[dict[str, Any]], links: dict[str, str]
) -> dict[str, Any]:
    """A searchset Bundle of one page: ``self`` and the ``links`` given (relation ->
    cursor), each an absolute URL of the same search with the cursor set."""
    base = origin(request)
    out = [{"relation": "self", "url": f"{base}{request.rel_url}"}]
    for relation, cursor in links.items():
        page = request.rel_url.update_query(_cursor=cursor)
        out.append({"relation": relation, "url": f"{base}{page}"})
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": out,
        "entry": [
            {
                "fullUrl": f"{base}/fhir/{r['resourceType']}/{r['id']}",
                "resource": r,
                "search": {"mode": "match"},
            }
            for r in resources
        ],
    }
