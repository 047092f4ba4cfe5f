"""The log on both backends (SQLite, PostgreSQL): receipts, group commit, reopen, tiles,
failures; and SQLite's writer lock."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from ledger.checkpoint import open_checkpoint
from ledger.errors import EntryTooLarge, LedgerError, LedgerUnavailable, NotFound, StoreLocked
from ledger.events import Event, EventType
from ledger.log import Log, Receipt
from ledger.merkle import leaf_hash, root_of, verify_consistency, verify_inclusion
from ledger.note import Signer
from ledger.pgstore import PGStore
from ledger.store import SQLiteStore
from ledger.tiles import Tile, split_hashes
from tests.ledger.conftest import Opener


@pytest.fixture
def signer() -> Signer:
    return Signer.generate("test.example/log")


@pytest.fixture
def log(open_store: Opener, signer: Signer):  # type: ignore[no-untyped-def]
    lg = Log(open_store(), signer)
    lg.start()
    yield lg
    lg.close()


def test_new_log_has_a_signed_empty_checkpoint(log: Log, signer: Signer) -> None:
    cp = open_checkpoint(log.checkpoint(), signer.verifier).checkpoint
    assert (cp.size, cp.origin) == (0, "test.example/log")


async def test_receipts_verify_offline(log: Log, signer: Signer) -> None:
    ev = Event.now(EventType.GATEWAY_STARTED, "gw:self", data={"version": "t"})
    r = await log.append(ev)
    assert r.index == 0 and r.leaf_hash == leaf_hash(ev.encode())
    again = Receipt.from_json(r.to_json())
    assert again == r
    again.verify(signer.verifier, ev.encode())
    with pytest.raises(LedgerError):
        again.verify(signer.verifier, b"another entry")


async def test_concurrent_appenders_share_group_commits(log: Log, signer: Signer) -> None:
    receipts = await asyncio.gather(*(log.append(f"e{i}".encode()) for i in range(500)))
    assert sorted(r.index for r in receipts) == list(range(500))
    notes = {r.checkpoint for r in receipts}
    # Fewer signed checkpoints than appends: appenders waiting together share one commit.
    assert len(notes) < 500
    for i, r in enumerate(receipts):
        r.verify(signer.verifier, f"e{i}".encode())


def test_sync_appends_and_proofs_from_store(log: Log, signer: Signer) -> None:
    futs = [log.submit(f"x{i}".encode()) for i in range(1000)]
    receipts = [f.result() for f in futs]
    cp = open_checkpoint(log.checkpoint(), signer.verifier).checkpoint
    assert cp.size == 1000
    assert cp.root == root_of([leaf_hash(f"x{i}".encode()) for i in range(1000)])
    for i in (0, 1, 255, 256, 511, 999):
        verify_inclusion(i, 1000, receipts[i].leaf_hash, log.inclusion_proof(i, 1000), cp.root)
    old = open_checkpoint(receipts[300].checkpoint, signer.verifier).checkpoint
    verify_consistency(old.size, 1000, old.root, cp.root, log.consistency_proof(old.size, 1000))
    with pytest.raises(NotFound):
        log.inclusion_proof(0, 1001)


def test_tiles_hold_the_tree(log: Log) -> None:
    for f in [log.submit(bytes([i % 256]) * 3) for i in range(600)]:
        f.result()
    full = split_hashes(log.store.read_tile(Tile(0, 1)), 256)
    assert full[0] == leaf_hash(bytes([0]) * 3)
    assert len(log.store.read_tile(Tile(0, 2, 88))) == 88 * 32
    with pytest.raises(NotFound):
        log.store.read_tile(Tile(0, 2, 89))
    with pytest.raises(NotFound):
        log.store.read_tile(Tile(1, 0))  # needs 65536 leaves
    assert log.store.read_entries(255, 257) == [bytes([255]) * 3, bytes([0]) * 3]


def test_reopen_keeps_everything(open_store: Opener, signer: Signer) -> None:
    lg = Log(open_store(), signer)
    lg.start()
    r = lg.append_sync(b"first")
    lg.close()
    lg = Log(open_store(), signer)
    lg.start()
    try:
        assert lg.size == 1
        r2 = lg.append_sync(b"second")
        assert r2.index == 1
        cp = open_checkpoint(r2.checkpoint, signer.verifier).checkpoint
        verify_inclusion(0, 2, r.leaf_hash, lg.inclusion_proof(0, 2), cp.root)
    finally:
        lg.close()


def test_entry_limit(log: Log) -> None:
    with pytest.raises(EntryTooLarge):
        log.submit(b"x" * 0x10000)
    assert log.append_sync(b"x" * 0xFFFF).index == 0


def test_append_before_start_is_refused(open_store: Opener, signer: Signer) -> None:
    lg = Log(open_store(), signer)
    try:
        with pytest.raises(LedgerUnavailable, match="not started"):
            lg.submit(b"x")
    finally:
        lg.close()


def test_second_writer_process_is_refused(tmp_path: Path, signer: Signer) -> None:
    db = tmp_path / "log.db"
    lg = Log(SQLiteStore(db), signer)
    try:
        with pytest.raises(StoreLocked):
            SQLiteStore(db)  # same process, second handle: flock is per open file
        code = (
            "import sys\nfrom ledger.store import SQLiteStore\n"
            "from ledger.errors import StoreLocked\n"
            f"try:\n    SQLiteStore({str(db)!r})\nexcept StoreLocked:\n    sys.exit(3)\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=False)
        assert out.returncode == 3, out.stderr.decode()
        # Readers need no lock.
        reader = SQLiteStore(db, writer=False)
        assert reader.size() == 0
        reader.close()
    finally:
        lg.close()
    SQLiteStore(db).close()  # released on close


def test_reader_of_missing_log(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        SQLiteStore(tmp_path / "absent.db", writer=False)


def _sql(store: object, statement: str) -> None:
    """Run ``statement`` on the store's database behind its back."""
    if isinstance(store, SQLiteStore):
        store._db().execute(statement)
    else:
        assert isinstance(store, PGStore)
        with psycopg.connect(store._conninfo, autocommit=True) as conn:
            conn.execute(statement.encode())


_BREAK = {"sqlite": "DROP TABLE leaves", "postgresql": "DROP TABLE ledger_nodes"}


def test_writer_failure_reaches_every_waiter(
    open_store: Opener, backend: str, signer: Signer
) -> None:
    store = open_store()
    lg = Log(store, signer)
    lg.start()
    lg.append_sync(b"ok")
    # Break the database under the writer: the pending append fails, loudly.
    _sql(store, _BREAK[backend])
    with pytest.raises(LedgerError, match="append failed"):
        lg.append_sync(b"lost?")
    assert not lg.healthy
    with pytest.raises(LedgerUnavailable, match="failed"):
        lg.submit(b"after")
    lg.close()


def test_a_writer_bug_fails_waiters_instead_of_hanging(
    open_store: Opener, signer: Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    lg = Log(open_store(), signer)

    def broken(self: Log, batch: object) -> bool:
        raise KeyError("a bug outside the commit")

    monkeypatch.setattr(Log, "_take_batch", broken)
    lg.start()
    fut = lg.submit(b"x")
    with pytest.raises(LedgerError, match="append failed"):
        fut.result(timeout=10)
    with pytest.raises(LedgerError, match="writer has failed"):
        lg.submit(b"y")
    assert not lg.healthy
    lg.close()


def test_reopening_under_another_key_is_refused(open_store: Opener, signer: Signer) -> None:
    lg = Log(open_store(), signer)
    lg.close()
    store = open_store()
    try:
        with pytest.raises(LedgerError):
            Log(store, Signer.generate("test.example/log"))
    finally:
        store.close()


_CORRUPT = {
    "sqlite": "UPDATE leaves SET hash = zeroblob(32) WHERE idx = 4",
    # The writer appends after the tree-state row's frontier, so that is what must match.
    "postgresql": "UPDATE ledger_tree SET frontier = overlay(frontier placing"
    " decode(repeat('00', 32), 'hex') from 33)",
}


def test_reopening_a_tree_that_disagrees_with_its_checkpoint_is_refused(
    open_store: Opener, backend: str, signer: Signer
) -> None:
    lg = Log(open_store(), signer)
    lg.start()
    for i in range(5):
        lg.append_sync(f"e{i}".encode())
    lg.close()
    store = open_store()
    _sql(store, _CORRUPT[backend])
    try:
        with pytest.raises(LedgerError, match="does not match"):
            Log(store, signer)
    finally:
        store.close()
