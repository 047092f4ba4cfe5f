"""The token exchange (RFC 8693) at ``POST /oauth/token``: a peer's provider trades the
attestation its own organization issued, with that issuance's receipt, for a local one.

Request (``application/x-www-form-urlencoded``, with a ``DPoP`` proof for this endpoint
made with the key the peer's token is bound to):

- ``grant_type=urn:ietf:params:oauth:grant-type:token-exchange``
- ``subject_token``: the peer's attestation, minted with ``resource=<this gateway>``
- ``subject_token_type=urn:ietf:params:oauth:token-type:access_token``
- ``subject_token_receipt``: the JSON the peer's ``/v1/attestations/{jti}/receipt`` answered
- ``scope`` (optional): a subset of ``call vitals.read``

Answer: a DPoP-bound local attestation for the provider's local id (``sub``), expiring no
later than the peer's token. Every acceptance is a ``federation.accepted`` ledger event
holding the peer's receipt; every refusal a ``federation.refused`` event with its reason.
While the local attestation lives, the peer's revocations are followed (:mod:`.recheck`).
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from ledger.events import EventType

from ..appkeys import AUTHORITY, CLOCK, CONFIG, DATABASE
from ..auth.dpop import DPoPError
from ..auth.http import (
    PEER_AUDIENCES,
    TOKEN_EXCHANGE,
    OAuthError,
    origin,
    token_request_proof,
)
from ..auth.refusals import note_anonymous, recorded_elsewhere
from ..errors import ConfigError
from ..recorder import event, record
from .appkeys import FEDERATION, TRUST
from .exchange import Accepted, Federation, local_subject
from .peers import PeerClient
from .recheck import recheck_middleware, revoker
from .state import FederationState, Link
from .trust import TrustList, load_trust_list
from .verify import Refused

__all__ = ["FEDERATION", "setup"]

log = logging.getLogger("telegate.federation")

ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105 (RFC 8693 3)
GATEWAY_ACTOR = "gw:self"
#: What a peer's provider may do here: never ``enroll`` (inviting this gateway's patients
#: and devices is for its own providers).
FEDERATED_SCOPES = frozenset({"call", "vitals.read"})


def exchange_params(base: str, form: dict[str, str]) -> tuple[str, str, frozenset[str]]:
    """RFC 8693 2.1 parameters of an exchange at the gateway whose origin is ``base``,
    checked. Malformed requests are not recorded (as on the client_credentials path):
    nothing was presented yet. Raises OAuthError."""
    token, receipt = form.get("subject_token"), form.get("subject_token_receipt")
    if not token or not receipt:
        raise OAuthError("invalid_request", "send subject_token and subject_token_receipt")
    if form.get("subject_token_type") != ACCESS_TOKEN_TYPE:
        raise OAuthError("invalid_request", f"subject_token_type must be {ACCESS_TOKEN_TYPE}")
    if "actor_token" in form or "actor_token_type" in form:
        raise OAuthError("invalid_request", "delegation (actor_token) is not supported")
    if form.get("requested_token_type", ACCESS_TOKEN_TYPE) != ACCESS_TOKEN_TYPE:
        raise OAuthError("invalid_request", "only access tokens are issued")
    for target in ("audience", "resource"):
        if target in form and form[target].rstrip("/") != base:
            raise OAuthError("invalid_target", f"{target} must be this gateway")
    asked = frozenset(form.get("scope", "").split()) or FEDERATED_SCOPES
    if not asked <= FEDERATED_SCOPES:
        raise OAuthError("invalid_scope", "a peer's provider may ask for call vitals.read")
    return token, receipt, asked


async def exchange(request: web.Request, form: dict[str, str]) -> web.Response:
    """The token-exchange grant; see the module text."""
    app, auth = request.app, request.app[AUTHORITY]
    token, receipt_text, asked = exchange_params(origin(request), form)
    now = auth.now()
    fed = app[FEDERATION]
    peer, bound = None, False
    try:
        peer = fed.peer_of(token)
        try:
            proof = token_request_proof(request, auth, now)
        except DPoPError as e:
            raise Refused("dpop", e.detail or e.title, error="invalid_dpop_proof") from e
        accepted = await fed.accept(peer, token, receipt_text, proof.jkt, origin(request))
        bound = True
        scope = asked & accepted.token.scope
        if not scope:
            raise Refused("scope", f"the token's scope grants none of {' '.join(sorted(asked))}")
        # Spent only now, for a request that passed every other check (as tokens.py does).
        if not await auth.spend_async(proof, now):
            raise Refused("dpop", "DPoP proof replayed", error="invalid_dpop_proof")
        subject, first = await asyncio.to_thread(
            local_subject, auth.store, accepted, proof.key.jwk, now
        )
        if subject.id in auth.revoked_subjects:
            raise Refused("revoked_here", "this identity has been revoked at this gateway")
    except Refused as e:
        if not (bound or e.bound):
            # Nobody shown to hold a peer's attestation yet: counted, not logged one by one
            # (anyone can send these at request rate; docs/audit.md).
            note_anonymous(request, e.status, e.slug, e.reason)
            raise OAuthError(e.error, e.detail or e.title, e.status) from e
        data: dict[str, Any] = {"reason": e.reason, **e.data}
        if peer is not None:
            data["peer"] = peer.name
        recorded_elsewhere(request)
        await record(app, event(app, EventType.FEDERATION_REFUSED, GATEWAY_ACTOR, data=data))
        fields = {k: v for k, v in data.items() if k != "evidence"}
        log.warning("federation refused", extra={"fields": fields})
        raise OAuthError(e.error, e.detail or e.title, e.status) from e
    t = accepted.token
    at = await record(
        app,
        event(
            app,
            EventType.FEDERATION_ACCEPTED,
            GATEWAY_ACTOR,
            subject=subject.id,
            data=_accepted_data(accepted, first),
        ),
    )
    access, claims, _ = await auth.issue(
        subject,
        scope,
        proof.jkt,
        origin(request),
        lambda ev: record(app, ev),
        not_after=t.exp,
        accepted=at.index,
    )
    status_idx = claims["status"]["status_list"]["idx"]
    name = accepted.peer.name
    link = Link(claims["jti"], subject.id, status_idx, claims["exp"], name, t.jti, t.status)
    await fed.revocations.follow(link, now)
    resp = web.json_response(
        {
            "access_token": access,
            "issued_token_type": ACCESS_TOKEN_TYPE,
            "token_type": "DPoP",
            "expires_in": max(0, claims["exp"] - now),
            "scope": claims["scope"],
            "sub": subject.id,
            "federation": {"peer": accepted.peer.name, "accepted": at.index},
        }
    )
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _accepted_data(a: Accepted, first: bool) -> dict[str, Any]:
    """The event's data: the peer, the ids, and the peer's whole receipt with its leaf, so
    this gateway's log alone lets an auditor check the acceptance offline."""
    t, cp = a.token, a.witnessed.checkpoint
    return {
        "peer": a.peer.name,
        "issuer": t.issuer,
        "log_vkey": a.peer.log.vkey,
        "foreign_sub": t.sub,
        "foreign_jti": t.jti,
        "role": t.role,
        "leaf_index": a.receipt.index,
        "leaf_hash": base64.b64encode(a.receipt.leaf_hash).decode(),
        "checkpoint": {
            "size": cp.size,
            "root": base64.b64encode(cp.root).decode(),
            "cosigned_by": [c.name for c in a.witnessed.cosignatures],
        },
        "receipt": a.receipt.to_json(),
        "entry": base64.b64encode(a.entry).decode(),
        "first": first,
    }


async def _federation_ctx(app: web.Application) -> AsyncIterator[None]:
    config, clock = app[CONFIG], app[CLOCK]
    state = FederationState(await asyncio.to_thread(app[DATABASE].open, "federation"))
    client = PeerClient()
    fed = Federation(
        app[TRUST], state, client, clock=clock, skew=config.clock_skew, revoke=revoker(app)
    )
    fed.revocations.load(await asyncio.to_thread(state.links, int(clock()) - config.clock_skew))
    app[FEDERATION] = fed
    try:
        yield
    finally:
        await client.close()
        await asyncio.to_thread(state.close)


def setup(app: web.Application, trust_file: str) -> TrustList:
    """Accept the trust list's peers here: the token exchange at ``/oauth/token``,
    ``resource=<peer>`` on client_credentials, and the peers' revocations followed on every
    request that presents a token issued by exchange. Raises ConfigError for a bad trust
    list."""
    trust = load_trust_list(trust_file)
    public = app[CONFIG].public_url.rstrip("/")
    if not public:
        raise ConfigError("trust_file needs public_url: peers pin this gateway's issuer")
    if public in trust.issuers:
        raise ConfigError("trust_file lists this gateway itself as a peer")
    app[TRUST] = trust
    app[TOKEN_EXCHANGE] = exchange
    app[PEER_AUDIENCES] = trust.issuers
    app.middlewares.append(recheck_middleware)
    app.cleanup_ctx.append(_federation_ctx)
    return trust
