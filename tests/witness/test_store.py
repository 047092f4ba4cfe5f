"""The witness store on real SQLite files: durability settings and the compare-and-swap."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from gateway.witness import WitnessConfig, WitnessStore, open_witness
from ledger.merkle import EMPTY_ROOT
from ledger.witness import LogState, StaleOldSize

from .conftest import ORIGIN, Clock, History

A = LogState(10, b"a" * 32, 100)
B = LogState(12, b"b" * 32, 101)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[WitnessStore]:
    s = WitnessStore(tmp_path / "state.db")
    yield s
    s.close()


def test_durable_settings(store: WitnessStore) -> None:
    db = store._db
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_log_never_cosigned_is_the_empty_tree(store: WitnessStore) -> None:
    assert store.latest(ORIGIN) == LogState(0, EMPTY_ROOT, 0)
    assert store.checkpoint(ORIGIN) is None


def test_advance_is_compare_and_swap(store: WitnessStore) -> None:
    store.advance(ORIGIN, LogState(), A, b"note A")
    assert (store.latest(ORIGIN), store.checkpoint(ORIGIN)) == (A, b"note A")
    # From a state that is no longer stored: refused with the stored size (409).
    with pytest.raises(StaleOldSize) as e:
        store.advance(ORIGIN, LogState(), B, b"note B")
    assert e.value.size == 10
    # Same size, another root: not the state checked against either.
    with pytest.raises(StaleOldSize):
        store.advance(ORIGIN, LogState(10, b"x" * 32), B, b"note B")
    store.advance(ORIGIN, A, B, b"note B")
    assert store.latest(ORIGIN) == B


def test_timestamp_never_goes_back(store: WitnessStore) -> None:
    store.advance(ORIGIN, LogState(), A, b"n")
    store.advance(ORIGIN, A, LogState(A.size, A.root, 50), b"n")
    assert store.latest(ORIGIN).timestamp == 100


def test_two_processes_sharing_the_file(tmp_path: Path, store: WitnessStore) -> None:
    # A second connection stands for a second witness process on the same data dir.
    other = WitnessStore(tmp_path / "state.db")
    try:
        seen_here, seen_there = store.latest(ORIGIN), other.latest(ORIGIN)
        other.advance(ORIGIN, seen_there, A, b"there")
        with pytest.raises(StaleOldSize) as e:
            store.advance(ORIGIN, seen_here, B, b"here")
        assert e.value.size == A.size
        assert store.checkpoint(ORIGIN) == b"there"
    finally:
        other.close()


class _Stalling(WitnessStore):
    """Holds each advance until two are waiting: both requests checked the same state."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.barrier = threading.Barrier(2, timeout=10)

    def advance(self, origin: str, expected: LogState, new: LogState, note: bytes) -> None:
        self.barrier.wait()
        super().advance(origin, expected, new, note)


def test_racing_requests_from_one_old_size(config: WitnessConfig, history: History) -> None:
    service = open_witness(config, clock=Clock())
    try:
        service.add_checkpoint(history.body(0))
        service.store.close()
        service.store = _Stalling(config.db_path)
        history.grow(10)
        bodies = {13: history.body(10, 13), 17: history.body(10, 17)}
        with ThreadPoolExecutor(2) as pool:
            futures = {n: pool.submit(service.add_checkpoint, b) for n, b in bodies.items()}
        outcomes = {n: f.exception() for n, f in futures.items()}
        winners = [n for n, exc in outcomes.items() if exc is None]
        assert len(winners) == 1
        (loser,) = set(bodies) - set(winners)
        refused = outcomes[loser]
        assert isinstance(refused, StaleOldSize) and refused.size == winners[0]
        assert service.store.latest(ORIGIN).size == winners[0]
    finally:
        service.close()
