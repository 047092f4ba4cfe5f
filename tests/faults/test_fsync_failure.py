"""The ledger's fsync failing, injected (beside the real full disk of test_disk_full.py and
test_store_faults.py, which no test hook can fake): the COMMIT of a batch, where SQLite
syncs its WAL, raises as a failed fsync does, once; either SQLite's own report of it
(``SQLITE_IOERR_FSYNC``) or an OSError met in the commit path. That batch is answered 503
and never acknowledged, nothing of it is in the log, the writer goes on, and the very next
batch commits, in the same process."""

from __future__ import annotations

import asyncio
import errno
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.appkeys import LOG
from gateway.config import Config
from ledger.errors import LedgerUnavailable
from ledger.log import Log
from ledger.note import Signer
from ledger.store import SQLiteStore
from tests.faults.conftest import ORIGIN, verify
from tests.gateway.idclient import call
from tests.gateway.vitals.world import World, batch, hr


def sqlite_fsync_error() -> BaseException:
    """What Python's sqlite3 raises when SQLite's fsync of the WAL fails."""
    e = sqlite3.OperationalError("disk I/O error")
    e.sqlite_errorcode = sqlite3.SQLITE_IOERR_FSYNC  # type: ignore[attr-defined]
    e.sqlite_errorname = "SQLITE_IOERR_FSYNC"  # type: ignore[attr-defined]
    return e


def os_fsync_error() -> BaseException:
    return OSError(errno.EIO, "Input/output error (injected fsync failure)")


FAULTS = [
    pytest.param(sqlite_fsync_error, id="sqlite-ioerr-fsync"),
    pytest.param(os_fsync_error, id="oserror-eio"),
]


class _FailingCommit:
    """A writer connection whose next ``COMMIT``(s) raise ``fault()`` instead of committing,
    as SQLite does when the fsync under the commit fails (the transaction is not kept)."""

    def __init__(self, db: sqlite3.Connection, fault: Callable[[], BaseException], left: list[int]):
        self._db, self._fault, self._left = db, fault, left

    def execute(self, sql: str, *args: Any) -> Any:
        if sql == "COMMIT" and self._left[0] > 0:
            self._left[0] -= 1
            raise self._fault()
        return self._db.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


class Injector:
    """Arms ``n`` failed commits on a SQLiteStore (its per-thread connection wrapped)."""

    def __init__(self, store: SQLiteStore, fault: Callable[[], BaseException]) -> None:
        self.left = [0]
        real = store._db
        store._db = lambda: _FailingCommit(real(), fault, self.left)  # type: ignore[method-assign,assignment,return-value]

    def arm(self, n: int = 1) -> None:
        self.left[0] = n

    @property
    def spent(self) -> bool:
        return self.left[0] == 0


@pytest.mark.parametrize("fault", FAULTS)
def test_failed_fsync_fails_the_batch_not_the_writer(
    tmp_path: Path, fault: Callable[[], BaseException]
) -> None:
    store = SQLiteStore(tmp_path / "ledger.db")
    inject = Injector(store, fault)
    log = Log(store, Signer.generate(ORIGIN))
    log.start()
    try:
        acked = [log.append_sync(b"entry %d" % n, timeout=10) for n in range(5)]
        inject.arm()
        with pytest.raises(LedgerUnavailable):
            log.append_sync(b"never acknowledged", timeout=10)
        assert inject.spent and not log.healthy
        # The same writer thread, the next batch: committed, at the index the failed one
        # would have had (nothing of it was kept).
        after = log.append_sync(b"after", timeout=10)
        assert log.healthy
        assert after.index == acked[-1].index + 1
        acked.append(after)
        for r in acked:
            r.verify(log.verifier)
            assert store.read_nodes([(0, r.index)]) == [r.leaf_hash]
        size = log.size
    finally:
        log.close()
    again = SQLiteStore(tmp_path / "ledger.db")  # checks leaves, nodes and checkpoint agree
    try:
        assert again.size() == size == len(acked)
        assert b"never acknowledged" not in again.read_entries(0, size)
    finally:
        again.close()


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Config]:
    # SQLite whatever the environment says: the fault is injected into SQLiteStore.
    yield Config(data_dir=tmp_path / "data", log_origin=ORIGIN)


@pytest.mark.parametrize("fault", FAULTS)
async def test_gateway_answers_503_then_commits_the_next_batch(
    aiohttp_client: Any, embedded: Config, fault: Callable[[], BaseException]
) -> None:
    client: TestClient[Any, Any] = await aiohttp_client(create_app(embedded))
    log = client.app[LOG]
    assert isinstance(log.store, SQLiteStore)
    inject = Injector(log.store, fault)
    w = await World(client).setup(embedded)

    async def size() -> int:
        return int((await (await client.get("/readyz")).json())["ledger_size"])

    async def invite() -> Any:
        return await call(client, "POST", "/v1/invites", w.adm, w.adm_t, json={"role": "patient"})

    for send in (lambda: w.send(batch([hr(70, w.now() - 1)])), invite):
        before = await size()
        inject.arm()
        resp = await send()
        body = await resp.json()
        assert resp.status == 503, body
        assert resp.headers["Content-Type"].startswith("application/problem+json")
        assert body["type"].endswith("/unavailable") and "receipt" not in body
        assert int(resp.headers["Retry-After"]) >= 1
        assert inject.spent
        assert (await client.get("/readyz")).status == 503  # until the next commit
        resp = await send()
        assert resp.status == 201, await resp.text()
        receipt = (await resp.json())["receipt"]
        # The refused one left nothing in the log: the next is right after what was there.
        assert receipt["index"] == before and await size() == before + 1
        assert (await client.get("/readyz")).status == 200
    # What `telegate verify` runs, in a thread: the gateway answers it on this loop.
    await asyncio.to_thread(verify, str(client.make_url("/ledger/")))
