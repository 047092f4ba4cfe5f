"""Call endpoints: schedule, tickets, the waiting room, admit, end, and the signalling
WebSocket. Every state change is a ledger event; nothing is relayed to or from a party that
has not been admitted."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import WSMsgType, web

from ledger.events import Event, EventType

from ..appkeys import (
    AUDIT_INDEX,
    AUTHORITY,
    CLOCK,
    CONSENT_GUARD,
    HUB,
    LIVE,
    LOG,
    PRINCIPAL,
    SESSIONS,
    TICKETS,
)
from ..audit.index import Filters, IndexMismatch
from ..auth.enroll import is_subject_id
from ..auth.http import authenticate, read_json
from ..auth.names import names_of
from ..auth.store import TokenRecord
from ..auth.tokens import Authority, Forbidden, Principal
from ..consent.guard import ROLE_GRANTEE
from ..errors import OUTAGE_RETRY, BadRequest, Conflict, NotFound, retryable
from ..jsonio import loads
from ..recorder import event, record
from ..shared.client import SharedUnavailable
from .live import CLOSE_FORBIDDEN
from .signalling import CLOSE_UNAVAILABLE, MAX_MESSAGE, RELAYED, Ticket, fingerprints
from .store import FINAL, BadTransition, CallSession, State

__all__ = [
    "cancel_unfounded",
    "current_session",
    "end_call",
    "refresh_ctx",
    "refresh_current",
    "setup",
]

log = logging.getLogger("telegate.sessions")

log = logging.getLogger("telegate.sessions")

GATEWAY_ACTOR = "gw:self"
#: A socket of a call that is over is closed after its ``bye``: nothing can be relayed.
CLOSE_OVER = 1000
#: A socket replaced by the same party's reconnect.
CLOSE_REPLACED = 4409

_EVENT = {
    State.SCHEDULED: EventType.SESSION_SCHEDULED,
    State.WAITING: EventType.SESSION_WAITING,
    State.ADMITTED: EventType.SESSION_ADMITTED,
    State.CONNECTED: EventType.SESSION_CONNECTED,
    State.ENDED: EventType.SESSION_ENDED,
    State.CANCELLED: EventType.SESSION_CANCELLED,
    State.NO_SHOW: EventType.SESSION_NO_SHOW,
}


def _view(s: CallSession) -> dict[str, Any]:
    return {
        "id": s.id,
        "patient": s.patient,
        "provider": s.provider,
        "state": str(s.state),
        "created": s.created,
        "updated": s.updated,
    }


async def _event(
    app: web.Application,
    kind: EventType,
    actor: str,
    s: CallSession,
    data: dict[str, Any] | None = None,
) -> Any:
    return await record(
        app, event(app, kind, actor, subject=s.patient, session=s.id, data=data or {})
    )


async def _move(
    app: web.Application, s: CallSession, to: State, actor: str, why: str | None = None
) -> CallSession:
    try:
        moved = await asyncio.to_thread(app[SESSIONS].move, s.id, to, app[AUTHORITY].now())
    except BadTransition as e:
        raise Conflict(str(e)) from e
    if moved.state in FINAL:
        app[HUB].current.pop(moved.id, None)  # reloaded from the store if ever asked again
    else:
        app[HUB].current[moved.id] = (moved, app[CLOCK]())
    data = {"from": str(s.state)} | ({"closed": why} if why else {})
    await _event(app, _EVENT[to], actor, moved, data)
    return moved


async def _close_room(app: web.Application, sid: str) -> None:
    """Close the sockets of a call that is over (after its ``bye``). Not recorded: the
    call's last transition is."""
    await app[HUB].close_room(sid, CLOSE_OVER, "session over")


async def end_call(app: web.Application, sid: str, why: str) -> None:
    """End a call for the gateway (its provider lost the right to it: ``why``), tell the
    sockets still open and close them."""
    s = await current_session(app, sid)
    if s is None or s.state in FINAL:
        return
    to = State.ENDED if s.state in (State.ADMITTED, State.CONNECTED) else State.CANCELLED
    try:
        moved = await _move(app, s, to, GATEWAY_ACTOR, why)
    except Conflict:
        return  # moved by someone else meanwhile: over already
    bye = {"type": "bye", "from": "gateway", "state": str(moved.state), "reason": why}
    for who in ("patient", "provider"):
        await app[HUB].tell(sid, who, bye)
    await _close_room(app, sid)


async def cancel_unfounded(app: web.Application, patient: str, grantee: str) -> None:
    """After a consent of ``patient`` naming ``grantee`` was revoked or narrowed: cancel,
    for the gateway (``closed: consent``), each of the patient's calls not begun yet
    (scheduled or waiting) that its provider scheduled and that nothing allows now, so
    that the call does not wait for the provider to connect to end. A call the patient
    asked for needed no consent and stands; one with the provider's socket open is
    :class:`~gateway.sessions.live.LiveAccess`'s."""
    found = await asyncio.to_thread(app[SESSIONS].of_party, patient, 200, True)
    for s in found:
        if s.state not in (State.SCHEDULED, State.WAITING) or s.patient != patient:
            continue
        if grantee not in (s.provider, ROLE_GRANTEE) or await _provider_joined(app, s.id):
            continue
        who = Principal(s.provider, "provider", frozenset(), "", "")
        if await app[CONSENT_GUARD].decide(who, patient, "call") is not None:
            continue
        if await _scheduled_by(app, s.id) == s.provider:
            await end_call(app, s.id, "consent")


async def _provider_joined(app: web.Application, sid: str) -> bool:
    """Whether the call's provider has a socket open, on any replica; unknown (Redis away)
    is no: the call is cancelled if nothing allows it (failing closed)."""
    try:
        return await app[HUB].reachable(sid, "provider")
    except SharedUnavailable:
        return False


async def _scheduled_by(app: web.Application, sid: str) -> str | None:
    """Who scheduled a call: the actor of its ``session.scheduled`` event (the sessions
    table does not say), found through the audit index."""
    index, ledger = app[AUDIT_INDEX], app[LOG]
    size = ledger.size
    try:
        await index.run(index.catch_up, ledger.store, size)
    except IndexMismatch:
        return None  # unknown: the call stands, as it did before (`telegate ledger reindex`)
    f = Filters(type=str(EventType.SESSION_SCHEDULED), session=sid)
    idxs = await index.run(index.query, f, -1, size, 1)
    if not idxs:
        return None
    (raw,) = await asyncio.to_thread(ledger.store.read_entries, idxs[0], idxs[0] + 1)
    actor = json.loads(raw).get("actor")
    return actor if isinstance(actor, str) else None


#: How long this replica acts on its hub's copy of a session before reading it again:
#: another replica may have ended or cancelled the call (docs/database.md).
CURRENT_FOR = 1.0


async def current_session(app: web.Application, sid: str) -> CallSession | None:
    """The session as it is now, or as this replica saw it less than ``CURRENT_FOR`` seconds
    ago: the relay path reads the store at most once a second per session, not per message,
    and a move made through another replica takes effect here within that second. The calls
    with a live socket here are read again together every ``REFRESH_EVERY`` s
    (:func:`refresh_ctx`), so their messages find a copy young enough and read nothing."""
    now = app[CLOCK]()
    cached = app[HUB].current.get(sid)
    if cached is not None and 0 <= now - cached[1] < CURRENT_FOR:
        hit: CallSession = cached[0]
        return hit
    found = await asyncio.to_thread(app[SESSIONS].get, sid)
    if found is None:
        app[HUB].current.pop(sid, None)
    else:
        app[HUB].current[sid] = (found, now)
    return found


#: How often the sessions of this replica's live sockets are read again, all in one go.
REFRESH_EVERY = CURRENT_FOR / 2


async def refresh_current(app: web.Application) -> int:
    """Read every session with a live socket here in one statement, and keep what was read
    as the copy :func:`current_session` answers from. A copy made since the read began (a
    move here, a read by a message) is newer and kept. Returns how many were read."""
    hub = app.get(HUB)  # with redis_url, made by a later cleanup_ctx
    if hub is None or not hub.sessions:
        return 0
    sids = list(hub.sessions)
    began = app[CLOCK]()
    found = await asyncio.to_thread(app[SESSIONS].get_many, sids)
    for sid in sids:
        cached = hub.current.get(sid)
        if sid not in hub.sessions or (cached is not None and cached[1] >= began):
            continue
        s = found.get(sid)
        if s is None:
            hub.current.pop(sid, None)
        else:
            hub.current[sid] = (s, began)
    return len(sids)


async def refresh_ctx(app: web.Application) -> AsyncIterator[None]:
    """:func:`refresh_current` every ``REFRESH_EVERY`` s while the app runs. A failed read
    (the database away) is logged; the relay then reads per message as before, and gets
    the store's error."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(REFRESH_EVERY)
            try:
                await refresh_current(app)
            except Exception as e:  # the next round tries again
                log.warning("live sessions refresh failed", extra={"fields": {"error": str(e)}})

    task = asyncio.get_running_loop().create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _participant(request: web.Request, p: Principal) -> tuple[CallSession, str]:
    sid = request.match_info["id"]
    s = await asyncio.to_thread(request.app[SESSIONS].get, sid) if len(sid) <= 64 else None
    party = s.party(p.sub) if s is not None else None
    if s is None or party is None:
        # One answer for "no such session" and "not yours".
        raise NotFound("no such session for this caller")
    return s, party


async def _other_stands(app: web.Application, s: CallSession, party: str) -> None:
    """Refuse (409) to carry a call on with a party who was revoked since it was
    scheduled: the other would wait for someone who can never come, or be admitted with
    someone who left. Ending the call stays possible."""
    other = s.provider if party == "patient" else s.patient
    auth = app[AUTHORITY]
    o = await asyncio.to_thread(auth.store.subject, other)
    if o is None or o.revoked is not None or other in auth.revoked_subjects:
        raise Conflict(
            f"the session's {'provider' if party == 'patient' else 'patient'} has been revoked"
        )


async def create(request: web.Request) -> web.Response:
    p = authenticate(request)
    p.require("provider", "patient", scope="call")
    body = await read_json(request)
    if not isinstance(body, dict) or set(body) - {"patient", "provider"}:
        raise BadRequest("send the other party: patient (provider scheduling) or provider")
    auth = request.app[AUTHORITY]
    if p.role == "provider":
        patient: Any = body.get("patient")
        provider: Any = p.sub
        if not is_subject_id(patient, "patient"):
            raise BadRequest("patient is a patient id (pat:...)")
        other = await asyncio.to_thread(auth.store.subject, str(patient))
        if other is None or other.revoked is not None:
            raise BadRequest("no enrolled patient with that id")
        # Scheduling a call with a patient needs the patient's consent to calls.
        await request.app[CONSENT_GUARD].authorize(p, str(patient), "call", "treatment")
    else:
        patient, provider = p.sub, body.get("provider")
        if not is_subject_id(provider, "provider"):
            raise BadRequest("provider is a provider id (prov:...)")
        other = await asyncio.to_thread(auth.store.subject, str(provider))
        if other is None or other.revoked is not None:
            raise BadRequest("no enrolled provider with that id")
    now = auth.now()
    s = CallSession(secrets.token_hex(16), str(patient), str(provider), State.SCHEDULED, now, now)
    await asyncio.to_thread(request.app[SESSIONS].add, s)
    receipt = await _event(
        request.app,
        EventType.SESSION_SCHEDULED,
        p.sub,
        s,
        {"provider": s.provider, "requested_by": p.role},
    )
    return web.json_response({**_view(s), "receipt": receipt.to_json()}, status=201)


async def mine(request: web.Request) -> web.Response:
    """The caller's calls, most recently changed first (``active=true``: not over yet)."""
    p = authenticate(request)
    p.require("provider", "patient")
    active = request.query.get("active", "false")
    if active not in ("true", "false"):
        raise BadRequest("active is true or false")
    try:
        limit = int(request.query.get("limit", "50"))
    except ValueError as e:
        raise BadRequest("limit is a number") from e
    if not 1 <= limit <= 200:
        raise BadRequest("limit is 1..200")
    found = await asyncio.to_thread(request.app[SESSIONS].of_party, p.sub, limit, active == "true")
    # The caller is a party of each: both parties of a call may see each other's names.
    names = await names_of(request.app, (x for s in found for x in (s.patient, s.provider)))
    return web.json_response({"sessions": [_view(s) for s in found], "names": names})


async def get(request: web.Request) -> web.Response:
    p = authenticate(request)
    s, _ = await _participant(request, p)
    names = await names_of(request.app, (s.patient, s.provider))
    return web.json_response({**_view(s), "names": names})


async def waiting(request: web.Request) -> web.Response:
    p = authenticate(request)
    p.require("provider")
    found = await asyncio.to_thread(request.app[SESSIONS].of_provider, p.sub, State.WAITING)
    # Not a patient who was revoked since (admitting them answers 409): the call stays
    # among the provider's calls (GET /v1/sessions), to be ended there.
    gone = request.app[AUTHORITY].revoked_subjects
    found = [s for s in found if s.patient not in gone]
    names = await names_of(request.app, (s.patient for s in found))
    return web.json_response({"waiting": [_view(s) for s in found], "names": names})


async def ticket(request: web.Request) -> web.Response:
    p = authenticate(request)
    s, party = await _participant(request, p)
    if s.state in FINAL:
        raise Conflict(f"the session is {s.state}")
    await _other_stands(request.app, s, party)
    code, expires = await request.app[TICKETS].issue(s.id, p.sub, p.jti, p.jkt)
    return web.json_response(
        {"ticket": code, "expires": int(expires), "ws": f"/v1/sessions/{s.id}/ws?ticket={code}"}
    )


async def admit(request: web.Request) -> web.Response:
    p = authenticate(request)
    s, party = await _participant(request, p)
    if party != "provider":
        raise Forbidden("only the session's provider admits")
    await _other_stands(request.app, s, party)
    moved = await _move(request.app, s, State.ADMITTED, p.sub)
    hub = request.app[HUB]
    for who in ("patient", "provider"):
        await hub.tell(s.id, who, {"type": "admitted", "session": s.id})
    return web.json_response(_view(moved))


async def end(request: web.Request) -> web.Response:
    p = authenticate(request)
    s, party = await _participant(request, p)
    to = State.ENDED if s.state in (State.ADMITTED, State.CONNECTED) else State.CANCELLED
    moved = await _move(request.app, s, to, p.sub)
    hub = request.app[HUB]
    for who in ("patient", "provider"):
        await hub.tell(s.id, who, {"type": "bye", "from": party, "state": str(moved.state)})
    await _close_room(request.app, s.id)
    return web.json_response(_view(moved))


async def no_show(request: web.Request) -> web.Response:
    p = authenticate(request)
    s, party = await _participant(request, p)
    if party != "provider":
        raise Forbidden("only the session's provider records a no-show")
    moved = await _move(request.app, s, State.NO_SHOW, p.sub)
    await request.app[HUB].tell(
        s.id, "patient", {"type": "bye", "from": party, "state": str(moved.state)}
    )
    await _close_room(request.app, s.id)
    return web.json_response(_view(moved))


async def _refuse(app: web.Application, s: CallSession, sub: str, why: str) -> None:
    await record(
        app,
        Event.now(
            EventType.AUTH_REFUSED,
            sub,
            session=s.id,
            data={"route": "/v1/sessions/{id}/ws", "method": "GET", "status": 403, "problem": why},
        ),
    )


async def _relay(
    request: web.Request, s: CallSession, party: str, sub: str, ws: web.WebSocketResponse, msg: Any
) -> None:
    app = request.app
    try:
        data = loads(msg, "the message")
    except ValueError:
        data = None
    # A non-string type ({"type": []}) is unhashable: a TypeError that closed the socket.
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("type"), str)
        or data["type"] not in RELAYED
    ):
        await ws.send_json({"type": "error", "error": "malformed message"})
        return
    current = await current_session(app, s.id)
    if current is None or current.state not in (State.ADMITTED, State.CONNECTED):
        await _refuse(app, s, sub, "not-admitted")  # on the ledger before the reply
        await ws.send_json({"type": "error", "error": "not admitted"})
        return
    kind = data["type"]
    if kind in ("offer", "answer"):
        sdp = data.get("sdp")
        fps = fingerprints(sdp) if isinstance(sdp, str) else []
        if not fps:
            await ws.send_json({"type": "error", "error": "an SDP needs a=fingerprint"})
            return
        # Media bound to identity: these DTLS fingerprints are this party's.
        await _event(
            app,
            EventType.SESSION_MEDIA_BOUND,
            sub,
            current,
            {"party": party, "kind": kind, "fingerprints": fps},
        )
    out = {
        k: v
        for k, v in data.items()
        if k in ("type", "sdp", "candidate", "sdpMid", "sdpMLineIndex", "restart")
    }
    out["from"] = party
    other = "provider" if party == "patient" else "patient"
    gone = {"type": "error", "error": "the other party is not connected"}
    if kind == "answer" and current.state == State.ADMITTED:
        if not await app[HUB].reachable(s.id, other):
            await ws.send_json(gone)
            return
        # Stored before it is relayed: whoever has seen the answer reads "connected", from
        # any replica (reads no longer wait behind an in-process lock for a write).
        try:
            await _move(app, current, State.CONNECTED, sub)
        except Conflict:
            # This replica's copy was behind: another replica moved the call meanwhile.
            app[HUB].current.pop(s.id, None)
            moved = await current_session(app, s.id)
            if moved is None or moved.state != State.CONNECTED:
                await ws.send_json({"type": "error", "error": "not admitted"})
                return
    if not await app[HUB].send(s.id, other, out):
        # No socket here, and no replica heard it (none holds one, or it died: kill -9).
        await ws.send_json(gone)


def _stands(auth: Authority, t: Ticket, rec: TokenRecord | None) -> bool:
    """Whether the attestation a ticket is bound to still stands: known, its holder's, not
    revoked (store, status list), its subject not revoked, not expired. In memory but for
    ``rec``, so that it can be asked again with no await between it and ``Hub.join``."""
    return (
        rec is not None
        and rec.sub == t.sub
        and rec.revoked is None
        and not auth.status.get(rec.status_idx)
        and t.sub not in auth.revoked_subjects
        and auth.now() < rec.exp + auth.skew
    )


async def websocket(request: web.Request) -> web.WebSocketResponse:
    sid = request.match_info["id"]
    code = request.query.get("ticket", "")
    auth = request.app[AUTHORITY]
    t = await request.app[TICKETS].redeem(code, sid) if len(code) <= 64 else None
    s = await asyncio.to_thread(request.app[SESSIONS].get, sid) if t is not None else None
    party = s.party(t.sub) if (s is not None and t is not None) else None
    rec = await asyncio.to_thread(auth.store.token, t.jti) if t is not None else None
    if t is not None and not _stands(auth, t, rec):
        # A ticket outlives nothing: the refusal (recorded by the middleware) names whose.
        role = rec.role if rec is not None else ""
        request[PRINCIPAL] = Principal(t.sub, role, frozenset(), t.jti, t.jkt)
        party = None
    if s is None or t is None or rec is None or party is None or s.state in FINAL:
        raise Forbidden("unknown, spent or expired ticket for this session")
    hub = request.app[HUB]
    # Before the socket opens: with Redis away this is a 503 (Retry-After), and the party's
    # socket on another replica is told to close (docs/redis.md).
    owner = await hub.claim(s.id, party, s.patient)
    try:
        return await _serve(request, s, party, t, rec, owner)
    finally:
        await hub.release(s.id, party, owner, s.patient)


async def _serve(
    request: web.Request, s: CallSession, party: str, t: Ticket, rec: TokenRecord, owner: str
) -> web.WebSocketResponse:
    auth = request.app[AUTHORITY]
    ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE, heartbeat=30)
    await ws.prepare(request)
    if not _stands(auth, t, rec):
        # Revoked while the socket opened: joined now, it could miss the invalidation.
        await _refuse(request.app, s, t.sub, "revoked")
        await ws.close(code=CLOSE_FORBIDDEN, message=b"revoked")
        return ws
    hub, live = request.app[HUB], request.app[LIVE]
    peer, replaced = hub.join(s.id, party, ws, t.sub, t.jti, owner)
    if peer.closed is not None:
        # Another socket of the party (on another replica) took its place while it opened.
        await ws.close(code=CLOSE_REPLACED, message=b"replaced")
        return ws
    try:
        if replaced is not None:
            await replaced.ws.close(code=CLOSE_REPLACED, message=b"replaced")
        await live.opened(s, party, peer, rec.exp + auth.skew)
        if party == "patient" and s.state == State.SCHEDULED:
            s = await _move(request.app, s, State.WAITING, t.sub)
            await hub.send(s.id, "provider", {"type": "waiting", "session": s.id})
        await ws.send_json({"type": "hello", "party": party, "state": str(s.state)})
        async for msg in ws:
            if peer.closed is not None:
                break  # closed by the gateway while this message was on its way
            if msg.type != WSMsgType.TEXT:
                continue
            if not hub.allow(peer):
                await ws.send_json({"type": "error", "error": "rate limit"})
                continue
            await _relay(request, s, party, t.sub, ws, msg.data)
    except SharedUnavailable:
        # Redis is away: the page reconnects, and its next ticket waits for Redis.
        why = "shared state unavailable"
        told = {"type": "error", "error": why}
        await hub.drop(s.id, party, peer, CLOSE_UNAVAILABLE, why, told)
    except Exception as e:
        # A store or the ledger is down (an offer's fingerprints could not be recorded, a
        # move not stored): what HTTP answers 503 + Retry-After. The socket is told why and
        # when to retry, then closed with 1013, never dropped silently; the page
        # reconnects with a new ticket after ``retry_after`` seconds.
        if not retryable(e):
            raise
        why = "store unavailable"
        log.warning("signalling: store unavailable", extra={"fields": {"error": type(e).__name__}})
        retry = {"type": "error", "error": why, "retry_after": OUTAGE_RETRY}
        if not await hub.drop(s.id, party, peer, CLOSE_UNAVAILABLE, why, retry) and not ws.closed:
            await ws.send_json(retry)  # no longer the party's live socket: still told
            await ws.close(code=CLOSE_UNAVAILABLE, message=why.encode())
    finally:
        hub.leave(s.id, party, peer)
        live.closed(s.id, party)
    return ws


def setup(app: web.Application) -> None:
    r = app.router
    r.add_post("/v1/sessions", create)
    r.add_get("/v1/sessions", mine)
    r.add_get("/v1/sessions/waiting", waiting)
    r.add_get("/v1/sessions/{id}", get)
    r.add_post("/v1/sessions/{id}/ticket", ticket)
    r.add_post("/v1/sessions/{id}/admit", admit)
    r.add_post("/v1/sessions/{id}/end", end)
    r.add_post("/v1/sessions/{id}/no-show", no_show)
    r.add_get("/v1/sessions/{id}/ws", websocket)
