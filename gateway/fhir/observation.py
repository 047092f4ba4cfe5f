"""``/fhir/Observation`` (search, read) and ``/fhir/Provenance?target=Observation/{id}``.

No reading is fetched here: every one goes through ``gateway.vitals.http.read_readings``,
the read path of ``/v1/patients/{id}/vitals`` (the same consent check and its ledger record,
the same store query). This module maps parameters in and Observations out, with the
shapes of ``gateway.vitals.fhir`` and ``gateway.audit.fhir``.

An Observation's id says where the reading is: ``<patient>-<batch seq>-<index>``, so a read
by id is one store read of that patient's record (and one consent check).
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from aiohttp import web

from ..appkeys import AUTHORITY, LOG
from ..audit.fhir import provenance_resource
from ..auth.enroll import is_subject_id
from ..auth.tokens import Principal
from ..errors import BadRequest, NotFound
from ..vitals.codes import BP_PANEL, CODES
from ..vitals.fhir import _PROFILES as PROFILES
from ..vitals.fhir import CATEGORY, LOINC, observation
from ..vitals.http import read_readings
from .common import fhir_response, no_params, searchset, smart_principal
from .cursor import CURSOR_KEY, Cursor
from .params import RESOURCES, Search, parse_date, parse_search

__all__ = ["read_observation", "search_observation", "search_provenance"]

OBS_ID = re.compile(r"([0-9a-f]{32})-([0-9]{1,18})-([0-9]{1,6})", re.ASCII)
_FIRST = (0, -1)
_LAST = (2**62, 0)


def _token(value: str, system: str, name: str) -> str:
    """A token parameter's code, its system (if given) checked."""
    if "|" in value:
        given, value = value.split("|", 1)
        if given and given != system:
            raise BadRequest(f"{name} takes codes of {system}")
    return value


def _patient(s: Search, p: Principal) -> str:
    """The patient searched: named, or the caller themself. A patient naming another is
    left to the consent guard, which refuses and records it."""
    pid = s.one("patient")
    if pid is None:
        if p.role == "patient":
            return p.sub
        raise BadRequest("patient is required: the patient whose observations to search")
    pid = pid.removeprefix("Patient/")
    if not is_subject_id(pid, "patient"):
        raise BadRequest("patient is a patient's subject id (pat:...)")
    return pid


def _fhir_observation(row: dict[str, Any], pid: str) -> dict[str, Any]:
    obs = observation(row, pid, row["device"], row["batch_id"], row["_idx"])
    # Resolvable: the id locates the reading (the hash id of the /v1 export does not).
    obs["id"] = f"{pid.removeprefix('pat:')}-{row['_seq']}-{row['_idx']}"
    return obs


def _category(value: str | None) -> str | None:
    if value is None:
        return None
    code = _token(value, CATEGORY, "category")
    if code not in ("vital-signs", "laboratory"):
        raise BadRequest("category is vital-signs or laboratory")
    return code


def _inclusive(pos: tuple[int, ...], back: bool) -> tuple[int, int]:
    """The position just before ``pos`` in the direction read: a read from it includes
    ``pos`` itself."""
    return (pos[0], pos[1] + 1) if back else (pos[0], pos[1] - 1)


async def search_observation(request: web.Request) -> web.Response:
    p = smart_principal(request, "Observation", "s")
    s = parse_search(request, RESOURCES["Observation"])
    pid = _patient(s, p)
    codes: frozenset[str] | None = None
    code = s.one("code")
    if code is not None:
        code = _token(code, LOINC, "code")
        if code not in CODES and code != BP_PANEL:
            raise BadRequest("code is one of the accepted LOINC vital-sign codes")
        # A token matches any coding: an SpO2 reading (59408-5) carries its profile's
        # 2708-6 too (gateway.vitals.fhir), so a search for 2708-6 finds it.
        codes = frozenset({code} | {c for c, (_, fixed) in PROFILES.items() if fixed == code})
    category = _category(s.one("category"))
    dates = parse_date(list(s.values.get("date", ())))
    desc = s.sort == "-date"
    codec, now = request.app[CURSOR_KEY], request.app[AUTHORITY].now()
    search = s.canonical() + f"&patient={pid}"
    if s.cursor is None:
        c = Cursor(_LAST if desc else _FIRST, back=desc)
    else:
        c = codec.decode(s.cursor, search, p.sub, now)
        if len(c.pos) != 2 or c.rel not in ("next", "prev"):
            raise BadRequest("_cursor is not a cursor of this search")
    rows, last = await read_readings(
        request.app,
        p,
        pid,
        code=codes,
        since=dates.since,
        until=dates.until,
        limit=s.count,
        after=(c.pos[0], c.pos[1]),
        back=c.back,
    )
    if c.rel == "prev":
        rows.reverse()  # read away from the sort order; shown in it
    obs = [_fhir_observation(r, pid) for r in rows]
    if category is not None:
        obs = [o for o in obs if o["category"][0]["coding"][0]["code"] == category]
    forward = desc  # reading in the sort order walks the store backwards when descending
    links: dict[str, str] = {}
    if c.rel == "next" and last is not None:
        links["next"] = codec.encode(Cursor(last, forward), search, p.sub, now)
    elif c.rel == "prev":
        links["next"] = codec.encode(
            Cursor(_inclusive(c.pos, forward), forward), search, p.sub, now
        )
    if c.rel == "prev" and last is not None:
        links["previous"] = codec.encode(Cursor(last, not forward, "prev"), search, p.sub, now)
    elif c.rel == "next" and s.cursor is not None:
        first = (rows[0]["_seq"], rows[0]["_idx"]) if rows else _inclusive(c.pos, not forward)
        links["previous"] = codec.encode(Cursor(first, not forward, "prev"), search, p.sub, now)
    return fhir_response(searchset(request, obs, links))


def _locate(oid: str) -> tuple[str, int, int]:
    m = OBS_ID.fullmatch(oid)
    if m is None:
        raise NotFound("no such Observation")
    return f"pat:{m[1]}", int(m[2]), int(m[3])


async def _one(request: web.Request, p: Principal, oid: str) -> dict[str, Any]:
    """The reading an Observation id names, through the shared read path (consent first).
    Raises NotFound, Forbidden, Gone."""
    pid, seq, idx = _locate(oid)
    rows, _ = await read_readings(request.app, p, pid, limit=1, after=(seq, idx - 1))
    if not rows or (rows[0]["_seq"], rows[0]["_idx"]) != (seq, idx):
        raise NotFound("no such Observation")
    return rows[0]


async def read_observation(request: web.Request) -> web.Response:
    p = smart_principal(request, "Observation", "r")
    no_params(request)
    oid = request.match_info["id"]
    row = await _one(request, p, oid)
    return fhir_response(_fhir_observation(row, _locate(oid)[0]))


async def search_provenance(request: web.Request) -> web.Response:
    """The Provenance of the batch an Observation came in: the device signed it, the ledger
    holds its event (gateway.audit.fhir's shape, with the Observation as a target)."""
    p = smart_principal(request, "Provenance", "s")
    s = parse_search(request, RESOURCES["Provenance"])
    target = s.one("target")
    if target is None:
        raise BadRequest("target is required: Observation/{id}")
    oid = target.rsplit("/fhir/", 1)[-1].removeprefix("Observation/")
    if not OBS_ID.fullmatch(oid):
        raise BadRequest("target is Observation/{id}")
    if s.cursor is not None:
        raise BadRequest("_cursor is not a cursor of this search")
    row = await _one(request, p, oid)
    index = int(row["ledger_index"])
    log = request.app[LOG]
    (raw,) = await asyncio.to_thread(log.store.read_entries, index, index + 1)
    prov = provenance_resource(index, json.loads(raw))
    if prov is None:  # the batch's index names another kind of event: not served
        raise NotFound("no Provenance for this Observation")
    prov["target"].append({"reference": f"Observation/{oid}"})
    return fhir_response(searchset(request, [prov], {}))
