"""Off-ledger supply-chain state in the ``supply`` store (``gateway.db``: supply.db by
default, the shared PostgreSQL database at scale): the signed documents, each accepted
event with its ledger leaf, and every unit's current state and history.

Blocking: call from a thread. The engine comes from ``Database.open("supply")``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ..db.dialect import for_update, reading, upsert, writing
from .gs1 import lot_uri
from .rules import CustodyViolation, ItemState
from .tables import devices, documents, events, item_events, items

__all__ = ["EventRow", "StoredEvent", "SupplyStore"]

_e, _it, _ie = events.c, items.c, item_events.c
_ITEM = sa.select(items).where(_it.uri == sa.bindparam("uri"))
_ITEMS = sa.select(items).where(_it.uri.in_(sa.bindparam("uris", expanding=True)))
_CHILDREN = sa.select(_it.uri).where(_it.parent == sa.bindparam("uri"))
_LOT = (
    sa.select(_it.uri)
    .where(_it.key == sa.bindparam("key"), _it.lot == sa.bindparam("lot"))
    .order_by(_it.uri)
    .limit(sa.bindparam("limit"))
)
_KNOWN = sa.select(_e.event_id, _e.event_hash, _e.ledger_index, _e.entry, _e.size_hint).where(
    _e.event_id.in_(sa.bindparam("ids", expanding=True))
)
_PENDING = (
    sa.select(_e.event_id, _e.entry, _e.size_hint)
    .where(_e.ledger_index.is_(None), _e.received <= sa.bindparam("cutoff"))
    .order_by(_e.seq)
)
_SET_INDEX = (
    events.update()
    .where(_e.event_id == sa.bindparam("eid"), _e.ledger_index.is_(None))
    .values(ledger_index=sa.bindparam("idx"))
)
_EVENT_UNITS = sa.select(_ie.item).where(_ie.event_id == sa.bindparam("eid"))
_HISTORY = (
    sa.select(_e.event_id, _e.party, _e.gln, _e.biz_step, _e.event_time, _e.ledger_index)
    .join(item_events, _ie.event_id == _e.event_id)
    .where(_ie.item == sa.bindparam("uri"))
    .order_by(_e.seq)
    .limit(sa.bindparam("limit"))
)
_DEVICE = sa.select(devices.c.jkt, devices.c.reserved).where(devices.c.unit == sa.bindparam("unit"))
_CHUNK = 500
#: Units one recall by lot may recall (each is read and written in its transaction).
MAX_LOT = 10_000


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """What the store holds of an event already accepted."""

    event_id: str
    event_hash: str
    ledger_index: int | None
    entry: bytes
    size_hint: int


@dataclass(frozen=True, slots=True)
class EventRow:
    """An accepted event to store: its leaf, and the units whose history it joins."""

    event_id: str
    event_hash: str
    party: str
    gln: str
    biz_step: str
    event_time: str
    entry: bytes
    units: tuple[str, ...]
    #: For a recall: the GLNs holding (or receiving) the recalled units, told to the
    #: recalling manufacturer in the answer; not stored, not on the ledger.
    holders: tuple[str, ...] = ()


def _state(m: Any) -> ItemState:
    return ItemState(
        uri=m["uri"],
        kind=m["kind"],
        key=m["key"],
        status=m["status"],
        custodian=m["custodian"],
        commissioned_by=m["commissioned_by"],
        in_transit_to=m["in_transit_to"],
        parent=m["parent"],
        lot=m["lot"],
        expiry=m["expiry"],
        suspect=list(m["suspect"] or []),
    )


def _row(s: ItemState, now: int) -> dict[str, Any]:
    return {
        "uri": s.uri,
        "kind": s.kind,
        "key": s.key,
        "status": s.status,
        "custodian": s.custodian,
        "commissioned_by": s.commissioned_by,
        "in_transit_to": s.in_transit_to,
        "parent": s.parent,
        "lot": s.lot,
        "expiry": s.expiry,
        "suspect": s.suspect,
        "updated": now,
    }


class _TxLoader:
    """The custody rules' view of the units, read inside the write transaction with the
    rows locked (FOR UPDATE on PostgreSQL; SQLite's write lock holds every row)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._read: dict[str, ItemState | None] = {}

    def prefetch(self, uris: Iterable[str]) -> None:
        """Read (and lock) the states of ``uris`` in one query per 500, for :meth:`item`.
        Nothing else writes them before this transaction ends, so they stay true."""
        wanted = sorted(set(uris) - self._read.keys())
        for at in range(0, len(wanted), _CHUNK):
            chunk = wanted[at : at + _CHUNK]
            found = {
                str(row.uri): _state(row._mapping)
                for row in self._conn.execute(for_update(_ITEMS), {"uris": chunk})
            }
            for u in chunk:
                self._read[u] = found.get(u)

    def item(self, uri: str) -> ItemState | None:
        if uri in self._read:
            return self._read[uri]
        row = self._conn.execute(for_update(_ITEM), {"uri": uri}).first()
        return None if row is None else _state(row._mapping)

    def children(self, uri: str) -> list[str]:
        return [str(r[0]) for r in self._conn.execute(_CHILDREN, {"uri": uri})]

    def lot(self, key: str, lot: str) -> list[str]:
        """The units of a lot (at most MAX_LOT: a recall beyond it is refused)."""
        rows = self._conn.execute(_LOT, {"key": key, "lot": lot, "limit": MAX_LOT + 1}).all()
        if len(rows) > MAX_LOT:
            raise CustodyViolation(
                "lot_too_large", f"a lot of more than {MAX_LOT} units", lot_uri(key, lot)
            )
        return [str(r[0]) for r in rows]


class SupplyStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def known(self, event_ids: Sequence[str]) -> dict[str, StoredEvent]:
        """The events among ``event_ids`` already accepted."""
        out: dict[str, StoredEvent] = {}
        with reading(self._engine) as conn:
            for at in range(0, len(event_ids), _CHUNK):
                ids = list(event_ids[at : at + _CHUNK])
                for r in conn.execute(_KNOWN, {"ids": ids}):
                    idx = None if r[2] is None else int(r[2])
                    out[str(r[0])] = StoredEvent(str(r[0]), str(r[1]), idx, bytes(r[3]), int(r[4]))
        return out

    def accept(
        self,
        decide: Callable[[_TxLoader], tuple[Iterable[ItemState], Sequence[EventRow]]],
        document: tuple[str, str, str],
        now: int,
        size_hint: int,
    ) -> list[EventRow]:
        """In one write transaction: ``decide`` reads the units it needs (locked) and
        returns the changed units and the accepted events, or raises (nothing is written);
        then the document, the events, the units and their histories are stored.
        Raises what ``decide`` raises, or sqlalchemy's IntegrityError when another writer
        stored one of these events or created one of these units first."""
        with writing(self._engine) as conn:
            changed, rows = decide(_TxLoader(conn))
            doc_hash, party, jws = document
            upsert(
                conn,
                documents,
                [{"hash": doc_hash, "party": party, "jws": jws, "received": now}],
                ["hash"],
                [],
            )
            conn.execute(
                events.insert(),
                [
                    {
                        "event_id": r.event_id,
                        "event_hash": r.event_hash,
                        "document": doc_hash,
                        "party": r.party,
                        "gln": r.gln,
                        "biz_step": r.biz_step,
                        "event_time": r.event_time,
                        "received": now,
                        "entry": r.entry,
                        "ledger_index": None,
                        "size_hint": size_hint,
                    }
                    for r in rows
                ],
            )
            links = {(u, r.event_id) for r in rows for u in r.units}
            upsert(
                conn,
                item_events,
                [{"item": u, "event_id": e} for u, e in sorted(links)],
                ["item", "event_id"],
                [],
            )
            upsert(conn, items, [_row(s, now) for s in changed], ["uri"])
        return list(rows)

    def pending(self, cutoff: int) -> list[tuple[str, bytes, int]]:
        """Events stored at or before ``cutoff`` whose append was never answered: id, leaf,
        and the ledger's size before the append was tried."""
        with reading(self._engine) as conn:
            rows = conn.execute(_PENDING, {"cutoff": cutoff}).all()
        return [(str(r[0]), bytes(r[1]), int(r[2])) for r in rows]

    def set_index(self, event_id: str, index: int) -> None:
        self.set_indexes([(event_id, index)])

    def set_indexes(self, indexed: Sequence[tuple[str, int]]) -> None:
        """Note the ledger index of each ``(event_id, index)``, in one transaction."""
        if not indexed:
            return
        with writing(self._engine) as conn:
            conn.execute(_SET_INDEX, [{"eid": e, "idx": i} for e, i in indexed])

    def mark_suspect(self, uri: str, reason: str, now: int) -> None:
        """Add ``reason`` to what is suspect about unit ``uri`` (once)."""
        with writing(self._engine) as conn:
            row = conn.execute(for_update(_ITEM), {"uri": uri}).first()
            if row is None:
                return
            s = _state(row._mapping)
            if reason not in s.suspect:
                s.suspect.append(reason)
                upsert(conn, items, [_row(s, now)], ["uri"])

    def reserve_device(
        self, unit: str, jkt: str, now: int, held: Callable[[str, int], bool]
    ) -> bool:
        """Reserve device unit ``unit`` for the device key ``jkt``: True if it is now (or
        was already) its; False if another key holds it, which ``held(jkt, reserved)``
        decides (an enrolled device, or an enrollment still under way)."""
        try:
            with writing(self._engine) as conn:
                row = conn.execute(for_update(_DEVICE), {"unit": unit}).first()
                if row is None:
                    conn.execute(devices.insert().values(unit=unit, jkt=jkt, reserved=now))
                    return True
                if row.jkt != jkt and held(str(row.jkt), int(row.reserved)):
                    return False
                conn.execute(
                    devices.update().where(devices.c.unit == unit).values(jkt=jkt, reserved=now)
                )
                return True
        except sa.exc.IntegrityError:
            return False  # another enrollment inserted it first

    def item(self, uri: str) -> ItemState | None:
        with reading(self._engine) as conn:
            row = conn.execute(_ITEM, {"uri": uri}).first()
        return None if row is None else _state(row._mapping)

    def children(self, uri: str) -> list[str]:
        with reading(self._engine) as conn:
            return sorted(str(r[0]) for r in conn.execute(_CHILDREN, {"uri": uri}))

    def event_units(self, event_id: str) -> list[str]:
        """Every unit an event concerns (named, or moved or recalled with them)."""
        with reading(self._engine) as conn:
            return sorted(str(r[0]) for r in conn.execute(_EVENT_UNITS, {"eid": event_id}))

    def history(self, uri: str, limit: int) -> list[dict[str, Any]]:
        """The events that concern unit ``uri``, oldest first, at most ``limit``."""
        with reading(self._engine) as conn:
            rows = conn.execute(_HISTORY, {"uri": uri, "limit": limit}).all()
        return [
            {
                "event_id": r[0],
                "party": r[1],
                "gln": r[2],
                "biz_step": r[3],
                "event_time": r[4],
                "ledger_index": None if r[5] is None else int(r[5]),
            }
            for r in rows
        ]
