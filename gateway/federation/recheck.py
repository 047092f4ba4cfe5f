"""A peer's revocations, followed while a token issued here by exchange lives.

Every request that presents such a token is checked against the peer's status list, at
most ``ttl`` old (:mod:`.revocation`), before its handler authenticates it. When the peer
has revoked the token this one was issued for, this gateway revokes its own: the bit in its
status list, the row in its identity store, and an ``attestation.revoked`` event by
``gw:self`` with the reason ``revoked_at_peer``. The request then meets a revoked token in
authentication (401, recorded as ``auth.refused``). When the list is due and cannot be had,
the request is refused with 503 and the token is left alone (fail closed).
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from ledger.events import EventType

from ..appkeys import AUTHORITY, INVALIDATIONS
from ..auth.jwk import InvalidKey, unverified_part
from ..auth.tokens import MAX_TOKEN_SIZE
from ..errors import GatewayError
from ..invalidation import Invalidation, Kind
from ..recorder import event, record
from .appkeys import FEDERATION
from .exchange import Federation
from .revocation import Revoke
from .state import Link
from .verify import Refused

__all__ = ["PeerStatusUnknown", "recheck_middleware", "revoker"]

log = logging.getLogger("telegate.federation")
GATEWAY_ACTOR = "gw:self"


class PeerStatusUnknown(GatewayError):
    """A token issued here by exchange is due for a check against its peer's status list,
    and the list cannot be had: the request is refused until it can (503)."""

    status = 503
    slug = "peer-status-unknown"
    title = "The peer organization cannot confirm this attestation now"


@web.middleware
async def recheck_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Check a token issued here by exchange against its peer's revocations (see the
    module text). Raises PeerStatusUnknown; anything else is left to authentication."""
    fed = request.app.get(FEDERATION)
    # Not only when this replica follows links: another may have issued the token.
    if fed is not None:
        await _recheck(request, fed)
    return await handler(request)


async def _recheck(request: web.Request, fed: Federation) -> None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "dpop" or not token:
        return
    try:
        # Unverified, only to find the link: authentication checks the token right after.
        jti = unverified_part(token.strip(), 1, limit=MAX_TOKEN_SIZE).get("jti")
    except InvalidKey:
        return
    now = int(fed.clock())
    link = await fed.revocations.find(jti, now) if isinstance(jti, str) else None
    if link is None or request.app[AUTHORITY].status.get(link.status_idx):
        return
    try:
        await fed.revocations.recheck(link, now)
    except Refused as e:
        fields = {"peer": link.peer, "jti": link.jti, "reason": e.reason}
        log.warning("cannot recheck a peer's status list", extra={"fields": fields})
        raise PeerStatusUnknown(
            f"cannot confirm with {link.peer} that this attestation still stands; retry later",
            headers={"Retry-After": str(fed.revocations.lists.retry)},
        ) from e


def revoker(app: web.Application) -> Revoke:
    """Revoke a token issued here by exchange, as an admin here would, by ``gw:self``."""

    async def revoke(link: Link, reason: str) -> None:
        auth = app[AUTHORITY]
        rec = await asyncio.to_thread(auth.store.token, link.jti)
        auth.status.set(link.status_idx)  # refused from now on, before anything is written
        if rec is not None and rec.revoked is not None:
            return  # revoked here already (by an admin here, who ended its sockets then)
        data = {
            "target": "token",
            "reason": reason,
            "status_idx": [link.status_idx],
            "jti": link.jti,
            "peer": link.peer,
            "foreign_jti": link.foreign_jti,
            "foreign_status": {"uri": link.foreign.uri, "idx": link.foreign.idx},
        }
        ev = event(app, EventType.ATTESTATION_REVOKED, GATEWAY_ACTOR, subject=link.sub, data=data)
        await record(app, ev)
        await asyncio.to_thread(auth.store.revoke_token, link.jti, auth.now())
        log.warning("revoked a token after its peer did", extra={"fields": data})
        # Sockets opened with the token end now, as after a revocation by an admin here.
        news = Invalidation(Kind.TOKEN, sub=link.sub, jti=link.jti, reason=reason)
        await app[INVALIDATIONS].publish(news)

    return revoke
