"""Custody rules: what a party's event may do to the items it names, given their state.

Pure: the items' current state comes through a :class:`Loader` (the store, inside its write
transaction; a dict in tests). :class:`Custody` applies a document's events in order to
copies of those states and either returns what changed or raises :class:`CustodyViolation`
naming the rule broken; nothing is written unless every event of the document passes.

The rules (docs/supply.md):
- a serial is commissioned once, by a manufacturer;
- only the party holding custody packs, unpacks, ships, dispenses or decommissions;
- only the party a shipment went to receives it; a packed unit moves with its parent;
- a decommissioned, recalled, expired or already dispensed unit is not dispensed;
- only the manufacturer that commissioned a unit recalls it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from ..errors import GatewayError
from .document import RECALLING, SupplyEvent
from .gs1 import Item, lot_uri

__all__ = ["Custody", "CustodyViolation", "ItemState", "Loader", "Party", "Status"]

#: Nesting of packed units followed when a parent moves (a unit in a case on a pallet: 2).
MAX_DEPTH = 8
#: Units one event may move through its parents (itself and everything packed inside).
MAX_MOVED = 10_000


class Status:
    ACTIVE = "active"
    DISPENSED = "dispensed"
    DECOMMISSIONED = "decommissioned"
    RECALLED = "recalled"


@dataclass(frozen=True, slots=True)
class Party:
    """An enrolled supply-chain party: its subject id, GLN and kind."""

    sub: str
    gln: str
    kind: str


@dataclass(slots=True)
class ItemState:
    uri: str
    kind: str  # sgtin or sscc
    key: str  # GTIN-14 or SSCC-18
    status: str
    custodian: str  # GLN
    commissioned_by: str  # GLN
    in_transit_to: str | None = None
    parent: str | None = None
    lot: str | None = None
    expiry: str | None = None
    suspect: list[str] = field(default_factory=list)


class CustodyViolation(GatewayError):
    """409: the event breaks a custody rule. ``reason`` is its short code; ``item`` the unit
    concerned; ``suspect`` whether the unit is now suspect (a clone or a double dispense)."""

    status = 409
    slug = "custody-rule"
    title = "The event breaks a custody rule"

    def __init__(self, reason: str, detail: str, item: str, suspect: bool = False) -> None:
        super().__init__(detail, reason=reason, item=item)
        self.reason = reason
        self.item = item
        self.suspect = suspect
        #: The event that broke the rule, once known (set by the caller applying it).
        self.event: SupplyEvent | None = None


class Loader(Protocol):
    def item(self, uri: str) -> ItemState | None: ...

    def children(self, uri: str) -> list[str]: ...

    def lot(self, key: str, lot: str) -> list[str]: ...


class Custody:
    """A document's events applied to the items' states, in order."""

    def __init__(self, loader: Loader, today: str) -> None:
        self._loader = loader
        self._today = today  # ISO date, by the gateway's clock
        self._states: dict[str, ItemState | None] = {}
        self._children: dict[str, set[str]] = {}
        self.changed: dict[str, ItemState] = {}
        self.created: set[str] = set()

    # -- state -------------------------------------------------------------------
    def state(self, uri: str) -> ItemState | None:
        if uri not in self._states:
            got = self._loader.item(uri)
            self._states[uri] = None if got is None else dataclasses.replace(got)
        return self._states[uri]

    def _kids(self, uri: str) -> set[str]:
        if uri not in self._children:
            self._children[uri] = set(self._loader.children(uri))
        return self._children[uri]

    def _touch(self, s: ItemState) -> None:
        self.changed[s.uri] = s

    def descendants(self, uri: str) -> Iterator[str]:
        """Everything packed in ``uri``, at any depth (bounded)."""
        level, seen = [uri], 0
        for _ in range(MAX_DEPTH):
            nxt = [k for u in level for k in sorted(self._kids(u))]
            seen += len(nxt)
            if seen > MAX_MOVED:
                raise CustodyViolation("too_many_units", "too many units packed inside", uri)
            yield from nxt
            if not nxt:
                return
            level = nxt

    def _held(self, uri: str, party: Party, *, packed_ok: bool = False) -> ItemState:
        s = self.state(uri)
        if s is None:
            raise CustodyViolation("unknown_item", "this unit was never commissioned", uri)
        if s.in_transit_to is not None:
            raise CustodyViolation("in_transit", "this unit is in transit", uri)
        if s.custodian != party.gln:
            raise CustodyViolation("not_custodian", "only the party holding it may do this", uri)
        if s.parent is not None and not packed_ok:
            raise CustodyViolation(
                "packed", f"this unit is packed in {s.parent}: act on that, or unpack it", uri
            )
        return s

    # -- events ------------------------------------------------------------------
    def apply(self, ev: SupplyEvent, party: Party) -> list[str]:
        """Apply ``ev`` by ``party``; returns every unit it concerns (for its history).
        Raises CustodyViolation."""
        steps = {
            "commissioning": self._commissioning,
            "packing": self._packing,
            "unpacking": self._unpacking,
            "shipping": self._shipping,
            "receiving": self._receiving,
            "dispensing": self._dispensing,
            "decommissioning": self._decommissioning,
            RECALLING: self._recalling,
        }
        return steps[ev.biz_step](ev, party)

    def _commissioning(self, ev: SupplyEvent, party: Party) -> list[str]:
        for it in ev.items:
            if party.kind != "manufacturer":
                raise CustodyViolation(
                    "not_manufacturer", "only a manufacturer commissions", it.uri
                )
            if self.state(it.uri) is not None:
                raise CustodyViolation(
                    "commissioned_twice", "this serial was commissioned before", it.uri, True
                )
            self._new(it, party, ev.lot, ev.expiry)
        return [it.uri for it in ev.items]

    def _new(self, it: Item, party: Party, lot: str | None, expiry: str | None) -> ItemState:
        s = ItemState(it.uri, it.kind, it.key, Status.ACTIVE, party.gln, party.gln)
        s.lot, s.expiry = lot, expiry
        self._states[it.uri] = s
        self._children[it.uri] = set()
        self.created.add(it.uri)
        self._touch(s)
        return s

    def _packing(self, ev: SupplyEvent, party: Party) -> list[str]:
        assert ev.parent is not None
        parent = self.state(ev.parent.uri)
        if parent is None:  # a new logistic unit (a case, a pallet) made by packing
            parent = self._new(ev.parent, party, None, None)
        else:
            self._held(parent.uri, party, packed_ok=True)
            if parent.status != Status.ACTIVE:
                raise CustodyViolation("not_active", f"this unit is {parent.status}", parent.uri)
        above = set(self._ancestors(parent.uri))
        for it in ev.items:
            child = self._held(it.uri, party, packed_ok=True)
            if child.parent is not None and child.parent != parent.uri:
                raise CustodyViolation("packed", f"this unit is packed in {child.parent}", it.uri)
            if child.status != Status.ACTIVE:
                raise CustodyViolation("not_active", f"this unit is {child.status}", it.uri)
            if it.uri in above:
                raise CustodyViolation("packing_cycle", "a unit cannot be packed in itself", it.uri)
            child.parent = parent.uri
            self._kids(parent.uri).add(it.uri)
            self._touch(child)
        # What the children hold goes with them: their histories show this packing too.
        inside = [u for it in ev.items for u in self.descendants(it.uri)]
        return [parent.uri, *(it.uri for it in ev.items), *inside]

    def _commissioned(self, uri: str, party: Party) -> bool:
        s = self.state(uri)
        return s is not None and s.commissioned_by == party.gln

    def _ancestors(self, uri: str) -> Iterator[str]:
        s = self.state(uri)
        for _ in range(MAX_DEPTH):
            if s is None or s.parent is None:
                return
            yield s.parent
            s = self.state(s.parent)

    def _unpacking(self, ev: SupplyEvent, party: Party) -> list[str]:
        assert ev.parent is not None
        parent = self._held(ev.parent.uri, party, packed_ok=True)
        kids = self._kids(parent.uri)
        named = [it.uri for it in ev.items] or sorted(kids)  # none named: all of them
        for uri in named:
            child = self.state(uri)
            if child is None or child.parent != parent.uri:
                raise CustodyViolation("not_packed", f"this unit is not in {parent.uri}", uri)
            child.parent = None
            kids.discard(uri)
            self._touch(child)
        return [parent.uri, *named, *(u for uri in named for u in self.descendants(uri))]

    def _shipping(self, ev: SupplyEvent, party: Party) -> list[str]:
        assert ev.destination is not None
        out = []
        for it in ev.items:
            s = self._held(it.uri, party)
            if s.status not in (Status.ACTIVE, Status.RECALLED):  # a recalled unit goes back
                raise CustodyViolation("not_active", f"this unit is {s.status}", it.uri)
            for uri in (it.uri, *self.descendants(it.uri)):
                moved = self.state(uri)
                assert moved is not None
                moved.in_transit_to = ev.destination
                self._touch(moved)
                out.append(uri)
        return out

    def _receiving(self, ev: SupplyEvent, party: Party) -> list[str]:
        out = []
        for it in ev.items:
            s = self.state(it.uri)
            if s is None:
                raise CustodyViolation("unknown_item", "this unit was never commissioned", it.uri)
            if s.in_transit_to != party.gln:
                raise CustodyViolation(
                    "not_shipped_to_you", "this unit was not shipped to this party", it.uri
                )
            if s.parent is not None:
                raise CustodyViolation("packed", f"receive {s.parent}, it holds this unit", it.uri)
            for uri in (it.uri, *self.descendants(it.uri)):
                moved = self.state(uri)
                assert moved is not None
                moved.in_transit_to, moved.custodian = None, party.gln
                self._touch(moved)
                out.append(uri)
        return out

    def _dispensing(self, ev: SupplyEvent, party: Party) -> list[str]:
        for it in ev.items:
            # Before custody: a second pharmacy dispensing a dispensed serial holds a copy.
            known = self.state(it.uri)
            if known is not None and known.status == Status.DISPENSED:
                raise CustodyViolation(
                    "dispensed_twice", "this unit was dispensed before", it.uri, True
                )
            s = self._held(it.uri, party)
            if s.status != Status.ACTIVE:
                raise CustodyViolation(s.status, f"a {s.status} unit is not dispensed", it.uri)
            if s.expiry is not None and s.expiry < self._today:
                raise CustodyViolation("expired", f"this unit expired on {s.expiry}", it.uri)
            if self._kids(it.uri):
                raise CustodyViolation("packed", "unpack this unit before dispensing", it.uri)
            s.status = Status.DISPENSED
            self._touch(s)
        return [it.uri for it in ev.items]

    def _decommissioning(self, ev: SupplyEvent, party: Party) -> list[str]:
        for it in ev.items:
            s = self._held(it.uri, party)
            if s.status == Status.DECOMMISSIONED:
                raise CustodyViolation("decommissioned", "this unit is decommissioned", it.uri)
            s.status = Status.DECOMMISSIONED
            self._touch(s)
        return [it.uri for it in ev.items]

    def _recalling(self, ev: SupplyEvent, party: Party) -> list[str]:
        named = [it.uri for it in ev.items]
        for key, lot in ev.lots:
            # Every unit of the lot this manufacturer commissioned: another's units that
            # carry the same GTIN and lot are not its to recall.
            units = [u for u in self._loader.lot(key, lot) if self._commissioned(u, party)]
            if not units:
                where = lot_uri(key, lot)
                raise CustodyViolation("unknown_lot", "no unit of this lot was commissioned", where)
            named += [u for u in units if u not in named]
        out = []
        for uri0 in named:
            s = self.state(uri0)
            if s is None:
                raise CustodyViolation("unknown_item", "this unit was never commissioned", uri0)
            if s.commissioned_by != party.gln:
                raise CustodyViolation(
                    "not_manufacturer", "only the manufacturer that commissioned it recalls", uri0
                )
            for uri in (uri0, *self.descendants(uri0)):
                unit = self.state(uri)
                assert unit is not None
                if unit.status != Status.DECOMMISSIONED:
                    unit.status = Status.RECALLED
                    self._touch(unit)
                out.append(uri)
        return out
