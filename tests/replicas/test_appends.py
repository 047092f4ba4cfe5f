"""Two and three replicas appending to one log at once (issue 14, "Tests").

Clients spread their appends over every replica while a watcher reads each replica's
checkpoint. The log that results is checked from outside, as a verifier would: the
``telegate verify`` CLI accepts the export of the database, every acknowledged receipt's
leaf is in the final tree (inclusion proof from any replica), and every checkpoint any
client saw (watched, or inside a receipt) is a prefix of the final one (consistency
proofs). No replica ever answered with a checkpoint older than one it had returned.
"""

from __future__ import annotations

import asyncio
import collections
import time
from pathlib import Path

import aiohttp
import pytest

from ledger.note import Verifier
from tests.replicas.client import (
    Admin,
    Load,
    Watcher,
    check_consistent,
    check_included,
    get_checkpoint,
    receipt_checkpoints,
)
from tests.replicas.conftest import Replicas, telegate

pytestmark = pytest.mark.slow

ACKS = 240  # appends acknowledged before the load stops
LIMIT = 60.0  # seconds the load may take to reach them


@pytest.mark.parametrize("n", [2, 3])
async def test_replicas_grow_one_log(replicas: Replicas, n: int, tmp_path: Path) -> None:
    members = replicas.start(n)
    log = Verifier.from_vkey(replicas.vkey)
    async with aiohttp.ClientSession() as http:
        admins = [Admin() for _ in range(3)]
        for i, a in enumerate(admins):
            await a.enroll(http, replicas, members[i % n], by=admins[0] if i else None)
            # From one replica only: see test_tokens_issued_through_every_replica.
            await a.get_token(http, members[0])
        load = Load(http, admins, members, log)
        watcher = Watcher(http, members, log, load.returned)
        watching = asyncio.create_task(watcher.run())
        workers = await load.run(6)
        t0 = time.monotonic()
        await load.until(lambda: len(load.acks) >= ACKS or watching.done(), LIMIT)
        load.stopping = watcher.stopping = True
        await asyncio.gather(*workers)
        await watching  # raises if a replica went back
        took = time.monotonic() - t0

        assert not load.failures, load.failures[:5]
        assert len(load.acks) >= ACKS, f"only {len(load.acks)} appends in {LIMIT} s"
        per = collections.Counter(a.replica for a in load.acks)
        assert set(per) == {r.name for r in members}, per  # every replica appended

        finals = [(await get_checkpoint(http, r, log))[0] for r in members]
        final = max(finals, key=lambda c: c.size)
        assert final.size >= len(load.acks) + len(admins) * 2  # enrolments and tokens too
        await check_included(http, members, load.acks, final)
        seen = watcher.checkpoints() + receipt_checkpoints(load.acks, log) + finals
        sizes = await check_consistent(http, members, seen, final)
        assert sizes > n  # the watcher saw the log grow, not one checkpoint
        assert watcher.catch_ups > 0  # lagging replicas were asked about newer trees
        print(
            f"{n} replicas: {len(load.acks)} appends in {took:.1f} s {dict(per)}; {sizes} sizes,"
            f" {watcher.catch_ups} catch-ups"
        )

    # The whole log, exported from the database and verified offline by the CLI.
    out = tmp_path / "export"
    telegate(
        *("ledger", "export", str(out), "--data-dir", str(replicas.data_dir)),
        *("--database-url", replicas.database_url),
        env=replicas.cli_env(),
    )
    line = telegate("verify", str(out), "--vkey", replicas.vkey, "--quiet", "--workers", "1")
    assert line.startswith(f"OK {log.name} size "), line
    assert int(line.split()[3]) >= final.size, line
    # And over HTTP from the last replica (tiles, entry bundles and checkpoint as it serves
    # them), as a monitor would.
    url = members[-1].url + "/ledger/"
    line = telegate("verify", url, "--vkey", replicas.vkey, "--quiet", "--workers", "1")
    assert line.startswith(f"OK {log.name} size "), line
    assert int(line.split()[3]) >= final.size, line


async def test_tokens_issued_through_every_replica(replicas: Replicas) -> None:
    members = replicas.start(2)
    async with aiohttp.ClientSession() as http:
        for r in members:
            a = Admin()
            await a.enroll(http, replicas, r)
            await a.get_token(http, r)
