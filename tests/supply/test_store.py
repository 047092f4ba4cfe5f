"""The supply store on SQLite and on PostgreSQL: the custody rules read units inside the
write transaction, a refused document writes nothing, histories and suspects persist."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from gateway.db import Database
from gateway.supply.document import SupplyEvent
from gateway.supply.gs1 import parse_item
from gateway.supply.rules import Custody, CustodyViolation, ItemState, Loader, Party
from gateway.supply.store import EventRow, SupplyStore

T0 = 1_800_000_000
MAKER = Party("sup:" + "a" * 32, "0614141123452", "manufacturer")
DIST = Party("sup:" + "b" * 32, "4012345000009", "distributor")
U1 = parse_item("urn:epc:id:sgtin:0614141.712345.1")
U2 = parse_item("urn:epc:id:sgtin:0614141.712345.2")
CASE = parse_item("urn:epc:id:sscc:0614141.1234567890")


def _ev(eid: str, step: str, items: tuple[object, ...], **kw: object) -> SupplyEvent:
    action = {"commissioning": "ADD", "packing": "ADD"}.get(step, "OBSERVE")
    etype = "AggregationEvent" if step == "packing" else "ObjectEvent"
    return SupplyEvent(
        eid,
        "h" + eid,
        etype,
        action,
        step,
        "2026-12-03T10:00:00Z",
        items,
        **kw,  # type: ignore[arg-type]
    )


def _submit(store: SupplyStore, party: Party, *events: SupplyEvent) -> list[EventRow]:
    def decide(loader: Loader) -> tuple[list[ItemState], list[EventRow]]:
        custody = Custody(loader, "2026-12-03")
        rows = []
        for ev in events:
            units = custody.apply(ev, party)
            rows.append(
                EventRow(
                    ev.event_id,
                    ev.event_hash,
                    party.sub,
                    party.gln,
                    ev.biz_step,
                    ev.event_time,
                    b"leaf-" + ev.event_id.encode(),
                    tuple(units),
                )
            )
        return list(custody.changed.values()), rows

    return store.accept(decide, ("doc-" + events[0].event_id, party.sub, "a.b.c"), T0, 7)


def test_a_chain_is_stored_and_read_back(db: Database) -> None:
    store = SupplyStore(db.open("supply"))
    _submit(
        store,
        MAKER,
        _ev("e1", "commissioning", (U1, U2), lot="L1", expiry="2030-01-01"),
        _ev("e2", "packing", (U1, U2), parent=CASE),
    )
    _submit(store, MAKER, _ev("e3", "shipping", (CASE,), destination=DIST.gln))
    unit = store.item(U1.uri)
    assert unit is not None
    assert (unit.custodian, unit.in_transit_to, unit.parent) == (MAKER.gln, DIST.gln, CASE.uri)
    assert (unit.lot, unit.expiry, unit.status) == ("L1", "2030-01-01", "active")
    assert store.children(CASE.uri) == sorted([U1.uri, U2.uri])
    assert [h["event_id"] for h in store.history(U1.uri, 10)] == ["e1", "e2", "e3"]
    assert [h["event_id"] for h in store.history(U1.uri, 2)] == ["e1", "e2"]
    known = store.known(["e1", "e3", "nope"])
    assert sorted(known) == ["e1", "e3"] and known["e1"].ledger_index is None
    assert known["e1"].entry == b"leaf-e1" and known["e1"].size_hint == 7
    assert [p[0] for p in store.pending(T0)] == ["e1", "e2", "e3"]
    assert store.pending(T0 - 1) == []  # stored after the cutoff: another request's
    store.set_index("e1", 41)
    store.set_index("e1", 99)  # set once: the first answer stands
    assert store.known(["e1"])["e1"].ledger_index == 41
    assert [p[0] for p in store.pending(T0)] == ["e2", "e3"]


def test_a_refused_document_writes_nothing(db: Database) -> None:
    store = SupplyStore(db.open("supply"))
    with pytest.raises(CustodyViolation) as e:
        _submit(
            store,
            MAKER,
            _ev("e1", "commissioning", (U1,)),
            _ev("e2", "shipping", (U2,), destination=DIST.gln),
        )
    assert e.value.reason == "unknown_item"
    assert store.item(U1.uri) is None and store.known(["e1", "e2"]) == {}


def test_suspects_persist_once_each(db: Database) -> None:
    store = SupplyStore(db.open("supply"))
    _submit(store, MAKER, _ev("e1", "commissioning", (U1,)))
    for _ in range(2):
        store.mark_suspect(U1.uri, "commissioned_twice", T0 + 1)
    store.mark_suspect(U2.uri, "commissioned_twice", T0 + 1)  # unknown: nothing to mark
    unit = store.item(U1.uri)
    assert unit is not None and unit.suspect == ["commissioned_twice"]
    assert store.item(U2.uri) is None


def test_an_event_id_is_stored_once(db: Database) -> None:
    store = SupplyStore(db.open("supply"))
    _submit(store, MAKER, _ev("e1", "commissioning", (U1,)))
    with pytest.raises(sa.exc.IntegrityError):
        _submit(store, MAKER, _ev("e1", "commissioning", (U2,)))
    assert store.item(U2.uri) is None
