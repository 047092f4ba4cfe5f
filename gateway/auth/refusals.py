"""Every refused authentication or authorization is itself a ledger event.

The event names the route template, the problem type and, when known, the caller; never the
credential, the body or anything else the client sent.
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from ledger.errors import LedgerError
from ledger.events import Event, EventType

from ..appkeys import PRINCIPAL
from ..errors import GatewayError
from ..recorder import record

__all__ = ["refusal_middleware"]

log = logging.getLogger("telegate.auth")


@web.middleware
async def refusal_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except GatewayError as e:
        if e.status in (401, 403) or e.slug == "invalid-invite" or _refused_grant(e):
            await _record(request, e)
        raise


# Token endpoint refusals that are about the caller's credentials or rights (RFC 6749 5.2
# returns some of them as 400): recorded. Malformed requests and the DPoP nonce handshake
# (use_dpop_nonce) are ordinary protocol traffic and are not.
_RECORDED_GRANT_ERRORS = frozenset({"invalid_client", "invalid_dpop_proof", "invalid_scope"})


def _refused_grant(e: GatewayError) -> bool:
    return e.slug == "oauth-error" and e.extra.get("error") in _RECORDED_GRANT_ERRORS


async def _record(request: web.Request, e: GatewayError) -> None:
    info = request.match_info
    route = info.route.resource.canonical if info.route.resource is not None else "unmatched"
    principal = request.get(PRINCIPAL)
    actor = principal.sub if principal is not None else "anonymous"
    data = {"route": route, "method": request.method, "status": e.status, "problem": e.slug}
    if "error" in e.extra:
        data["error"] = str(e.extra["error"])
    try:
        await record(request.app, Event.now(EventType.AUTH_REFUSED, actor, data=data))
    except LedgerError:
        # The refusal stands even if the ledger cannot take the event; say so loudly.
        log.error("could not record a refusal", extra={"fields": data})
