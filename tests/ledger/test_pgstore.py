"""The PostgreSQL store: several writers on one log, outages, schema, secrets.

The backend-neutral behaviour (receipts, tiles, reopen, failures) runs on PostgreSQL too, in
test_log.py; processes appending and crashing together are in test_pg_writers.py.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ledger.checkpoint import open_checkpoint
from ledger.errors import LedgerError, LedgerUnavailable, NotFound
from ledger.log import Log
from ledger.merkle import verify_consistency, verify_inclusion
from ledger.note import Signer
from ledger.pgstore import PGStore
from tests.ledger.tcpproxy import Proxy


@pytest.fixture
def signer() -> Signer:
    return Signer.generate("pg.example/log")


@pytest.fixture
def proxy(pg_url: str) -> Iterator[Proxy]:
    d = conninfo_to_dict(pg_url)
    p = Proxy((str(d.get("host") or "127.0.0.1"), int(d.get("port") or 5432)))
    yield p
    p.close()


def _wait(cond: object, what: str, limit: float = 20.0) -> None:
    """Wait for an event another thread causes (not for time to pass)."""
    deadline = time.monotonic() + limit
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_two_writers_grow_one_tree(pg_url: str, signer: Signer) -> None:
    a = Log(PGStore(pg_url), signer)
    # b never refreshes when idle: what it learns of a's appends, it learns on demand.
    b = Log(PGStore(pg_url), signer, refresh_interval=3600)
    a.start()
    b.start()
    try:
        ra = [a.append_sync(f"a{i}".encode()) for i in range(3)]
        assert [r.index for r in ra] == [0, 1, 2]
        assert b.size == 0  # its view is stale...
        # ...but a reader asking for more of the tree than it holds gets the tree.
        assert b.receipt_for(2) == ra[2]
        assert b.size == 3 and b.checkpoint() == a.checkpoint()
        rb = b.append_sync(b"b0")
        assert rb.index == 3  # appended after a's entries, not over them
        rb.verify(signer.verifier, b"b0")
        cp = open_checkpoint(rb.checkpoint, signer.verifier).checkpoint
        for i, r in enumerate(ra):
            verify_inclusion(i, 4, r.leaf_hash, a.inclusion_proof(i, 4), cp.root)
        old = open_checkpoint(ra[2].checkpoint, signer.verifier).checkpoint
        verify_consistency(3, 4, old.root, cp.root, a.consistency_proof(3, 4))
        ra.append(a.append_sync(b"a3"))
        assert ra[-1].index == 4
        with pytest.raises(NotFound):
            b.inclusion_proof(0, 6)
    finally:
        a.close()
        b.close()


def test_an_idle_writer_follows_the_others(pg_url: str, signer: Signer) -> None:
    a = Log(PGStore(pg_url), signer)
    b = Log(PGStore(pg_url), signer, refresh_interval=0.02)
    a.start()
    b.start()
    try:
        r = a.append_sync(b"x")
        _wait(lambda: b.size == 1, "b to see a's append")
        assert b.checkpoint() == r.checkpoint
        # The view never goes back, whatever a slower refresh read.
        b._advance(0, b"an older note")
        assert (b.size, b.checkpoint()) == (1, r.checkpoint)
    finally:
        a.close()
        b.close()


def test_an_outage_fails_appends_and_they_resume(
    pg_url: str, proxy: Proxy, signer: Signer, caplog: pytest.LogCaptureFixture
) -> None:
    url = make_conninfo(pg_url, host="127.0.0.1", port=proxy.port)
    lg = Log(PGStore(url, connect_timeout=2), signer, refresh_interval=0.05)
    lg.start()
    try:
        lg.append_sync(b"before", timeout=30)
        proxy.cut()
        t0 = time.monotonic()
        with pytest.raises(LedgerUnavailable):
            lg.append_sync(b"during", timeout=30)
        assert time.monotonic() - t0 < 10, "an outage must fail appends, not hang them"
        assert not lg.healthy
        with pytest.raises(LedgerUnavailable):
            lg.store.read_entries(0, 1)
        with pytest.raises(LedgerUnavailable):
            lg.append_sync(b"still down", timeout=30)
        proxy.restore()
        _wait(lambda: lg.healthy, "the writer to reconnect by itself")
        r = lg.append_sync(b"after", timeout=30)
        assert r.index == 1  # nothing refused was written
        r.verify(signer.verifier, b"after")
        assert lg.store.read_entries(0, 2) == [b"before", b"after"]
    finally:
        lg.close()
    assert "password" not in caplog.text


def test_a_restarted_server_connection_is_replaced(pg_url: str, signer: Signer) -> None:
    store = PGStore(pg_url)
    lg = Log(store, signer, refresh_interval=3600)
    lg.start()
    try:
        lg.append_sync(b"one")
        assert store._wconn is not None
        pid = store._wconn.info.backend_pid
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        # The dead connection is noticed before the lock is taken: retried, not refused.
        assert lg.append_sync(b"two").index == 1
        assert store._wconn is not None and store._wconn.info.backend_pid != pid
    finally:
        lg.close()


def test_schema_is_idempotent_and_versioned(pg_url: str) -> None:
    PGStore(pg_url).close()
    PGStore(pg_url).close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM ledger_schema").fetchall() == [(1,)]
        conn.execute("UPDATE ledger_schema SET version = 99")
    with pytest.raises(LedgerError, match="version 99"):
        PGStore(pg_url)


def test_a_reader_creates_nothing(pg_url: str) -> None:
    with pytest.raises(NotFound):
        PGStore(pg_url, writer=False)
    PGStore(pg_url).close()
    reader = PGStore(pg_url, writer=False)
    try:
        assert reader.size() == 0
        with pytest.raises(LedgerError, match="read-only"):
            reader.commit([b"x"], reader.frontier(), lambda size, root: b"")
    finally:
        reader.close()


def test_the_password_never_shows(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    url = "postgresql://telegate:s3cr3t-pw@127.0.0.1:1/nowhere"
    with pytest.raises(LedgerUnavailable) as e:
        PGStore(url, connect_timeout=2)
    assert "s3cr3t" not in str(e.value) and "s3cr3t" not in caplog.text
    assert "s3cr3t" not in repr(e.value.__cause__)


def test_a_stuck_lock_holder_fails_appends_instead_of_hanging(pg_url: str, signer: Signer) -> None:
    lg = Log(PGStore(pg_url, lock_timeout=1.0), signer, refresh_interval=3600)
    lg.start()
    try:
        lg.append_sync(b"first", timeout=30)
        # Another session (a writer whose host froze mid-batch) holds the tree-state lock.
        with psycopg.connect(pg_url) as holder:
            holder.execute("SELECT size FROM ledger_tree FOR UPDATE")
            t0 = time.monotonic()
            with pytest.raises(LedgerUnavailable):
                lg.append_sync(b"blocked", timeout=30)
            assert time.monotonic() - t0 < 10
            holder.rollback()
        r = lg.append_sync(b"after", timeout=30)
        assert r.index == 1  # the refused entry was not written
        r.verify(signer.verifier, b"after")
    finally:
        lg.close()


def test_receipts_of_interleaved_writers_are_the_trees_proofs(pg_url: str, signer: Signer) -> None:
    # Each commit's receipts come from memory (the batch's nodes and the frontier it found
    # under the lock), here after the other writer grew the tree by batches of every shape.
    a = Log(PGStore(pg_url), signer, refresh_interval=3600)
    b = Log(PGStore(pg_url), signer, refresh_interval=3600)
    a.start()
    b.start()
    try:
        receipts = []
        for k, n in enumerate([1, 2, 3, 5, 8, 13, 31, 64, 1, 100, 7, 256, 3]):
            lg = (a, b)[k % 2]
            futs = [lg.submit(f"{k}/{i}".encode()) for i in range(n)]
            receipts += [f.result(30) for f in futs]
        size = max(r.index for r in receipts) + 1
        assert sorted(r.index for r in receipts) == list(range(size))
        for r in receipts:
            cp = open_checkpoint(r.checkpoint, signer.verifier).checkpoint
            assert list(r.proof) == a.inclusion_proof(r.index, cp.size)
            verify_inclusion(r.index, cp.size, r.leaf_hash, r.proof, cp.root)
    finally:
        a.close()
        b.close()


def test_a_commit_that_would_disagree_with_its_rows_is_refused(pg_url: str, signer: Signer) -> None:
    lg = Log(PGStore(pg_url), signer, refresh_interval=3600)
    lg.start()
    try:
        lg.append_sync(b"one")
        with psycopg.connect(pg_url, autocommit=True) as conn:
            # A stray leaf beyond the tree (a bug, or a hand edit): the next commit's leaves
            # would no longer end where its tree does.
            conn.execute("INSERT INTO ledger_nodes VALUES (5, %s, 'x')", (bytes(32),))
        with pytest.raises(LedgerError):
            lg.append_sync(b"two", timeout=30)
        with psycopg.connect(pg_url, autocommit=True) as conn:
            assert conn.execute("SELECT size FROM ledger_tree").fetchone() == (1,)
            assert conn.execute("SELECT count(*) FROM ledger_checkpoints").fetchone() == (2,)
            # Neither the batch's rows nor the state row that carried its checkpoint.
            ids = conn.execute("SELECT id FROM ledger_nodes ORDER BY id").fetchall()
            assert ids == [(0,), (5,)]
    finally:
        lg.close()
