"""The auditor API: filtered, paginated ledger events, each with an inclusion proof against
one signed checkpoint returned with the page. Every query is itself a ledger event."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

from aiohttp import web

from ledger.checkpoint import Checkpoint
from ledger.events import Event, EventType
from ledger.merkle import inclusion_proofs_for, leaf_hash
from ledger.note import parse_note

from ..appkeys import AUDIT_INDEX, AUTHORITY, CONSENTS, LOG
from ..auth.enroll import is_subject_id
from ..auth.http import authenticate
from ..auth.names import names_of
from ..auth.tokens import Forbidden
from ..errors import BadRequest, NotFound, Unavailable
from ..fhir_version import FHIR_JSON
from ..recorder import record
from ..rfc3339 import time_param
from .fhir import audit_event, consent_resource, provenance_resource
from .index import Filters, IndexMismatch

__all__ = ["setup"]


MAX_LIMIT = 1000
DEFAULT_LIMIT = 100


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _filters(q: Any) -> Filters:
    values: dict[str, Any] = {}
    for name in ("type", "actor", "subject", "session"):
        v = q.get(name)
        if v is not None:
            if not v or len(v) > 128 or not v.isprintable():
                raise BadRequest(f"{name!r} must be 1-128 printable characters")
            values[name] = v
    for name, key in (("since", "since_ms"), ("until", "until_ms")):
        v = q.get(name)
        if v is not None:
            values[key] = int(time_param(v, name).timestamp() * 1000)
    return Filters(**values)


def _int(q: Any, name: str, default: int, lo: int, hi: int) -> int:
    v = q.get(name)
    if v is None:
        return default
    if not v.isascii() or not v.isdigit() or len(v) > 19 or not lo <= int(v) <= hi:
        raise BadRequest(f"{name!r} must be an integer in {lo}..{hi}")
    return int(v)


def _read_events(store: Any, idxs: list[int]) -> list[bytes]:
    return [store.read_entries(i, i + 1)[0] for i in idxs]


def _revocations(store: Any, events: list[dict[str, Any]]) -> dict[str, int | None]:
    """When each consent granted in ``events`` was revoked (None: not revoked)."""
    out: dict[str, int | None] = {}
    for ev in events:
        data = ev.get("data")
        if ev.get("type") == "consent.granted" and isinstance(data, dict):
            c = store.get(str(data.get("consent")))
            out[str(data.get("consent"))] = c.revoked if c is not None else None
    return out


async def _checkpoint_and_index(app: web.Application) -> tuple[bytes, int]:
    """The newest checkpoint, with the audit index brought up to its size. Over a shared
    log (PostgreSQL) the log's view is first refreshed from the store: an answer covers
    every event any replica had committed when it was asked, not this replica's last view
    of the tree (which may be ``refresh_interval`` old, or older while this replica is
    busy)."""
    log = app[LOG]
    if log.store.shared:
        await asyncio.to_thread(log.refresh)
    note = log.checkpoint()
    size = Checkpoint.parse(parse_note(note).text).size
    try:
        await app[AUDIT_INDEX].run(app[AUDIT_INDEX].catch_up, log.store, size)
    except IndexMismatch as e:
        raise Unavailable(f"the audit index needs a rebuild: {e}") from e
    return note, size


async def _proved_page(
    app: web.Application, filters: Filters, after: int, limit: int
) -> tuple[bytes, int, str | None, list[dict[str, Any]]]:
    """One page of matching rows, each with its inclusion proof against one checkpoint.

    Returns the checkpoint, its size, the cursor of the next page (None on the last one)
    and the rows that the ledger's own bytes confirm match the filter.
    """
    log = app[LOG]
    note, size = await _checkpoint_and_index(app)
    # One row more than asked tells whether another page exists.
    idxs = await app[AUDIT_INDEX].run(app[AUDIT_INDEX].query, filters, after, size, limit + 1)
    nxt = str(idxs[limit - 1]) if len(idxs) > limit else None
    idxs = idxs[:limit]
    raws = await asyncio.to_thread(_read_events, log.store, idxs)
    proofs = await asyncio.to_thread(inclusion_proofs_for, idxs, size, log.store.read_nodes)
    rows = []
    for i, raw, proof in zip(idxs, raws, proofs, strict=True):
        event = json.loads(raw)
        # Re-checked against the ledger's own bytes: the index chooses, it cannot vouch.
        if not filters.matches(event):
            continue
        rows.append(
            {
                "index": i,
                "leaf_hash": _b64(leaf_hash(raw)),
                # The exact leaf bytes: a verifier hashes these, not a re-encoding of
                # ``event`` (which a JSON parser may not round-trip, e.g. big integers).
                "leaf": _b64(raw),
                "event": event,
                # ``proof``: the old spelling, sent until 0.2.0 (docs/api-changes.md).
                "inclusion_proof": (path := [_b64(h) for h in proof]),
                "proof": path,
            }
        )
    return note, size, nxt, rows


async def audit_events(request: web.Request) -> web.Response:
    p = authenticate(request)
    p.require("auditor", scope="audit")
    q = request.query
    filters = _filters(q)
    limit = _int(q, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    # The cursor is the last leaf index of the previous page.
    after = _int(q, "cursor", -1, 0, (1 << 62)) if "cursor" in q else -1
    note, size, nxt, rows = await _proved_page(request.app, filters, after, limit)
    data = {
        "filters": filters.describe(),
        "rows": len(rows),
        "checkpoint_size": size,
        "cursor": after,
    }
    receipt = await record(request.app, Event.now(EventType.AUDIT_QUERY, p.sub, data=data))
    # Compliance staff see who each row's actor and subject are; beside the rows, not in
    # them: a row is the proved event, byte for byte.
    people = (r["event"].get(k) for r in rows for k in ("actor", "subject"))
    return web.json_response(
        {
            "checkpoint": note.decode(),
            "size": size,
            "rows": rows,
            "names": await names_of(request.app, people),
            "next": nxt,
            "query_receipt": receipt.to_json(),
        }
    )


EXPORT_PAGE = 1000
_CONTENT = {
    "jsonl": "application/x-ndjson",
    "csv": "text/csv",
    "fhir": FHIR_JSON,
}
_CSV_FIELDS = ("time", "type", "actor", "subject", "session")


def _csv_cell(value: Any) -> str:
    text = "" if value is None else str(value)
    # Spreadsheet formula injection: a leading = + - @ is made literal.
    if text[:1] in ("=", "+", "-", "@"):
        text = "'" + text
    if any(c in text for c in ',"\n\r'):
        text = '"' + text.replace('"', '""') + '"'
    return text


async def _write_export(
    request: web.Request,
    resp: web.StreamResponse,
    fmt: str,
    filters: Filters,
    note: bytes,
    size: int,
) -> None:
    """Every matching row, one index page at a time, in ``fmt``."""
    log = request.app[LOG]
    index = request.app[AUDIT_INDEX]
    if fmt == "jsonl":
        await resp.write(json.dumps({"checkpoint": note.decode(), "size": size}).encode() + b"\n")
    elif fmt == "csv":
        await resp.write(b"index," + ",".join(_CSV_FIELDS).encode() + b",leaf_hash\r\n")
    else:
        await resp.write(b'{"resourceType":"Bundle","type":"collection","entry":[')
    after, first = -1, True
    while True:
        idxs = await index.run(index.query, filters, after, size, EXPORT_PAGE)
        if not idxs:
            break
        raws = await asyncio.to_thread(_read_events, log.store, idxs)
        proofs: list[list[bytes]] = []
        if fmt == "jsonl":
            proofs = await asyncio.to_thread(inclusion_proofs_for, idxs, size, log.store.read_nodes)
        out: list[bytes] = []
        events = [json.loads(raw) for raw in raws]
        revoked: dict[str, int | None] = {}
        if fmt == "fhir":
            # Consents are exported as they stand now: revoked or expired ones inactive.
            revoked = await asyncio.to_thread(_revocations, request.app[CONSENTS], events)
            now = request.app[AUTHORITY].now()
        for k, (i, raw, event) in enumerate(zip(idxs, raws, events, strict=True)):
            if not filters.matches(event):
                continue
            lh = _b64(leaf_hash(raw))
            if fmt == "jsonl":
                row = {
                    "index": i,
                    "leaf_hash": lh,
                    "event": event,
                    "inclusion_proof": (path := [_b64(h) for h in proofs[k]]),
                    "proof": path,
                }
                out.append(json.dumps(row).encode() + b"\n")
            elif fmt == "csv":
                cells = [str(i), *(_csv_cell(event.get(f)) for f in _CSV_FIELDS), _csv_cell(lh)]
                out.append(",".join(cells).encode() + b"\r\n")
            else:
                resources = [audit_event(i, lh, event)]
                cid = str(event.get("data", {}).get("consent"))
                consent = consent_resource(event, now=now, revoked=revoked.get(cid))
                for extra in (consent, provenance_resource(i, event)):
                    if extra is not None:
                        resources.append(extra)
                for res in resources:
                    out.append((b"" if first else b",") + json.dumps({"resource": res}).encode())
                    first = False
        await resp.write(b"".join(out))
        after = idxs[-1]
        if len(idxs) < EXPORT_PAGE:
            break
    if fmt == "fhir":
        await resp.write(b"]}")


async def audit_export(request: web.Request) -> web.StreamResponse:
    """Stream every matching event as JSON Lines (with proofs), CSV or a FHIR Bundle of
    AuditEvents, one index page at a time: nothing is loaded whole into memory."""
    p = authenticate(request)
    p.require("auditor", scope="audit")
    q = request.query
    fmt = q.get("format", "jsonl")
    if fmt not in _CONTENT:
        raise BadRequest("format must be jsonl, csv or fhir")
    filters = _filters(q)
    note, size = await _checkpoint_and_index(request.app)
    data = {"filters": filters.describe(), "export": fmt, "checkpoint_size": size}
    receipt = await record(request.app, Event.now(EventType.AUDIT_QUERY, p.sub, data=data))
    resp = web.StreamResponse(
        headers={
            "Content-Type": _CONTENT[fmt],
            "Telegate-Checkpoint-Size": str(size),
            "Telegate-Query-Ledger-Index": str(receipt.index),
        }
    )
    await resp.prepare(request)
    # An error from here on cuts the connection (problem_middleware): a truncated export,
    # never a complete-looking one.
    await _write_export(request, resp, fmt, filters, note, size)
    await resp.write_eof()
    return resp


_ROLE_OF = {
    "pat": "patient",
    "prov": "provider",
    "dev": "device",
    "aud": "auditor",
    "adm": "admin",
    "gw": "system",
}


async def access_report(request: web.Request) -> web.Response:
    """Who did what with a patient's record: every event about the patient by someone
    else, with who, role, when, purpose and the consent or emergency access it relied on,
    each row proved. The patient sees their own; auditors see anyone's."""
    p = authenticate(request)
    patient = request.match_info["patient"]
    if not is_subject_id(patient, "patient"):
        raise NotFound("no such patient")
    if p.role != "auditor" and p.sub != patient:
        raise Forbidden("a patient sees only their own access report")
    q = request.query
    fmt = q.get("format", "json")
    if fmt not in ("json", "fhir"):
        raise BadRequest("format must be json or fhir")
    limit = _int(q, "limit", MAX_LIMIT, 1, MAX_LIMIT)
    after = _int(q, "cursor", -1, 0, (1 << 62)) if "cursor" in q else -1
    note, size, nxt, rows = await _proved_page(request.app, Filters(subject=patient), after, limit)
    accesses = []
    for row in rows:
        ev = row["event"]
        data = ev.get("data") if isinstance(ev.get("data"), dict) else {}
        actor = str(ev.get("actor", ""))
        role = _ROLE_OF.get(actor.split(":", 1)[0], "unknown")
        # Not disclosures: the patient's own actions, the gateway's (tokens issued to the
        # patient) and devices' (readings flowing in, a device enrolling itself).
        if actor == patient or role in ("system", "device"):
            continue
        accesses.append(
            {
                "index": row["index"],
                "time": ev.get("time"),
                "who": actor,
                "role": role,
                "action": ev.get("type"),
                "purpose": data.get("purpose"),
                "consent": data.get("consent"),
                "break_the_glass": bool(data.get("break_glass"))
                or ev.get("type") == EventType.EMERGENCY_ACCESS,
                "leaf_hash": row["leaf_hash"],
                "leaf": row["leaf"],
                "inclusion_proof": row["inclusion_proof"],
                "proof": row["inclusion_proof"],
                "event": ev,
            }
        )
    data = {"access_report": patient, "rows": len(accesses), "checkpoint_size": size}
    receipt = await record(
        request.app, Event.now(EventType.AUDIT_QUERY, p.sub, subject=patient, data=data)
    )
    if fmt == "fhir":
        bundle = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [
                {"resource": audit_event(a["index"], a["leaf_hash"], a["event"])} for a in accesses
            ],
        }
        return web.json_response(bundle, content_type=FHIR_JSON)
    # Named: those who used the record (to the patient, nobody else); an auditor also
    # sees whose report it is.
    people = [a["who"] for a in accesses] + ([patient] if p.role == "auditor" else [])
    return web.json_response(
        {
            "patient": patient,
            "checkpoint": note.decode(),
            "size": size,
            "accesses": accesses,
            "names": await names_of(request.app, people),
            "next": nxt,
            "query_receipt": receipt.to_json(),
        }
    )


def setup(app: web.Application) -> None:
    app.router.add_get("/v1/audit/events", audit_events)
    app.router.add_get("/v1/patients/{patient}/access-report", access_report)
    app.router.add_get("/v1/audit/export", audit_export)
