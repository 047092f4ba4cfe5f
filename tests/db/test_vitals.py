"""The vitals store on both engines, and two replicas on one database: one batch per
(device, batch id) whoever posts it, one key per patient, an erasure through one replica
stops the other's reads at once and its writes within a second, and a pending batch is
settled by one replica only, never while young."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from gateway.db import Database
from gateway.vitals.store import KEY_CACHE_TTL, Erased, VitalsStore

MASTER = bytes(range(32))
T0 = 1_700_000_000


class Clock:
    def __init__(self) -> None:
        self.now = float(T0)

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def replica(db: Database) -> Iterator[Database]:
    """A second Database on the same data: another replica."""
    other = Database(db.data_dir, db.url)
    try:
        yield other
    finally:
        other.close()


def _row(
    store: VitalsStore, patient: str, device: str, bid: str, payload: bytes
) -> tuple[Any, ...]:
    tag, nonce, ct = store.seal(patient, device, bid, payload, {"readings": [payload.decode()]}, T0)
    return (device, bid, patient, T0, tag, nonce, ct, b"event:" + bid.encode(), 0)


def test_a_batch_reads_back_after_its_index_and_not_before(db: Database) -> None:
    store = VitalsStore(db.open("vitals"), MASTER, Clock())
    assert store.commit([_row(store, "pat:1", "dev:1", "b1", b"x")], []) == [True]
    assert store.read("pat:1", 0, 2**62, 0, 10) == []  # pending: not on the ledger yet
    store.set_indexes([(3, "dev:1", "b1")])
    ((meta, content),) = store.read("pat:1", 0, 2**62, 0, 10)
    assert (meta.ledger_index, content) == (3, {"readings": ["x"]})
    assert store.read("pat:2", 0, 2**62, 0, 10) == []  # no key, nothing stored


def test_two_replicas_seal_with_one_key_and_store_a_batch_once(
    db: Database, replica: Database
) -> None:
    one = VitalsStore(db.open("vitals"), MASTER, Clock())
    two = VitalsStore(replica.open("vitals"), MASTER, Clock())
    start = threading.Barrier(2)

    def post(store: VitalsStore) -> tuple[bytes, bool]:
        start.wait()
        row = _row(store, "pat:1", "dev:1", "b1", b"same")
        return row[4], store.commit([row], [])[0]

    with ThreadPoolExecutor(2) as pool:
        (tag1, new1), (tag2, new2) = pool.map(post, [one, two])
    assert tag1 == tag2  # one key for the patient: the same payload has the same tag
    assert sorted([new1, new2]) == [False, True]  # inserted once
    found = two.find("dev:1", "b1")
    assert found is not None and found.tag == tag1


def test_an_erasure_through_another_replica_stops_reads_at_once_and_writes_within_a_second(
    db: Database, replica: Database
) -> None:
    clock = Clock()
    one = VitalsStore(db.open("vitals"), MASTER, clock)
    two = VitalsStore(replica.open("vitals"), MASTER, clock)
    assert one.commit([_row(one, "pat:1", "dev:1", "b1", b"a")], [(0, "x", "y")]) == [True]
    one.set_indexes([(0, "dev:1", "b1")])
    assert len(one.read("pat:1", 0, 2**62, 0, 10)) == 1  # the key is now in one's cache
    late = _row(one, "pat:1", "dev:1", "b2", b"b")  # sealed, not yet committed
    n, _ev = two.erase("pat:1", lambda n: f"erased {n}".encode(), T0 + 1)
    assert n == 1
    with pytest.raises(Erased):
        one.read("pat:1", 0, 2**62, 0, 10)
    # A batch sealed before the erasure is refused at its commit after it.
    assert one.commit([late], []) == [False] and one.find("dev:1", "b2") is None
    sealed = _row(two, "pat:2", "dev:2", "b1", b"c")  # two's cache: one erasure away
    three = VitalsStore(db.engine("vitals"), MASTER, clock)
    three.erase("pat:2", lambda n: b"erased", T0 + 1)
    assert two.commit([sealed], []) == [False]
    clock.now += KEY_CACHE_TTL  # the cached key is not used past its second
    with pytest.raises(Erased):
        two.seal("pat:2", "dev:2", "b2", b"d", {}, T0 + 2)
    with pytest.raises(Erased):
        one.seal("pat:1", "dev:1", "b3", b"c", {}, T0 + 2)
    with pytest.raises(Erased):  # and the key is never made again
        two.seal("pat:1", "dev:1", "b3", b"c", {}, T0 + 2)
    with pytest.raises(Erased):
        one.erase("pat:1", lambda n: b"again", T0 + 3)


def test_a_pending_batch_is_settled_once_only_when_older_than_the_cutoff(
    db: Database, replica: Database
) -> None:
    one = VitalsStore(db.open("vitals"), MASTER, Clock())
    two = VitalsStore(replica.open("vitals"), MASTER, Clock())
    one.commit([_row(one, "pat:1", "dev:1", "b1", b"a")], [])
    appended: list[bytes] = []

    def resolve(event: bytes, size_hint: int) -> int:
        appended.append(event)
        return 41

    assert two.settle(T0 - 1, resolve) == 0  # younger than the cutoff: maybe in flight
    assert two.settle(T0, resolve) == 1
    assert one.settle(T0, resolve) == 0  # already settled
    assert appended == [b"event:b1"]
    found = one.find("dev:1", "b1")
    assert found is not None and found.ledger_index == 41
    one.set_indexes([(99, "dev:1", "b1")])  # a late index update does not overwrite it
    found = one.find("dev:1", "b1")
    assert found is not None and found.ledger_index == 41


def test_a_replica_skips_a_pending_batch_another_is_settling(pg_url: str, tmp_path: Path) -> None:
    # PostgreSQL only: an embedded SQLite data dir has one process, whose BEGIN IMMEDIATE
    # serializes settlers anyway; SKIP LOCKED is what lets replicas settle side by side.
    db, replica = Database(tmp_path / "data", pg_url), Database(tmp_path / "data", pg_url)
    db.upgrade()
    try:
        _skip_locked(db, replica)
    finally:
        db.close()
        replica.close()


def _skip_locked(db: Database, replica: Database) -> None:
    one = VitalsStore(db.open("vitals"), MASTER, Clock())
    two = VitalsStore(replica.open("vitals"), MASTER, Clock())
    one.commit([_row(one, "pat:1", "dev:1", "b1", b"a")], [])
    holding, release = threading.Event(), threading.Event()

    def slow(event: bytes, size_hint: int) -> int:
        holding.set()
        assert release.wait(10)
        return 7

    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(one.settle, T0, slow)
        assert holding.wait(10)
        # The row is locked by one's settle: two skips it instead of appending again.
        assert two.settle(T0, lambda e, s: pytest.fail("appended twice")) == 0
        assert two.settle(T0, lambda e, s: 8, ("dev:1", "b1")) == 0
        release.set()
        assert first.result(10) == 1
    found = two.find("dev:1", "b1")
    assert found is not None and found.ledger_index == 7
