"""``/fhir/AuditEvent`` and ``/fhir/Consent`` searches.

AuditEvents are the ledger's events through the auditor API's own page function
(``gateway.audit.http``: the audit index chooses, the ledger's bytes confirm, each row with
its inclusion proof against one checkpoint), in the BALP shape of the audit export, each
carrying its proof as an extension. Like every audit query, each search is itself a ledger
event. Consents come from the consent store, as ``GET /v1/consents`` lists them, in the
shape of the FHIR export.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
from typing import Any

from aiohttp import web

from ledger.events import Event, EventType

from ..appkeys import AUTHORITY, CONSENTS
from ..audit.fhir import DCM, EVENT_TYPE, TELEGATE_TYPE, audit_event, consent_resource
from ..audit.http import _proved_page
from ..audit.index import Filters
from ..auth.enroll import is_subject_id
from ..auth.tokens import Forbidden, Principal
from ..consent.guard import ROLE_GRANTEE
from ..consent.store import Consent
from ..errors import BadRequest
from ..recorder import record
from .common import fhir_response, searchset, smart_principal
from .cursor import CURSOR_KEY, Cursor
from .params import RESOURCES, Search, parse_date, parse_search

__all__ = ["PROOF_EXT", "search_audit_events", "search_consents"]

#: The ledger proof of an AuditEvent: leaf index, tree size, leaf hash, the audit path
#: (RFC 9162 inclusion proof) and the signed checkpoint it proves against.
PROOF_EXT = "https://telegate.dev/fhir/StructureDefinition/ledger-inclusion-proof"
_TYPE_SYSTEMS = (DCM, EVENT_TYPE)


def _subject(value: str, name: str) -> str:
    value = value.rsplit("/", 1)[-1] if value.startswith(("Patient/", "Practitioner/")) else value
    if not is_subject_id(value):
        raise BadRequest(f"{name} is a subject id (pat:..., prov:..., ...)")
    return value


def _code(value: str, systems: tuple[str, ...], name: str) -> str:
    if "|" in value:
        system, value = value.split("|", 1)
        if system and system not in systems:
            raise BadRequest(f"{name} takes codes of {' or '.join(systems)}")
    return value


def _audit_filters(s: Search, p: Principal) -> Filters:
    values: dict[str, Any] = {}
    patient = s.one("patient")
    if patient is not None:
        values["subject"] = _subject(patient, "patient")
        if not values["subject"].startswith("pat:"):
            raise BadRequest("patient is a patient's subject id (pat:...)")
    entity = s.one("entity")
    if entity is not None:
        if is_subject_id(entity.rsplit("/", 1)[-1]):
            subject = _subject(entity, "entity")
            if values.get("subject", subject) != subject:
                raise BadRequest("patient and entity name two different subjects")
            values["subject"] = subject
        elif len(entity) <= 128:
            values["session"] = entity
        else:
            raise BadRequest("entity is a subject id or a session id (at most 128 characters)")
    # A patient searches the events about themself, as their access report shows them.
    if p.role == "patient" and values.setdefault("subject", p.sub) != p.sub:
        raise Forbidden("a patient sees only the events about themself")
    agent = s.one("agent")
    if agent is not None:
        values["actor"] = _subject(agent, "agent")
    subtype = s.one("subtype")
    if subtype is not None:
        values["type"] = _code(subtype, (TELEGATE_TYPE,), "subtype")
    dates = parse_date(list(s.values.get("date", ())))
    if dates.since is not None:
        values["since_ms"] = math.ceil(dates.since.timestamp() * 1000)
    if dates.until is not None:
        values["until_ms"] = math.floor(dates.until.timestamp() * 1000) + 1  # exclusive
    return Filters(**values)


def _with_proof(row: dict[str, Any], size: int, checkpoint: str) -> dict[str, Any]:
    res = audit_event(row["index"], row["leaf_hash"], row["event"])
    res["extension"] = [
        {
            "url": PROOF_EXT,
            "extension": [
                {"url": "leafIndex", "valueUnsignedInt": row["index"]},
                {"url": "treeSize", "valueUnsignedInt": size},
                {"url": "leafHash", "valueBase64Binary": row["leaf_hash"]},
                {"url": "leaf", "valueBase64Binary": row["leaf"]},
                *({"url": "auditPath", "valueBase64Binary": h} for h in row["inclusion_proof"]),
                {"url": "checkpoint", "valueString": checkpoint},
                {
                    "url": "event",
                    "valueUri": f"/ledger/proof/inclusion?index={row['index']}&size={size}",
                },
            ],
        }
    ]
    return res


async def search_audit_events(request: web.Request) -> web.Response:
    """Auditors search every event; a patient the events about themself."""
    p = smart_principal(request, "AuditEvent", "s")
    s = parse_search(request, RESOURCES["AuditEvent"])
    filters = _audit_filters(s, p)
    wanted_type = s.one("type")
    if wanted_type is not None:
        wanted_type = _code(wanted_type, _TYPE_SYSTEMS, "type")
    codec, now = request.app[CURSOR_KEY], request.app[AUTHORITY].now()
    search = s.canonical() + f"&subject={filters.subject or ''}"
    after = -1
    if s.cursor is not None:
        c = codec.decode(s.cursor, search, p.sub, now)
        if len(c.pos) != 1:
            raise BadRequest("_cursor is not a cursor of this search")
        after = c.pos[0]
    note, size, nxt, rows = await _proved_page(request.app, filters, after, s.count)
    data = {
        "filters": filters.describe(),
        "rows": len(rows),
        "checkpoint_size": size,
        "cursor": after,
        "api": "fhir",
    }
    subject = filters.subject if p.role == "patient" else None
    await record(request.app, Event.now(EventType.AUDIT_QUERY, p.sub, subject=subject, data=data))
    checkpoint = note.decode()
    events = [_with_proof(r, size, checkpoint) for r in rows]
    if wanted_type is not None:
        events = [e for e in events if e["type"]["code"] == wanted_type]
    links = {}
    if nxt is not None:
        links["next"] = codec.encode(Cursor((int(nxt),)), search, p.sub, now)
    return fhir_response(searchset(request, events, links))


def _stamp(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _as_granted(c: Consent) -> dict[str, Any]:
    """A stored consent as the ``consent.granted`` event the export maps."""
    data = {"consent": c.id, "grantee": c.grantee, "scopes": list(c.scopes), "until": c.until}
    return {
        "type": "consent.granted",
        "subject": c.patient,
        "time": _stamp(c.created),
        "data": data,
    }


async def search_consents(request: web.Request) -> web.Response:
    """A patient's own consents; a provider's, those naming them or every provider; an
    auditor's, any patient's (named, and the search recorded as an audit query)."""
    p = smart_principal(request, "Consent", "s")
    s = parse_search(request, RESOURCES["Consent"])
    patient = s.one("patient")
    if patient is not None:
        patient = _subject(patient, "patient")
    status = s.one("status")
    if status is not None and status not in ("active", "inactive"):
        raise BadRequest("status is active or inactive")
    actor = s.one("actor")
    if actor is not None and actor != ROLE_GRANTEE:
        actor = _subject(actor, "actor")
    store = request.app[CONSENTS]
    now = request.app[AUTHORITY].now()
    if p.role == "patient":
        if patient not in (None, p.sub):
            raise Forbidden("a patient sees only their own consents")
        found = await asyncio.to_thread(store.of_patient, p.sub)
    elif p.role == "provider":
        found = await asyncio.to_thread(store.naming, (p.sub, ROLE_GRANTEE))
    else:
        if patient is None:
            raise BadRequest("patient is required: whose consents to search")
        found = await asyncio.to_thread(store.of_patient, patient)
        data = {"consents_of": patient, "rows": len(found), "api": "fhir"}
        await record(
            request.app, Event.now(EventType.AUDIT_QUERY, p.sub, subject=patient, data=data)
        )
    resources = []
    for c in found:
        if (patient and c.patient != patient) or (actor and c.grantee != actor):
            continue
        res = consent_resource(_as_granted(c), now=now, revoked=c.revoked)
        if res is not None and status in (None, res["status"]):
            resources.append(res)
    codec = request.app[CURSOR_KEY]
    search = s.canonical()
    start = 0
    if s.cursor is not None:
        c0 = codec.decode(s.cursor, search, p.sub, now)
        if len(c0.pos) != 1:
            raise BadRequest("_cursor is not a cursor of this search")
        start = c0.pos[0]
    page = resources[start : start + s.count]
    links = {}
    if start + s.count < len(resources):
        links["next"] = codec.encode(Cursor((start + s.count,)), search, p.sub, now)
    return fhir_response(searchset(request, page, links))
