"""Nothing lost, nothing twice: an event stored but whose append was not answered is
settled by a retry of its document or at the next start, found on the ledger if its append
landed, appended if not (on SQLite and PostgreSQL stores, with a real log)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.auth.jwk import HolderKey
from gateway.db import Database
from gateway.supply.rules import Party
from gateway.supply.service import Supply
from gateway.supply.store import SupplyStore
from ledger.errors import LedgerUnavailable
from ledger.events import Event
from ledger.log import Log, Receipt
from tests.gateway.idclient import Holder
from tests.supply.world import commission, document, sgtin, sign

T0 = 1_800_000_000.0


class Flaky:
    """The ledger's append, failing as told: ``"before"`` fails without appending, ``"after"``
    appends and then loses the answer (a crash between the two)."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.fail: str | None = None

    async def __call__(self, entry: Event | bytes) -> Receipt:
        if self.fail == "before":
            raise LedgerUnavailable("the ledger's writer has stopped")
        receipt = await self.log.append(entry)
        if self.fail == "after":
            raise LedgerUnavailable("the answer was lost")
        return receipt


@pytest.fixture
def holder() -> Holder:
    h = Holder()
    h.sub = "sup:" + "c" * 32
    return h


def _supply(db: Database, ledger: Log) -> tuple[Supply, Flaky]:
    append = Flaky(ledger)
    return Supply(SupplyStore(db.open("supply")), ledger, append, lambda: T0), append


def _leaves(log: Log) -> list[dict[str, Any]]:
    return [json.loads(e) for e in log.store.read_entries(0, log.size)]


@pytest.mark.parametrize("when", ["before", "after"])
async def test_a_retry_settles_without_a_second_entry(
    db: Database, ledger: Log, holder: Holder, when: str
) -> None:
    supply, append = _supply(db, ledger)
    party = Party(holder.sub, "0614141123452", "manufacturer")
    jws = sign(holder, document(commission([sgtin("C1")]), commission([sgtin("C2")])))
    key = HolderKey.from_jwk(holder.jwk)
    append.fail = when
    with pytest.raises(LedgerUnavailable):
        await supply.submit(party, key, jws)
    append.fail = None
    accepted, fresh = await supply.submit(party, key, jws)
    assert not fresh and len(accepted) == 2
    events = [e for e in _leaves(ledger) if e["type"] == "supply.event"]
    assert len(events) == 2  # found where the lost answer left it, or appended once
    assert sorted(a.receipt.index for a in accepted) == sorted(
        i for i, e in enumerate(_leaves(ledger)) if e["type"] == "supply.event"
    )
    again, _ = await supply.submit(party, key, jws)
    assert [a.receipt.index for a in again] == [a.receipt.index for a in accepted]


@pytest.mark.parametrize("when", ["before", "after"])
async def test_a_start_settles_what_a_crash_left(
    db: Database, ledger: Log, holder: Holder, when: str
) -> None:
    supply, append = _supply(db, ledger)
    party = Party(holder.sub, "0614141123452", "manufacturer")
    append.fail = when
    with pytest.raises(LedgerUnavailable):
        await supply.submit(
            party, HolderKey.from_jwk(holder.jwk), sign(holder, document(commission([sgtin("K1")])))
        )
    append.fail = None
    # Another replica's start leaves a fresh row to the request that stored it.
    assert await supply.reconcile(grace=30) == 0
    assert await supply.reconcile(grace=0) == 1
    assert await supply.reconcile(grace=0) == 0
    events = [e for e in _leaves(ledger) if e["type"] == "supply.event"]
    assert len(events) == 1 and events[0]["data"]["items"] == [sgtin("K1")]
    assert supply.store.pending(int(T0)) == []
