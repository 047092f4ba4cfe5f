"""Consent endpoints: patients grant, list and revoke; providers list what names them and
may declare an emergency (break-the-glass). Every grant, revocation and emergency is a
ledger event."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from aiohttp import web

from ledger.events import EventType, commit, new_salt

from ..appkeys import AUTHORITY, CONFIG, CONSENTS, INVALIDATIONS
from ..auth.enroll import is_subject_id
from ..auth.http import authenticate, read_json
from ..auth.names import names_of
from ..errors import BadRequest, NotFound
from ..invalidation import Invalidation, Kind
from ..recorder import event, record
from ..rfc3339 import time_param
from .guard import ROLE_GRANTEE, SCOPES
from .store import Consent, Emergency

__all__ = ["setup"]

MAX_CONSENT_DAYS = 366


def _view(c: Consent, now: int) -> dict[str, Any]:
    return {
        "id": c.id,
        "patient": c.patient,
        "grantee": c.grantee,
        "scopes": list(c.scopes),
        "created": c.created,
        "until": c.until,
        "revoked": c.revoked,
        "active": c.active(now),
    }


def check_grant(body: Any, now: int) -> tuple[str, tuple[str, ...], int]:
    """``POST /v1/consents`` at ``now``: the grantee (a provider id or every provider), the
    scopes (sorted, each once) and the end (epoch seconds, after now and within
    MAX_CONSENT_DAYS). Raises BadRequest."""
    if not isinstance(body, dict) or set(body) - {"grantee", "scopes", "until"}:
        raise BadRequest("send grantee, scopes and until")
    grantee, scopes, until = body.get("grantee"), body.get("scopes"), body.get("until")
    if grantee != ROLE_GRANTEE and not is_subject_id(grantee, "provider"):
        raise BadRequest(f"grantee is a provider id (prov:...) or {ROLE_GRANTEE!r}")
    if (
        not isinstance(scopes, list)
        or not scopes
        or len(scopes) > len(SCOPES)
        or any(x not in SCOPES for x in scopes)
    ):
        raise BadRequest(f"scopes is a non-empty list of {', '.join(SCOPES)}")
    end = int(time_param(until, "until").timestamp())
    if not now < end <= now + MAX_CONSENT_DAYS * 86400:
        raise BadRequest(f"until must be in the future and within {MAX_CONSENT_DAYS} days")
    return str(grantee), tuple(sorted(set(scopes))), end


async def grant(request: web.Request) -> web.Response:
    p = authenticate(request)
    p.require("patient", scope="consent")
    body = await read_json(request)
    auth = request.app[AUTHORITY]
    now = auth.now()
    grantee, scopes, end = check_grant(body, now)
    if grantee != ROLE_GRANTEE:
        s = await asyncio.to_thread(auth.store.subject, grantee)
        if s is None or s.revoked is not None:
            raise BadRequest("no enrolled provider with that id")
    c = Consent(secrets.token_hex(16), p.sub, grantee, scopes, now, end, None)
    await asyncio.to_thread(request.app[CONSENTS].add, c)
    receipt = await record(
        request.app,
        event(
            request.app,
            EventType.CONSENT_GRANTED,
            p.sub,
            subject=p.sub,
            data={"consent": c.id, "grantee": c.grantee, "scopes": list(c.scopes), "until": end},
        ),
    )
    return web.json_response({**_view(c, now), "receipt": receipt.to_json()}, status=201)


async def revoke(request: web.Request) -> web.Response:
    p = authenticate(request)
    p.require("patient", scope="consent")
    store = request.app[CONSENTS]
    cid = request.match_info["id"]
    c = await asyncio.to_thread(store.get, cid) if len(cid) <= 64 else None
    if c is None or c.patient != p.sub:
        raise NotFound("no consent with that id for this patient")
    now = request.app[AUTHORITY].now()
    if not await asyncio.to_thread(store.revoke, cid, now):
        raise NotFound("that consent is already revoked")
    receipt = await record(
        request.app,
        event(request.app, EventType.CONSENT_REVOKED, p.sub, subject=p.sub, data={"consent": cid}),
    )
    # Live streams and calls it allowed, with no other basis, stop now.
    news = Invalidation(Kind.CONSENT, patient=p.sub, grantee=c.grantee, reason="consent_revoked")
    await request.app[INVALIDATIONS].publish(news)
    return web.json_response({"id": cid, "revoked": now, "receipt": receipt.to_json()})


async def list_consents(request: web.Request) -> web.Response:
    p = authenticate(request)
    store = request.app[CONSENTS]
    now = request.app[AUTHORITY].now()
    if p.role == "patient":
        found = await asyncio.to_thread(store.of_patient, p.sub)
        # The providers the patient chose, whatever became of the consent since.
        named = [c.grantee for c in found]
    elif p.role == "provider":
        found = await asyncio.to_thread(store.naming, (p.sub, ROLE_GRANTEE))
        # A patient is named to a provider they consented to by name, while it lasts; a
        # consent to every provider makes no relation with this one.
        named = [c.patient for c in found if c.grantee == p.sub and c.active(now)]
    else:
        p.require("patient", "provider")
        found, named = [], []
    names = await names_of(request.app, named)
    return web.json_response({"consents": [_view(c, now) for c in found], "names": names})


def check_emergency(body: Any) -> tuple[str, str]:
    """``POST /v1/emergency-access``: the patient id and the reason (10-500 characters once
    trimmed). Raises BadRequest."""
    if not isinstance(body, dict) or set(body) - {"patient", "reason"}:
        raise BadRequest("send patient and reason")
    patient, reason = body.get("patient"), body.get("reason")
    if not is_subject_id(patient, "patient"):
        raise BadRequest("patient is a patient id (pat:...)")
    if not isinstance(reason, str) or not 10 <= len(reason.strip()) <= 500:
        raise BadRequest("reason is 10-500 characters: why this cannot wait for consent")
    return str(patient), reason


async def emergency(request: web.Request) -> web.Response:
    p = authenticate(request)
    p.require("provider")
    body = await read_json(request)
    patient, reason = check_emergency(body)
    auth = request.app[AUTHORITY]
    s = await asyncio.to_thread(auth.store.subject, str(patient))
    # A revoked patient is answered like an unknown one (as at invites and scheduling).
    if s is None or s.role != "patient" or s.revoked is not None:
        raise BadRequest("no enrolled patient with that id")
    now = auth.now()
    window = request.app[CONFIG].break_glass_minutes * 60
    e = Emergency(secrets.token_hex(16), p.sub, str(patient), now, now + window)
    await asyncio.to_thread(request.app[CONSENTS].add_emergency, e, reason)
    # The reason is free text (maybe PHI): the ledger gets a salted commitment to it.
    salt = new_salt()
    receipt = await record(
        request.app,
        event(
            request.app,
            EventType.EMERGENCY_ACCESS,
            p.sub,
            subject=str(patient),
            data={
                "emergency": e.id,
                "until": e.until,
                "flagged": True,
                "reason_commitment": commit(salt, reason),
                "review": "required",
            },
        ),
    )
    return web.json_response(
        {
            "id": e.id,
            "patient": patient,
            "until": e.until,
            "flagged": True,
            "receipt": receipt.to_json(),
        },
        status=201,
    )


def setup(app: web.Application) -> None:
    r = app.router
    r.add_post("/v1/consents", grant)
    r.add_get("/v1/consents", list_consents)
    r.add_delete("/v1/consents/{id}", revoke)
    r.add_post("/v1/emergency-access", emergency)
