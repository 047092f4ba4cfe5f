"""Accepting a party's signed EPCIS document: verify, validate, apply the custody rules,
store, and put one ledger entry per event; and reading a unit's custody with its proofs.

Order: the events, the document and the units' new states are stored in one transaction
(their ledger leaves with them, not yet indexed, and the ledger's size then); then each leaf
is appended and its index stored. A request is answered only with the ledger's receipts. A
leaf whose append was not answered (a crash, the ledger unavailable) is settled by a retry of
the same document (idempotent by eventID) or at the next start: looked for on the ledger
from the size stored with it, appended only if it is not there, so never recorded twice.
With several replicas a start settles only what is older than ``RECONCILE_GRACE``.

Submissions are serialized per process (one lock): custody decisions read the units'
states, and two documents moving one unit must not both pass. Across replicas the store's
write transaction (``FOR UPDATE`` on PostgreSQL, SQLite's write lock) does the same.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ledger.events import Event, EventType
from ledger.log import Log, Receipt

from ..auth.jwk import HolderKey
from ..clock import stamped
from ..errors import Conflict
from .document import (
    RECALLING,
    Document,
    Limits,
    SupplyEvent,
    parse_document,
    verify_document,
)
from .gs1 import lot_uri
from .rules import Custody, CustodyViolation, ItemState, Loader, Party, Status
from .store import EventRow, SupplyStore
from .units import moved_summary

__all__ = ["RECONCILE_GRACE", "Accepted", "Supply", "verdict"]

log = logging.getLogger("telegate.supply")

Append = Callable[[Event | bytes], Awaitable[Receipt]]
#: Seconds a stored event's append belongs to the request that stored it (as for vitals).
RECONCILE_GRACE = 30


class EventIdReused(Conflict):
    slug = "event-id-reused"
    title = "An eventID already names another event"


@dataclass(frozen=True, slots=True)
class Accepted:
    event_id: str
    receipt: Receipt
    holders: tuple[str, ...] = ()  # a recall's: who holds the recalled units


def _today(clock: Callable[[], float]) -> str:
    return dt.datetime.fromtimestamp(int(clock()), dt.UTC).date().isoformat()


def verdict(s: ItemState | None, today: str) -> str:
    """A unit's status as a verifier reads it: ``unknown`` (never commissioned here),
    ``recalled``, ``suspect`` (a rule was broken about it: see its ``suspect`` list),
    ``decommissioned``, ``expired``, ``dispensed`` or ``active``, first match wins."""
    if s is None:
        return "unknown"
    if s.status == Status.RECALLED:
        return "recalled"
    if s.suspect:
        return "suspect"
    if s.status == Status.DECOMMISSIONED:
        return "decommissioned"
    if s.expiry is not None and s.expiry < today:
        return "expired"
    return s.status


def _data(ev: SupplyEvent, party: Party, doc_hash: str, units: Sequence[str]) -> dict[str, Any]:
    # Product and party identifiers, hashes and the business step: never a patient. The
    # document itself (which a party may extend with anything) stays off the ledger.
    data: dict[str, Any] = {
        "event_hash": ev.event_hash,
        "document": doc_hash,
        "gln": party.gln,
        "event_type": ev.event_type,
        "action": ev.action,
        "biz_step": ev.biz_step,
        "event_time": ev.event_time,
        "items": [it.uri for it in ev.items],
    }
    if ev.parent is not None:
        data["parent"] = ev.parent.uri
    if ev.destination is not None:
        data["destination"] = ev.destination
    if ev.lot is not None:
        data["lot"] = ev.lot
    if ev.expiry is not None:
        data["expiry"] = ev.expiry
    if ev.lots:
        data["lots"] = [lot_uri(k, lot) for k, lot in ev.lots]
    named = {*data["items"], data.get("parent")}
    moved = sorted(set(units) - named)
    if moved:
        # The units concerned beyond those named (a case's contents moving with it, a
        # recalled lot's units): their count and Merkle root, so the entry stays small
        # whatever their number; each unit's history carries its inclusion proof.
        data["moved"] = moved_summary(moved)
    return data


class Supply:
    def __init__(
        self,
        store: SupplyStore,
        ledger: Log,
        append: Append,
        clock: Callable[[], float],
        limits: Limits | None = None,
    ) -> None:
        """``append`` puts an event on ``ledger`` (the recorder, with its metrics)."""
        self.store = store
        self.ledger = ledger
        self._append = append
        self._clock = clock
        self.limits = limits or Limits()
        self._lock = asyncio.Lock()
        #: Told the units whose state this process just changed (committed), e.g. to
        #: forget what a cache says of them (gateway/supply/devices.py).
        self.listeners: list[Callable[[set[str]], None]] = []

    def _changed(self, units: set[str]) -> None:
        for listener in self.listeners:
            listener(units)

    def clock(self) -> float:
        return self._clock()

    def today(self) -> str:
        return _today(self._clock)

    async def submit(self, party: Party, key: HolderKey, jws: str) -> tuple[list[Accepted], bool]:
        """Accept ``jws``, a document signed by ``party``'s ``key``; returns each event's
        receipt, and whether they are new (False: the same events were accepted before).
        Raises InvalidSignature, InvalidDocument, BadRequest, EventIdReused, or
        CustodyViolation (after recording the refusal on the ledger)."""

        def parse() -> Document:
            return parse_document(jws, verify_document(jws, key), self.limits)

        doc = await asyncio.to_thread(parse)
        async with self._lock:
            ids = [e.event_id for e in doc.events]
            known = await asyncio.to_thread(self.store.known, ids)
            if known:
                return await self._again(party, doc, known), False
            rows = await self._decide(party, doc)
            receipts = await asyncio.gather(*(self._append(r.entry) for r in rows))
            indexed = [(r.event_id, x.index) for r, x in zip(rows, receipts, strict=True)]
            await asyncio.to_thread(self.store.set_indexes, indexed)
        accepted = [Accepted(r.event_id, x, r.holders) for r, x in zip(rows, receipts, strict=True)]
        return accepted, True

    async def _settle(self, event_id: str, entry: bytes, size_hint: int) -> Receipt:
        """The receipt of a stored event whose append was never answered: found on the
        ledger from ``size_hint`` on, or appended now; its index is stored."""
        index = await asyncio.to_thread(self._find, entry, size_hint)
        if index is None:
            receipt = await self._append(entry)
        else:
            receipt = await asyncio.to_thread(self.ledger.receipt_for, index)
        await asyncio.to_thread(self.store.set_index, event_id, receipt.index)
        return receipt

    def _find(self, entry: bytes, start: int, chunk: int = 1024) -> int | None:
        size = self.ledger.size
        for lo in range(start, size, chunk):
            for i, got in enumerate(self.ledger.store.read_entries(lo, min(lo + chunk, size))):
                if got == entry:
                    return lo + i
        return None

    async def reconcile(self, grace: int) -> int:
        """Settle the events stored at least ``grace`` seconds ago whose append was never
        answered; returns how many."""
        async with self._lock:
            cutoff = int(self._clock()) - grace
            pending = await asyncio.to_thread(self.store.pending, cutoff)
            for event_id, entry, size_hint in pending:
                await self._settle(event_id, entry, size_hint)
        if pending:
            log.warning("settled pending supply events", extra={"fields": {"count": len(pending)}})
        return len(pending)

    async def _again(self, party: Party, doc: Document, known: dict[str, Any]) -> list[Accepted]:
        same = all(
            e.event_id in known and known[e.event_id].event_hash == e.event_hash for e in doc.events
        )
        if not same:
            first = next(
                e
                for e in doc.events
                if e.event_id not in known or known[e.event_id].event_hash != e.event_hash
            )
            await self._refuse(party, first, "event_id_reused", None)
            raise EventIdReused(
                "this document repeats accepted eventIDs with other events (or with new ones): "
                "an eventID names one event",
                reason="event_id_reused",
            )
        out = []
        for e in doc.events:
            stored = known[e.event_id]
            if stored.ledger_index is None:  # stored, its append never answered
                receipt = await self._settle(e.event_id, stored.entry, stored.size_hint)
            else:
                receipt = await asyncio.to_thread(self.ledger.receipt_for, stored.ledger_index)
            out.append(Accepted(e.event_id, receipt))
        return out

    async def _decide(self, party: Party, doc: Document) -> list[EventRow]:
        now, today = int(self._clock()), self.today()

        def decide(loader: Loader) -> tuple[list[ItemState], list[EventRow]]:
            prefetch = getattr(loader, "prefetch", None)
            if prefetch is not None:  # the named units, in a few queries rather than one each
                prefetch(
                    [it.uri for ev in doc.events for it in ev.items]
                    + [ev.parent.uri for ev in doc.events if ev.parent is not None]
                )
            custody = Custody(loader, today)
            rows = []
            for ev in doc.events:
                try:
                    units = custody.apply(ev, party)
                except CustodyViolation as v:
                    v.event = ev
                    raise
                entry = stamped(
                    self._clock,
                    EventType.SUPPLY_EVENT,
                    party.sub,
                    data=_data(ev, party, doc.doc_hash, units),
                ).encode()
                holders: set[str] = set()
                if ev.biz_step == RECALLING:
                    for u in units:
                        s = custody.state(u)
                        if s is not None:
                            holders.add(s.in_transit_to or s.custodian)
                rows.append(
                    EventRow(
                        ev.event_id,
                        ev.event_hash,
                        party.sub,
                        party.gln,
                        ev.biz_step,
                        ev.event_time,
                        entry,
                        tuple(dict.fromkeys(units)),
                        tuple(sorted(holders)),
                    )
                )
            return list(custody.changed.values()), rows

        document = (doc.doc_hash, party.sub, doc.jws)
        try:
            rows = await asyncio.to_thread(
                self.store.accept, decide, document, now, self.ledger.size
            )
        except CustodyViolation as v:
            if v.suspect:
                await asyncio.to_thread(self.store.mark_suspect, v.item, v.reason, now)
                self._changed({v.item})
            if v.event is not None:
                await self._refuse(party, v.event, v.reason, v.item)
            raise
        except sa.exc.IntegrityError as e:
            # Another replica stored one of these events or units between our read and
            # our write: the client retries and gets the answer that now stands.
            raise Conflict("another request changed these units at the same time: retry") from e
        self._changed({u for r in rows for u in r.units})
        return rows

    async def _refuse(self, party: Party, ev: SupplyEvent, reason: str, item: str | None) -> None:
        data: dict[str, Any] = {
            "reason": reason,
            "gln": party.gln,
            "biz_step": ev.biz_step,
            "event_hash": ev.event_hash,
        }
        if item is not None:
            data["item"] = item
        await self._append(stamped(self._clock, EventType.SUPPLY_REFUSED, party.sub, data=data))
