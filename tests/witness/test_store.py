"""The witness store: durability settings and the compare-and-swap, on a real SQLite file
(or, with ``TELEGATE_TEST_DATABASE_URL``, a real PostgreSQL schema: tests/witness/conftest.py)."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gateway.db import for_update, writing
from gateway.witness import WitnessConfig, WitnessDatabase, WitnessStore, open_witness
from gateway.witness.tables import logs
from ledger.merkle import EMPTY_ROOT
from ledger.witness import LogState, StaleOldSize

from .conftest import ORIGIN, Clock, History

A = LogState(10, b"a" * 32, 100)
B = LogState(12, b"b" * 32, 101)


@pytest.fixture
def engine(config: WitnessConfig) -> Iterator[Engine]:
    db = WitnessDatabase(config)
    try:
        yield db.open("witness")
    finally:
        db.close()


@pytest.fixture
def store(engine: Engine) -> WitnessStore:
    return WitnessStore(engine)


def test_durable_settings(config: WitnessConfig, engine: Engine) -> None:
    if config.database_url is not None:
        # synchronous_commit is set per transaction (SET LOCAL) inside advance.
        assert engine.dialect.name == "postgresql"
        return
    assert config.db_path.exists()  # the witness's file, named as it always was
    with engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


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


def test_forks_are_kept_once_each_oldest_first(store: WitnessStore) -> None:
    store.record_fork(ORIGIN, 5, b"r" * 32, 20, b"second")
    store.record_fork(ORIGIN, 3, b"s" * 32, 10, b"first")
    store.record_fork(ORIGIN, 5, b"r" * 32, 30, b"again")  # the first sighting stays
    assert store.forks(ORIGIN) == [b"first", b"second"] and store.forks("other") == []


def test_two_processes_sharing_the_state(config: WitnessConfig, store: WitnessStore) -> None:
    # A second database stands for a second witness process on the same data dir or URL.
    other_db = WitnessDatabase(config)
    try:
        other = WitnessStore(other_db.open("witness"))
        seen_here, seen_there = store.latest(ORIGIN), other.latest(ORIGIN)
        other.advance(ORIGIN, seen_there, A, b"there")
        with pytest.raises(StaleOldSize) as e:
            store.advance(ORIGIN, seen_here, B, b"here")
        assert e.value.size == A.size
        assert store.checkpoint(ORIGIN) == b"there"
    finally:
        other_db.close()


def _blocked(engine: Engine) -> None:
    """Give a competing transaction time to reach the lock (on PostgreSQL: until it waits)."""
    if engine.dialect.name == "sqlite":
        time.sleep(0.3)  # SQLite cannot show who waits; BEGIN IMMEDIATE blocks in C
        return
    deadline = time.monotonic() + 10
    with engine.connect() as c:
        q = sa.text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
        while c.execute(q).scalar_one() == 0:
            assert time.monotonic() < deadline, "the competing advance never waited for the lock"
            c.rollback()
            time.sleep(0.01)


def test_an_advance_waits_for_a_competing_one_and_sees_its_result(
    config: WitnessConfig, engine: Engine, store: WitnessStore
) -> None:
    # Another witness process holds the log's row and moves it on. Without the row lock
    # (FOR UPDATE / BEGIN IMMEDIATE) this advance would read the old state, pass the
    # compare, and overwrite the other's cosigned checkpoint: a rollback of the witness.
    store.advance(ORIGIN, LogState(), A, b"note A")
    outcome: list[BaseException | None] = []

    def ours() -> None:
        try:
            store.advance(ORIGIN, A, B, b"ours")
            outcome.append(None)
        except StaleOldSize as e:
            outcome.append(e)

    other_db = WitnessDatabase(config)
    try:
        other = other_db.open("witness")
        th = threading.Thread(target=ours)
        with writing(other) as conn:
            conn.execute(for_update(sa.select(logs).where(logs.c.origin == ORIGIN))).one()
            conn.execute(logs.update().values(size=11, root=b"c" * 32, note=b"theirs"))
            th.start()
            _blocked(other)
        th.join(30)
    finally:
        other_db.close()
    assert len(outcome) == 1 and isinstance(outcome[0], StaleOldSize) and outcome[0].size == 11
    assert store.checkpoint(ORIGIN) == b"theirs"


class _Stalling(WitnessStore):
    """Holds each advance until two are waiting: both requests checked the same state."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.barrier = threading.Barrier(2, timeout=10)

    def advance(self, origin: str, expected: LogState, new: LogState, note: bytes) -> None:
        self.barrier.wait()
        super().advance(origin, expected, new, note)


@pytest.mark.parametrize("first", [False, True], ids=["row-lock", "first-insert"])
def test_racing_requests_from_one_old_size(
    config: WitnessConfig, history: History, first: bool
) -> None:
    # Two requests (or two witness processes) checked the same stored state: exactly one
    # advances, the other is a 409 with the winner's size, never a silent overwrite. With a
    # stored row the CAS is its lock; with none (a log's first checkpoint), the primary key.
    service = open_witness(config, clock=Clock())
    try:
        if first:
            bodies = {3: history.body(0, 3), 7: history.body(0, 7)}
        else:
            service.add_checkpoint(history.body(0))
            history.grow(10)
            bodies = {13: history.body(10, 13), 17: history.body(10, 17)}
        assert service.database is not None
        service.store = _Stalling(service.database.engine("witness"))
        with ThreadPoolExecutor(2) as pool:
            futures = {n: pool.submit(service.add_checkpoint, b) for n, b in bodies.items()}
        outcomes = {n: f.exception() for n, f in futures.items()}
        winners = [n for n, exc in outcomes.items() if exc is None]
        assert len(winners) == 1, outcomes
        (loser,) = set(bodies) - set(winners)
        refused = outcomes[loser]
        assert isinstance(refused, StaleOldSize) and refused.size == winners[0]
        assert service.store.latest(ORIGIN).size == winners[0]
    finally:
        service.close()


def test_an_old_state_db_is_adopted_with_its_rows(config: WitnessConfig) -> None:
    # Adoption is of the embedded file, so this runs on it in the PostgreSQL pass too.
    config = dataclasses.replace(config, database_url=None)
    import sqlite3

    config.data_dir.mkdir(parents=True)
    raw = sqlite3.connect(config.db_path)
    raw.executescript(
        "CREATE TABLE logs (origin TEXT PRIMARY KEY, size INTEGER NOT NULL, root BLOB NOT NULL,"
        " timestamp INTEGER NOT NULL, note BLOB NOT NULL);"
        "CREATE TABLE forks (origin TEXT NOT NULL, size INTEGER NOT NULL, root BLOB NOT NULL,"
        " seen INTEGER NOT NULL, note BLOB NOT NULL, PRIMARY KEY (origin, size, root));"
    )
    raw.execute("INSERT INTO logs VALUES (?, 10, ?, 100, ?)", (ORIGIN, A.root, b"kept"))
    raw.commit()
    raw.close()
    db = WitnessDatabase(config)
    try:
        assert WitnessStore(db.open("witness")).latest(ORIGIN) == A
        with db.engine("witness").connect() as c:
            names = set(sa.inspect(c).get_table_names())
        assert {"witness_logs", "witness_forks"} <= names and "logs" not in names
    finally:
        db.close()
