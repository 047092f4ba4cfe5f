"""Keeping cosignatures (a real SQLite file), adopting a cosigned checkpoint in the log,
and receipts that carry it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.checkpoint import CosignatureSigner, cosign, open_checkpoint, verify_witnessed
from ledger.cosignatures import CosignatureStore
from ledger.errors import InvalidCheckpoint, LedgerError
from ledger.log import Log
from ledger.note import Signer
from ledger.store import SQLiteStore

from .conftest import ORIGIN, T0

W = [CosignatureSigner(Signer.generate(f"w{i}.example/witness")) for i in range(3)]


def line(note: bytes, w: CosignatureSigner, ts: int = T0) -> bytes:
    return cosign(note, w, ts)[len(note) :]


@pytest.fixture
def log(tmp_path: Path) -> Iterator[Log]:
    ledger = Log(SQLiteStore(tmp_path / "ledger.db"), Signer.generate(ORIGIN))
    ledger.start()
    yield ledger
    ledger.close()


def test_store_finds_the_newest_quorum_and_survives_reopen(tmp_path: Path, log: Log) -> None:
    notes = {}
    for i in range(3):
        log.append_sync(f"entry {i}".encode())
        notes[log.size] = log.checkpoint()
    vkeys = [w.vkey for w in W]
    store = CosignatureStore(tmp_path / "cosignatures.db")
    assert store.newest(vkeys, 1) is None and store.witnessed_size(vkeys[0]) == 0
    store.add(vkeys[0], 2, notes[2], line(notes[2], W[0]), T0)
    store.add(vkeys[1], 2, notes[2], line(notes[2], W[1]), T0)
    store.add(vkeys[0], 3, notes[3], line(notes[3], W[0]), T0)
    store.close()

    store = CosignatureStore(tmp_path / "cosignatures.db")  # durable: a new process sees it
    assert store.witnessed_size(vkeys[0]) == 3 and store.witnessed_size(vkeys[2]) == 0
    size, note = store.newest(vkeys, 1) or (0, b"")
    assert size == 3 and verify_witnessed(note, log.verifier, [W[0].verifier], 1)
    size, note = store.newest(vkeys, 2) or (0, b"")
    assert size == 2
    assert len(verify_witnessed(note, log.verifier, [w.verifier for w in W], 2).cosignatures) == 2
    # Only the witnesses asked about count: w1 alone is not a quorum of one at size 3.
    assert (store.newest([vkeys[1]], 1) or (0,))[0] == 2
    assert store.newest(vkeys, 3) is None
    store.prune(3)
    assert store.newest(vkeys, 2) is None and (store.newest(vkeys, 1) or (0,))[0] == 3
    store.close()


def test_log_adopts_only_its_own_cosigned_checkpoints(tmp_path: Path, log: Log) -> None:
    for i in range(4):
        log.append_sync(f"entry {i}".encode())
    at4 = log.checkpoint()
    witnessed = cosign(at4, W[0], T0)
    log.append_sync(b"entry 4")
    assert log.cosigned_checkpoint is None
    log.set_cosigned(witnessed)
    assert log.cosigned_checkpoint == witnessed
    # Entries the cosigned tree covers get it in their receipt; a newer one the newest.
    r = log.receipt_for(1)
    assert r.checkpoint == witnessed and r.verify(log.verifier).size == 4
    verify_witnessed(r.checkpoint, log.verifier, [W[0].verifier], 1)
    assert log.receipt_for(4).checkpoint == log.checkpoint()

    # Another history under the same key, a size beyond the tree, or going backwards: no.
    other = Log(SQLiteStore(tmp_path / "other.db"), log.signer)
    other.start()
    try:
        for i in range(6):
            other.append_sync(f"other {i}".encode())
        with pytest.raises(InvalidCheckpoint, match="not this log's"):
            log.set_cosigned(cosign(_checkpoint_at(other, 4), W[0], T0))
        with pytest.raises(InvalidCheckpoint, match="beyond the tree"):
            log.set_cosigned(cosign(other.checkpoint(), W[0], T0))
    finally:
        other.close()
    with pytest.raises(LedgerError, match="below"):
        log.set_cosigned(cosign(_checkpoint_at(log, 2), W[0], T0))
    open_checkpoint(log.cosigned_checkpoint or b"", log.verifier)


def _checkpoint_at(log: Log, size: int) -> bytes:
    assert isinstance(log.store, SQLiteStore)
    note = log.store.checkpoint_at(size)
    assert note is not None
    return note
