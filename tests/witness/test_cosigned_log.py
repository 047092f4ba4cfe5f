"""Adopting a cosigned checkpoint in the log, and receipts that carry it (keeping the
cosignatures: tests/db/test_cosignatures.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.checkpoint import CosignatureSigner, cosign, open_checkpoint, verify_witnessed
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
