"""Supply-chain endpoints: a party posts a signed EPCIS document; anyone the gateway knows
in a role that handles products (a party, a provider, an admin, an auditor) reads a unit's
custody with the ledger's proofs. Thin: the rules live in the modules beside this one."""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from ..appkeys import AUTHORITY, CLOCK, CONFIG, DATABASE, LOG, VITALS
from ..auth.http import DEVICE_PROVENANCE, authenticate, read_body
from ..auth.jwk import HolderKey
from ..errors import BadRequest, NotFound, UnsupportedMediaType
from ..recorder import record
from .devices import DeviceGuard
from .document import Limits, check_jws_text
from .gs1 import DIGITAL_LINK, InvalidIdentifier, parse_item
from .provenance import check_device
from .rules import Party
from .service import RECONCILE_GRACE, Supply, verdict
from .store import SupplyStore
from .units import unit_proof

__all__ = ["MAX_DOCUMENT", "SUPPLY", "setup"]

JOSE = "application/jose"
#: Largest signed document accepted (bytes), whatever ``max_body_size`` allows.
MAX_DOCUMENT = 4 * 1024 * 1024
#: Events shown in one unit's history (the newest beyond this are cut, said by ``truncated``).
MAX_HISTORY = 200
SUPPLY = web.AppKey("supply", Supply)


async def _party(request: web.Request, sub: str) -> tuple[Party, HolderKey]:
    subject = await asyncio.to_thread(request.app[AUTHORITY].store.subject, sub)
    if subject is None or subject.role != "party":  # revoked ones never authenticate
        raise NotFound("no such party")
    attrs = subject.attrs
    return Party(sub, str(attrs["gln"]), str(attrs["kind"])), HolderKey.from_jwk(subject.jwk)


async def post_events(request: web.Request) -> web.Response:
    p = authenticate(request)
    p.require("party", scope="supply.write")
    if request.content_type != JOSE:
        raise UnsupportedMediaType(f"send the signed EPCIS document as {JOSE} (a compact JWS)")
    limit = min(request.app[CONFIG].max_body_size, MAX_DOCUMENT)
    jws = check_jws_text(await read_body(request, limit))
    party, key = await _party(request, p.sub)
    accepted, fresh = await request.app[SUPPLY].submit(party, key, jws)
    events = []
    for a in accepted:
        row: dict[str, Any] = {"event_id": a.event_id, "receipt": a.receipt.to_json()}
        if a.holders:
            row["holders"] = list(a.holders)  # a recall: who holds the units
        events.append(row)
    body = {"events": events}
    return web.json_response(body, status=201 if fresh else 200)


def item_param(raw: str) -> str:
    """The unit a path names, in normal form: a Digital Link URI or EPC URN (percent-encoded
    or not), or the Digital Link path alone (``01/{gtin}/21/{serial}``). Raises NotFound."""
    value = urllib.parse.unquote(raw)
    if value.startswith(("01/", "00/")):
        value = f"{DIGITAL_LINK}/{value}"
    try:
        return parse_item(value).uri
    except InvalidIdentifier as e:
        raise NotFound(f"not a unit this gateway names: {e}") from e


async def get_item(request: web.Request) -> web.Response:
    p = authenticate(request)
    p.require("party", "provider", "admin", "auditor")
    if p.role == "party":
        p.require(scope="supply.read")
    if len(request.match_info["path"]) > 1024:
        raise BadRequest("an identifier is at most 1024 characters")
    uri = item_param(request.match_info["path"])
    supply = request.app[SUPPLY]
    store = supply.store
    state = await asyncio.to_thread(store.item, uri)
    today = supply.today()
    body: dict[str, Any] = {"item": uri, "status": verdict(state, today)}
    if state is None:
        return web.json_response(body)
    history = await asyncio.to_thread(store.history, uri, MAX_HISTORY + 1)
    log = request.app[LOG]
    rows = []
    for h in history[:MAX_HISTORY]:
        idx = h["ledger_index"]
        if idx is not None:
            # Each against the newest checkpoint, with the leaf itself: checkable offline
            # with the log's vkey alone (leaf hash, inclusion, signature).
            h["receipt"] = (await asyncio.to_thread(log.receipt_for, idx)).to_json()
            (entry,) = await asyncio.to_thread(log.store.read_entries, idx, idx + 1)
            h["entry"] = base64.b64encode(entry).decode()
            data = json.loads(entry)["data"]
            if uri not in data.get("items", []) and uri != data.get("parent"):
                # Concerned as one of the entry's moved units: its proof among them.
                units = await asyncio.to_thread(store.event_units, h["event_id"])
                named = {*data.get("items", []), data.get("parent")}
                h["moved_proof"] = unit_proof(uri, [u for u in units if u not in named])
        rows.append(h)
    body.update(
        {
            "kind": state.kind,
            "key": state.key,
            "custodian": state.custodian,
            "commissioned_by": state.commissioned_by,
            "in_transit_to": state.in_transit_to,
            "parent": state.parent,
            "contents": await asyncio.to_thread(store.children, uri),
            "lot": state.lot,
            "expiry": state.expiry,
            "suspect": state.suspect,
            "events": rows,
            "truncated": len(history) > MAX_HISTORY,
        }
    )
    return web.json_response(body)


async def _supply_ctx(app: web.Application) -> AsyncIterator[None]:
    store = SupplyStore(await asyncio.to_thread(app[DATABASE].open, "supply"))
    supply = Supply(store, app[LOG], lambda ev: record(app, ev), app[CLOCK], Limits())
    # Embedded, nothing else uses the store and nothing is in flight yet: settle all.
    await supply.reconcile(0 if app[DATABASE].embedded else RECONCILE_GRACE)
    app[SUPPLY] = supply
    required = app[CONFIG].device_provenance
    auth = app[AUTHORITY]

    def enrolled(jkt: str) -> bool:  # blocking: called in check_device's thread
        sid = auth.store.subject_by_jkt(jkt)
        s = None if sid is None else auth.store.subject(sid)
        return s is not None and s.revoked is None and s.id not in auth.revoked_subjects

    app[DEVICE_PROVENANCE] = lambda udi, jkt: check_device(supply, udi, required, jkt, enrolled)
    vitals = app.get(VITALS)
    if vitals is not None:
        # Devices recalled after their enrollment: their batches are refused.
        vitals.checks.append(DeviceGuard(supply, vitals.streamer, app[CLOCK]).check)
    yield


def setup(app: web.Application) -> None:
    app.cleanup_ctx.append(_supply_ctx)
    app.router.add_post("/v1/supply/events", post_events)
    app.router.add_get("/v1/supply/items/{path:.+}", get_item)
