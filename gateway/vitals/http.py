"""Vitals endpoints: devices post signed batches; the patient, or a provider with consent,
reads them (JSON or FHIR); an admin erases a patient's data. Thin: the rules live in the
modules beside this one."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import re
from typing import Any

from aiohttp import web

from ledger.events import EventType

from ..appkeys import AUTHORITY, CONFIG, CONSENT_GUARD, VITALS
from ..auth.enroll import is_subject_id
from ..auth.http import authenticate, origin, read_body, read_json
from ..auth.tokens import Principal
from ..config import VITALS_FUTURE_SKEW_CAP, VITALS_MAX_AGE_CAP
from ..errors import BadRequest, Conflict, NotFound, UnsupportedMediaType
from ..fhir_version import FHIR_JSON
from ..recorder import event
from ..rfc3339 import parse_time, time_param
from .codes import BP_PANEL, CODES
from .fhir import observation, searchset
from .intake import Gone
from .posting import compact_jws, post_batch
from .store import Erased

__all__ = ["read_readings", "setup"]

JOSE = "application/jose"
MAX_LIMIT = 10_000
#: Batches read by a page's first store read (read_readings reads more as it needs them).
FIRST_CHUNK = 2
REASONS = ("patient_request", "legal_order", "retention_expired", "entered_in_error")
REFERENCE = re.compile(r"[A-Za-z0-9._:-]{1,64}")  # fullmatch: "$" lets a final "\n" through
LIMIT = re.compile(r"[0-9]{1,6}", re.ASCII)
CURSOR = re.compile(r"([0-9]{1,18})(?:\.(-?[0-9]{1,6})?)?", re.ASCII)  # as in the openapi


async def post_vitals(request: web.Request) -> web.Response:
    p = authenticate(request)
    p.require("device", scope="vitals.write")
    if request.content_type != JOSE:
        raise UnsupportedMediaType(f"send the signed batch as {JOSE} (a compact JWS)")
    raw = await read_body(request, request.app[CONFIG].max_body_size)
    lookup = request.app[AUTHORITY].store.subject
    posted = await post_batch(request.app[VITALS], lookup, p.sub, compact_jws(raw))
    return web.json_response(posted.body, status=posted.status)


def _patient(request: web.Request) -> str:
    pid = request.match_info["id"]
    if not is_subject_id(pid, "patient"):
        raise NotFound("no such patient")
    return pid


def _query(request: web.Request) -> dict[str, Any]:
    q = request.query
    out: dict[str, Any] = {}
    code = q.get("code")
    if code is not None and code not in CODES and code != BP_PANEL:
        raise BadRequest("code is one of the accepted LOINC vital-sign codes")
    out["code"] = code
    out["since"] = time_param(q["since"], "since") if "since" in q else None
    out["until"] = time_param(q["until"], "until") if "until" in q else None
    limit = q.get("limit", "1000")
    if not LIMIT.fullmatch(limit) or not 1 <= int(limit) <= MAX_LIMIT:
        raise BadRequest(f"limit is an integer 1..{MAX_LIMIT}")
    out["limit"] = int(limit)
    # Digits only, and few of them: a cursor becomes an SQLite integer (64-bit).
    cursor = CURSOR.fullmatch(q.get("after", "0"))
    if cursor is None:
        raise BadRequest("after is the 'next' cursor of a previous page")
    out["after"] = (int(cursor[1]), int(cursor[2] or -1))
    out["format"] = q.get("format", "json")
    if out["format"] not in ("json", "fhir"):
        raise BadRequest("format is json or fhir")
    return out


Position = tuple[int, int]  # (batch seq, reading index in the batch): a keyset cursor


async def read_readings(
    app: web.Application,
    who: Principal,
    pid: str,
    *,
    code: str | frozenset[str] | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: int = 1000,
    after: Position = (0, -1),
    back: bool = False,
) -> tuple[list[dict[str, Any]], Position | None]:
    """One page of ``pid``'s readings as ``who`` may see them: the consent check (and its
    ledger record) first, then the store. The one read path of ``/v1`` and ``/fhir``.

    ``code``: one LOINC code, or any of a set. Readings come in arrival order after the
    position ``after`` (``back``: in reverse arrival order, before it). Each row is the
    stored reading with ``device``, ``batch_id``, ``ledger_index``, ``_seq`` and ``_idx``.
    Returns the rows and the position of the last reading looked at when more may follow
    (else None). Raises Forbidden (no consent), Gone (erased)."""
    await app[CONSENT_GUARD].authorize(who, pid, "vitals.read", "treatment")
    store = app[VITALS].intake.store
    codes = frozenset({code}) if isinstance(code, str) else code
    # A reading is accepted at most the skew cap before, and the age cap after, its time:
    # so its arrival lies in this window, whatever the configuration was when it came.
    lo = int(since.timestamp()) - VITALS_FUTURE_SKEW_CAP if since else 0
    hi = int(until.timestamp()) + VITALS_MAX_AGE_CAP if until else 2**62
    # Every batch has a reading, so this many batches fill a page: the most one page reads.
    budget = limit + 1
    # Batches are read (and decrypted) a few at a time, as many as the page still needs at
    # the rate rows came so far: a page of 100 from batches of 1,000 readings reads one
    # batch or two, not 101.
    chunk = min(FIRST_CHUNK, budget)
    # Read your writes: a batch this replica answered with a receipt is readable here.
    await app[VITALS].intake.writer.indexes_written()
    start = after[0] + 1 if back else after[0] - 1
    rows: list[dict[str, Any]] = []
    last: Position | None = None  # position of the last reading looked at
    full = exhausted = False
    scanned = 0
    while True:
        try:
            batches = await asyncio.to_thread(store.read, pid, lo, hi, start, chunk, back)
        except Erased as e:
            raise Gone("this patient's vitals were erased") from e
        scanned += len(batches)
        exhausted = len(batches) < chunk
        for meta, content in batches:
            readings = list(enumerate(content["readings"]))
            for i, r in reversed(readings) if back else readings:
                if ((meta.seq, i) >= after) if back else ((meta.seq, i) <= after):
                    continue
                if len(rows) == limit:
                    full = True
                    break
                last = (meta.seq, i)
                if codes is not None and r["code"] not in codes:
                    continue
                if since or until:
                    t = parse_time(r["time"])
                    if (since and t < since) or (until and t > until):
                        continue
                rows.append(
                    {
                        **r,
                        "device": meta.device,
                        "batch_id": meta.batch_id,
                        "ledger_index": meta.ledger_index,
                        "_seq": meta.seq,
                        "_idx": i,
                        "_jws": content["jws"],
                    }
                )
            if full:
                break
        if full or exhausted or scanned >= budget:
            break
        start = batches[-1][0].seq
        per_batch = len(rows) / scanned
        need = limit - len(rows) + 1  # one more: whether the page is full shows past it
        grow = math.ceil(need / per_batch) if per_batch else 2 * chunk
        chunk = max(1, min(budget - scanned, grow))
    # More may follow when the page filled up, or when the store had more than was read.
    more = full or not exhausted
    return rows, (last if more else None)


async def get_vitals(request: web.Request) -> web.Response:
    p = authenticate(request)
    p.require("patient", "provider", scope="vitals.read")
    pid = _patient(request)
    q = _query(request)
    rows, last = await read_readings(
        request.app,
        p,
        pid,
        code=q["code"],
        since=q["since"],
        until=q["until"],
        limit=q["limit"],
        after=q["after"],
    )
    next_cursor = f"{last[0]}.{last[1]}" if last is not None else None
    # Each batch's device JWS, so the reader can check the device signature themself.
    signed = {f"{r['device']}/{r['batch_id']}": r.pop("_jws") for r in rows}
    if q["format"] == "fhir":
        obs = [observation(r, pid, r["device"], r["batch_id"], r["_idx"]) for r in rows]
        bundle = searchset(obs)
        if next_cursor:
            # FHIR R4 paging: an absolute URL, the same search with the cursor moved.
            page = request.rel_url.update_query(after=next_cursor)
            bundle["link"] = [{"relation": "next", "url": f"{origin(request)}{page}"}]
        return web.json_response(bundle, content_type=FHIR_JSON)
    for r in rows:
        del r["_idx"], r["_seq"]
    return web.json_response(
        {"patient": pid, "readings": rows, "signed": signed, "next": next_cursor}
    )


def check_erasure(body: Any) -> tuple[str, str | None]:
    """``POST /v1/patients/{id}/erase``: the reason (one of REASONS) and the optional
    ticket reference. Raises BadRequest."""
    if not isinstance(body, dict) or set(body) - {"reason", "reference"}:
        raise BadRequest("send reason and optionally reference")
    reason = body.get("reason")
    if not isinstance(reason, str) or reason not in REASONS:
        raise BadRequest(f"reason is one of {', '.join(REASONS)}")
    ref = body.get("reference")
    if ref is not None and not (isinstance(ref, str) and REFERENCE.fullmatch(ref)):
        raise BadRequest("reference is a ticket id of 1-64 characters (A-Z a-z 0-9 . _ : -)")
    return reason, ref


async def erase(request: web.Request) -> web.Response:
    p = authenticate(request)
    p.require("admin", scope="erase")
    pid = _patient(request)
    reason, ref = check_erasure(await read_json(request))
    app = request.app
    if await asyncio.to_thread(app[AUTHORITY].store.subject, pid) is None:
        raise NotFound("no such patient")
    data: dict[str, Any] = {"scope": "vitals", "reason": reason}
    if ref is not None:
        data["reference"] = ref

    def make(batches: int) -> bytes:
        return event(
            app, EventType.PATIENT_ERASED, p.sub, subject=pid, data={**data, "batches": batches}
        ).encode()

    vitals = app[VITALS]
    now = app[AUTHORITY].now()
    try:
        size = vitals.intake.ledger.size  # before the append: where recovery looks first
        n, ev = await asyncio.to_thread(vitals.intake.store.erase, pid, make, now, size)
    except Erased as e:
        raise Conflict("this patient's data was already erased") from e
    receipt = await vitals.intake.record_erasure(pid, ev)
    return web.json_response({"patient": pid, "erased_batches": n, "receipt": receipt.to_json()})


def setup(app: web.Application) -> None:
    app.router.add_post("/v1/vitals", post_vitals)
    app.router.add_get("/v1/patients/{id}/vitals", get_vitals)
    app.router.add_post("/v1/patients/{id}/erase", erase)
