"""The cosignature store (gateway.cosignatures) on SQLite and on PostgreSQL, alone and with
two replicas keeping lines in one database."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.cosignatures import CosignatureStore
from gateway.cosignatures.tables import cosignatures
from gateway.db import Database, reading
from ledger.checkpoint import CosignatureSigner, cosign, verify_witnessed
from ledger.log import Log
from ledger.note import Signer
from ledger.store import SQLiteStore

T0 = 1_760_000_000
W = [CosignatureSigner(Signer.generate(f"w{i}.example/witness")) for i in range(3)]
VKEYS = [w.vkey for w in W]


def line(note: bytes, w: CosignatureSigner, ts: int = T0) -> bytes:
    return cosign(note, w, ts)[len(note) :]


@pytest.fixture
def log(tmp_path: Path) -> Iterator[Log]:
    ledger = Log(SQLiteStore(tmp_path / "ledger.db"), Signer.generate("test.example/log"))
    ledger.start()
    yield ledger
    ledger.close()


@pytest.fixture
def notes(log: Log) -> dict[int, bytes]:
    out = {}
    for i in range(4):
        log.append_sync(f"entry {i}".encode())
        out[log.size] = log.checkpoint()
    return out


def test_store_finds_the_newest_quorum_and_survives_reopen(
    db: Database, log: Log, notes: dict[int, bytes]
) -> None:
    store = CosignatureStore(db.open("cosignatures"))
    assert store.newest(VKEYS, 1) is None and store.witnessed_size(VKEYS[0]) == 0
    store.add(VKEYS[0], 2, notes[2], line(notes[2], W[0]), T0)
    store.add(VKEYS[1], 2, notes[2], line(notes[2], W[1]), T0)
    store.add(VKEYS[0], 3, notes[3], line(notes[3], W[0]), T0)

    again = Database(db.data_dir, db.url)  # durable: a new process sees it
    try:
        store = CosignatureStore(again.open("cosignatures"))
        assert store.witnessed_size(VKEYS[0]) == 3 and store.witnessed_size(VKEYS[2]) == 0
        size, note = store.newest(VKEYS, 1) or (0, b"")
        assert size == 3 and verify_witnessed(note, log.verifier, [W[0].verifier], 1)
        size, note = store.newest(VKEYS, 2) or (0, b"")
        assert size == 2
        witnessed = verify_witnessed(note, log.verifier, [w.verifier for w in W], 2)
        assert len(witnessed.cosignatures) == 2
        # Only the witnesses asked about count: w1 alone is not a quorum of one at size 3.
        assert (store.newest([VKEYS[1]], 1) or (0,))[0] == 2
        assert store.newest(VKEYS, 3) is None
        store.prune(3)
        assert store.newest(VKEYS, 2) is None and (store.newest(VKEYS, 1) or (0,))[0] == 3
    finally:
        again.close()


def test_a_witness_size_never_goes_down_and_a_kept_line_stays(
    db: Database, notes: dict[int, bytes]
) -> None:
    # Two replicas submit to the same witness: the one that was behind keeps its answer for
    # an older size after the other kept a newer one.
    ours = CosignatureStore(db.open("cosignatures"))
    replica = Database(db.data_dir, db.url)
    try:
        theirs = CosignatureStore(replica.open("cosignatures"))
        theirs.add(VKEYS[0], 4, notes[4], line(notes[4], W[0]), T0)
        ours.add(VKEYS[0], 2, notes[2], line(notes[2], W[0]), T0)
        assert ours.witnessed_size(VKEYS[0]) == theirs.witnessed_size(VKEYS[0]) == 4
        # The same size answered again to the other replica: the first line kept stays.
        first = line(notes[4], W[0], T0)
        theirs.add(VKEYS[0], 4, notes[4], line(notes[4], W[0], T0 + 5), T0 + 5)
        found = ours.newest([VKEYS[0]], 1)
        assert found is not None and found[1].endswith(first)
    finally:
        replica.close()


def test_replicas_keeping_lines_at_once_lose_none(
    db: Database, log: Log, notes: dict[int, bytes]
) -> None:
    # Each of three replicas keeps one witness's line on every size, in parallel: every
    # line is kept and each witness ends at the largest size.
    dbs = [Database(db.data_dir, db.url) for _ in W]
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            store = CosignatureStore(dbs[i].open("cosignatures"))
            for size in sorted(notes, reverse=bool(i % 2)):
                store.add(VKEYS[i], size, notes[size], line(notes[size], W[i]), T0)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(W))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        for d in dbs:
            d.close()
    assert errors == []
    store = CosignatureStore(db.open("cosignatures"))
    assert [store.witnessed_size(v) for v in VKEYS] == [4, 4, 4]
    with reading(db.engine("cosignatures")) as conn:
        kept = conn.execute(sa.select(cosignatures.c.size, cosignatures.c.witness)).all()
    assert sorted(kept) == sorted((size, v) for size in notes for v in VKEYS)
    found = store.newest(VKEYS, 3)
    assert found is not None and found[0] == 4
    assert (
        len(verify_witnessed(found[1], log.verifier, [w.verifier for w in W], 3).cosignatures) == 3
    )
