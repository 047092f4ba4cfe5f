"""Consent endpoints: patients grant, list and revoke; providers list what names them and
may declare an emergency (break-the-glass). Every grant, revocation and emergency is a
ledger event."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
from typing import Any

from aiohttp import web

from ledger.events import EventType, commit, new_salt

from ..appkeys import AUTHORITY, CONFIG, CONSENTS, VITALS
from ..auth.enroll import is_subject_id
from ..auth.http import authenticate, read_json
from ..errors import BadRequest, NotFound
from ..recorder import event, record
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


async def grant(request: web.Request) -> web.Response:
    p = authenticate(request)
    p.require("patient", scope="consent")
    body = await read_json(request)
    if not isinstance(body, dict) or set(body) - {"grantee", "scopes", "until"}:
        raise BadRequest("send grantee, scopes and until")
    grantee, scopes, until = body.get("grantee"), body.get("scopes"), body.get("until")
    auth = request.app[AUTHORITY]
    if grantee != ROLE_GRANTEE:
        if not is_subject_id(grantee, "provider"):
            raise BadRequest(f"grantee is a provider id (prov:...) or {ROLE_GRANTEE!r}")
        s = await asyncio.to_thread(auth.store.subject, str(grantee))
        if s is None or s.revoked is not None:
            raise BadRequest("no enrolled provider with that id")
    if (
        not isinstance(scopes, list)
        or not scopes
        or len(scopes) > len(SCOPES)
        or any(x not in SCOPES for x in scopes)
    ):
        raise BadRequest(f"scopes is a non-empty list of {', '.join(SCOPES)}")
    now = auth.now()
    try:
        end = int(dt.datetime.fromisoformat(str(until).replace("Z", "+00:00")).timestamp())
    except ValueError as e:
        raise BadRequest("until is an RFC 3339 time, e.g. 2026-12-31T23:59:59Z") from e
    if not now < end <= now + MAX_CONSENT_DAYS * 86400:
        raise BadRequest(f"until must be in the future and within {MAX_CONSENT_DAYS} days")
    c = Consent(
        secrets.token_hex(16), p.sub, str(grantee), tuple(sorted(set(scopes))), now, end, None
    )
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
    await request.app[VITALS].streamer.recheck(p.sub)  # live streams it allowed stop now
    return web.json_response({"id": cid, "revoked": now, "receipt": receipt.to_json()})


async def list_consents(request: web.Request) -> web.Response:
    p = authenticate(request)
    store = request.app[CONSENTS]
    if p.role == "patient":
        found = await asyncio.to_thread(store.of_patient, p.sub)
    elif p.role == "provider":
        found = await asyncio.to_thread(store.naming, (p.sub, ROLE_GRANTEE))
    else:
        p.require("patient", "provider")
        found = []
    now = request.app[AUTHORITY].now()
    return web.json_response({"consents": [_view(c, now) for c in found]})


async def emergency(request: web.Request) -> web.Response:
    p = authenticate(request)
    p.require("provider")
    body = await read_json(request)
    if not isinstance(body, dict) or set(body) - {"patient", "reason"}:
        raise BadRequest("send patient and reason")
    patient, reason = body.get("patient"), body.get("reason")
    if not is_subject_id(patient, "patient"):
        raise BadRequest("patient is a patient id (pat:...)")
    if not isinstance(reason, str) or not 10 <= len(reason.strip()) <= 500:
        raise BadRequest("reason is 10-500 characters: why this cannot wait for consent")
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
