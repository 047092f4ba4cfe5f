"""The embedded log store on a real full file system and under another process's lock: a
commit that cannot be made durable fails its batch only (LedgerUnavailable), the writer goes
on, and the next commit after the fault succeeds, with no restart and nothing half-kept."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledger.errors import LedgerUnavailable
from ledger.log import Log
from ledger.note import Signer
from ledger.store import SQLiteStore
from tests.faults.conftest import fill, tmpfs

ORIGIN = "faults.example/store"


def _entry(n: int) -> bytes:
    # Incompressible-ish and large enough that a few of them need new pages.
    return (f"{n:08d}".encode() * 512)[:4000]


def test_full_disk_fails_the_batch_not_the_writer(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "mnt", 4) as mnt:
        store = SQLiteStore(mnt / "ledger.db")
        log = Log(store, Signer.generate(ORIGIN))
        log.start()
        try:
            acked = [log.append_sync(_entry(n), timeout=10) for n in range(20)]
            filler = mnt / "filler"
            fill(filler)
            refused = 0
            for n in range(20, 400):
                try:
                    acked.append(log.append_sync(_entry(n), timeout=10))
                except LedgerUnavailable:
                    refused += 1
                    if refused >= 3:
                        break
                fill(filler)
            assert refused >= 3, "a full file system never refused a commit"
            assert not log.healthy
            filler.unlink()
            # Space is back: the same writer thread commits again.
            acked.append(log.append_sync(_entry(999), timeout=10))
            assert log.healthy
            for r in acked:
                r.verify(log.verifier)
                assert store.read_nodes([(0, r.index)]) == [r.leaf_hash]
            size = log.size
        finally:
            log.close()
        # Reopened: leaves, nodes and checkpoint agree (SQLiteStore checks it on open).
        again = SQLiteStore(mnt / "ledger.db")
        try:
            assert again.size() == size == len(acked)
        finally:
            again.close()


HOLD = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("held", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("COMMIT")
"""


def hold_lock(path: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process holding ``BEGIN EXCLUSIVE`` on the SQLite file ``path``."""
    p = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert p.stdout is not None and p.stdout.readline().strip() == "held"
    return p


@pytest.mark.parametrize("seconds", [6.0])
def test_locked_past_busy_timeout_fails_the_batch_not_the_writer(
    tmp_path: Path, seconds: float
) -> None:
    store = SQLiteStore(tmp_path / "ledger.db")
    log = Log(store, Signer.generate(ORIGIN))
    log.start()
    try:
        first = log.append_sync(b"before", timeout=10)
        holder = hold_lock(tmp_path / "ledger.db", seconds)
        try:
            t0 = time.monotonic()
            with pytest.raises(LedgerUnavailable):
                log.append_sync(b"while locked", timeout=20)
            # busy_timeout (5 s), not a hang.
            assert time.monotonic() - t0 < seconds + 1
        finally:
            holder.communicate(timeout=20)
        after = log.append_sync(b"after", timeout=10)
        assert log.healthy
        assert after.index == first.index + 1
        after.verify(log.verifier)
    finally:
        log.close()


def test_ready_again_when_space_returns_without_an_append(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "mnt", 4) as mnt:
        log = Log(SQLiteStore(mnt / "ledger.db"), Signer.generate(ORIGIN))
        log.start()
        try:
            filler = mnt / "filler"
            with pytest.raises(LedgerUnavailable):
                for n in range(400):
                    fill(filler)
                    log.append_sync(_entry(n), timeout=10)
            assert not log.healthy
            filler.unlink()
            deadline = time.monotonic() + 2
            while not log.healthy and time.monotonic() < deadline:
                time.sleep(0.05)
            assert log.healthy
        finally:
            log.close()
