"""SIGKILL of a random replica under append load, round after round (issue 14, "Tests").

Three replicas on one database; clients append through whichever replicas are ready. Each
round kills one at a random moment (mid-commit as likely as not: the load never pauses),
waits until every survivor has acknowledged appends since the kill (they go on without a
restart: the dead replica's transaction, lock included, went with its connection), then
restarts it on its port. After each round: every acknowledgement of the round is in the
current tree (inclusion proofs from the replicas, verified here), the previous round's tree
is a prefix of it (consistency proof), so every earlier acknowledgement still is too, and
no survivor refused an append. ``REPLICAS_SEED`` replays a run's random choices.
"""

from __future__ import annotations

import asyncio
import collections
import os
import random
import secrets
import time
from pathlib import Path

import aiohttp
import pytest

from ledger.checkpoint import Checkpoint
from ledger.note import Verifier
from ledger.pgstore import PGStore
from ledger.store import Frontier
from tests.replicas.client import (
    Ack,
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

ROUNDS = 20
SURVIVOR_ACKS = 3  # appends each survivor must acknowledge after a kill, within:
SURVIVOR_LIMIT = 15.0
SAMPLE = 20  # acknowledgements and checkpoints per round proven over HTTP


async def newest(http: aiohttp.ClientSession, replicas: Replicas, log: Verifier) -> Checkpoint:
    cps = [(await get_checkpoint(http, r, log))[0] for r in replicas.members if r.ready]
    return max(cps, key=lambda c: c.size)


def stored_leaves(store: PGStore, acks: list[Ack]) -> list[bytes]:
    return store.read_nodes([(0, a.receipt.index) for a in acks])


def roots_at(store: PGStore, sizes: set[int]) -> dict[int, bytes]:
    """The tree's root at each of ``sizes``, recomputed here from the stored entries (their
    hashes too): what an offline verifier of the whole log would find."""
    tree, roots = Frontier(), {0: Frontier().root()}
    end = max(sizes)
    for lo in range(0, end, 4096):
        for entry in store.read_entries(lo, min(lo + 4096, end)):
            tree.append([entry])
            if tree.size in sizes:
                roots[tree.size] = tree.root()
    return roots


async def test_sigkill_a_random_replica_under_load(replicas: Replicas, tmp_path: Path) -> None:
    seed = int(os.environ.get("REPLICAS_SEED") or secrets.randbits(32))
    print(f"REPLICAS_SEED={seed}")
    rng = random.Random(seed)
    members = replicas.start(3)
    log = Verifier.from_vkey(replicas.vkey)
    store = PGStore(replicas.database_url, writer=False)
    t0 = time.monotonic()
    async with aiohttp.ClientSession() as http:
        admins = [Admin() for _ in range(2)]
        for i, a in enumerate(admins):
            await a.enroll(http, replicas, members[0], by=admins[0] if i else None)
            await a.get_token(http, members[0])
        # Small load: the restarts need the CPU more than the appends do.
        load = Load(http, admins, members, log, pause=0.05)
        watcher = Watcher(http, members, log, load.returned)
        watching = asyncio.create_task(watcher.run())
        workers = await load.run(3)
        before = await newest(http, replicas, log)
        checked = 0
        try:
            for rnd in range(ROUNDS):
                victim = rng.choice(members)
                survivors = [r for r in members if r is not victim]
                await asyncio.sleep(rng.uniform(0.02, 0.3))
                killed_at = time.monotonic()
                victim.kill()

                def since(name: str, t: float = killed_at) -> int:
                    return sum(1 for a in load.acks if a.replica == name and a.at > t)

                kept_on = await load.until(
                    lambda s=survivors: all(since(r.name) >= SURVIVOR_ACKS for r in s),
                    SURVIVOR_LIMIT,
                )
                assert kept_on, f"round {rnd}: {[(r.name, since(r.name)) for r in survivors]}"
                assert not load.failures, f"round {rnd}: {load.failures[:5]}"
                # The victim restarts (on its port) while the round is checked and the load
                # goes on through the survivors.
                restarting = asyncio.create_task(asyncio.to_thread(victim.start))

                # Every acknowledgement of the round is in the tree now (all of them at
                # their index in the database; a sample by inclusion proofs from the
                # replicas), and the tree before the round is a prefix of it, so every
                # earlier acknowledgement still is. Each survivor committed after the
                # victim died, so its checkpoint covers every acknowledgement taken here.
                acks = load.acks[checked:]
                now = await newest(http, replicas, log)
                leaves = await asyncio.to_thread(stored_leaves, store, acks)
                assert leaves == [a.receipt.leaf_hash for a in acks], f"round {rnd}"
                await check_included(http, members, rng.sample(acks, min(SAMPLE, len(acks))), now)
                seen = receipt_checkpoints(acks, log)
                seen = [before, *rng.sample(seen, min(SAMPLE, len(seen)))]
                await check_consistent(http, members, seen, now)
                await restarting
                restart = time.monotonic() - killed_at
                per = {r.name: since(r.name) for r in survivors}  # while the victim was away
                assert not watching.done()  # no replica went back
                print(
                    f"round {rnd:2}: killed {victim.name}, back in {restart:.1f} s;"
                    f" survivors' acks {per}; {len(acks)} acks; size {now.size};"
                    f" {time.monotonic() - t0:.0f} s",
                    flush=True,
                )
                checked += len(acks)
                before = now
        finally:
            load.stopping = watcher.stopping = True
            await asyncio.gather(*workers)
            await watching
        final = await newest(http, replicas, log)

    try:
        # Every checkpoint any client saw, in a receipt or from a replica, is the root of
        # the stored log at its size: one history.
        seen = watcher.checkpoints() + receipt_checkpoints(load.acks, log) + [final]
        roots = await asyncio.to_thread(roots_at, store, {c.size for c in seen})
        assert all(roots[c.size] == c.root for c in seen)
        assert len({a.receipt.index for a in load.acks}) == len(load.acks)
        leaves = await asyncio.to_thread(stored_leaves, store, load.acks)
        assert leaves == [a.receipt.leaf_hash for a in load.acks]
    finally:
        store.close()
    per_replica = collections.Counter(a.replica for a in load.acks)
    print(f"{len(load.acks)} acks {dict(per_replica)}; {len(roots)} sizes checked")

    out = tmp_path / "export"
    telegate(
        *("ledger", "export", str(out), "--data-dir", str(replicas.data_dir)),
        *("--database-url", replicas.database_url),
        env=replicas.cli_env(),
    )
    line = telegate("verify", str(out), "--vkey", replicas.vkey, "--quiet", "--workers", "1")
    assert line.startswith(f"OK {log.name} size "), line
    assert int(line.split()[3]) >= final.size, line
