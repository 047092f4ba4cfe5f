"""Vitals endpoints: devices post signed batches; the patient, or a provider with consent,
reads them (JSON or FHIR); an admin erases a patient's data. Thin: the rules live in the
modules beside this one."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from aiohttp import web

from ledger.events import EventType

from ..appkeys import AUTHORITY, CONFIG, CONSENT_GUARD, VITALS
from ..auth.enroll import is_subject_id
from ..auth.http import authenticate, origin, read_body, read_json
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

__all__ = ["setup"]

JOSE = "application/jose"
MAX_LIMIT = 10_000
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


async def get_vitals(request: web.Request) -> web.Response:
    p = authenticate(request)
    p.require("patient", "provider", scope="vitals.read")
    pid = _patient(request)
    q = _query(request)
    await request.app[CONSENT_GUARD].authorize(p, pid, "vitals.read", "treatment")
    store = request.app[VITALS].intake.store
    since, until = q["since"], q["until"]
    # A reading is accepted at most the skew cap before, and the age cap after, its time:
    # so its arrival lies in this window, whatever the configuration was when it came.
    lo = int(since.timestamp()) - VITALS_FUTURE_SKEW_CAP if since else 0
    hi = int(until.timestamp()) + VITALS_MAX_AGE_CAP if until else 2**62
    after = q["after"]
    fetch = q["limit"] + 1  # every batch has a reading, so this many fill a page
    # Read your writes: a batch this replica answered with a receipt is readable here.
    await request.app[VITALS].intake.writer.indexes_written()
    try:
        batches = await asyncio.to_thread(store.read, pid, lo, hi, after[0] - 1, fetch)
    except Erased as e:
        raise Gone("this patient's vitals were erased") from e
    rows: list[dict[str, Any]] = []
    # Each batch's device JWS, so the reader can check the device signature themself.
    signed: dict[str, str] = {}
    last: tuple[int, int] | None = None  # position of the last reading looked at
    full = False
    for meta, content in batches:
        for i, r in enumerate(content["readings"]):
            if (meta.seq, i) <= after:
                continue
            if len(rows) == q["limit"]:
                full = True
                break
            last = (meta.seq, i)
            if q["code"] and r["code"] != q["code"]:
                continue
            if since or until:
                t = parse_time(r["time"])
                if (since and t < since) or (until and t > until):
                    continue
            signed[f"{meta.device}/{meta.batch_id}"] = content["jws"]
            rows.append(
                {
                    **r,
                    "device": meta.device,
                    "batch_id": meta.batch_id,
                    "ledger_index": meta.ledger_index,
                    "_idx": i,
                }
            )
        if full:
            break
    # More may follow when the page filled up, or when every fetched batch was read.
    more = full or len(batches) == fetch
    next_cursor = f"{last[0]}.{last[1]}" if more and last is not None else None
    if q["format"] == "fhir":
        obs = [observation(r, pid, r["device"], r["batch_id"], r["_idx"]) for r in rows]
        bundle = searchset(obs)
        if next_cursor:
            # FHIR R4 paging: an absolute URL, the same search with the cursor moved.
            page = request.rel_url.update_query(after=next_cursor)
            bundle["link"] = [{"relation": "next", "url": f"{origin(request)}{page}"}]
        return web.json_response(bundle, content_type=FHIR_JSON)
    for r in rows:
        del r["_idx"]
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
