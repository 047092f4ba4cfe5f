"""PostgreSQL stops and starts under a running replica (issue 14: "A PostgreSQL restart
makes appends fail with 503 + Retry-After (never a hang and never an acknowledgement
without durability) and they resume by themselves when it is back").

The server is a private cluster of this test (``PrivatePostgres``): the shared one is
never stopped. Appends go on through the whole outage from a few clients; every answer is
201 with a receipt or 503 with Retry-After, each within a bound, and every 201 is in the
log afterwards. The gateway process is the same one throughout.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ledger.log import Receipt
from ledger.note import Verifier
from ledger.pgstore import PGStore
from tests.replicas.client import (
    Ack,
    Admin,
    append,
    check_consistent,
    check_included,
    get_checkpoint,
)
from tests.replicas.conftest import PrivatePostgres, Replicas, fresh_database

pytestmark = pytest.mark.slow

#: The longest an append may take to be answered, outage or not: the store's connect
#: timeout (5 s) plus slack for a loaded machine. A hang fails the test at REQUEST_TIMEOUT.
ANSWER_LIMIT = 8.0
RECOVERY_LIMIT = 30.0


async def readyz(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(url + "/readyz", timeout=aiohttp.ClientTimeout(total=10)) as resp:
        return resp.status


async def test_appends_fail_fast_while_postgres_is_down_and_resume_without_restart(
    private_pg: PrivatePostgres, tmp_path: Path
) -> None:
    # Not dropped: the cluster goes whole, and may be down when the test fails.
    with fresh_database(private_pg.url, drop=False) as url:
        group = Replicas(tmp_path, url)
        try:
            await outage(private_pg, group, url)
        finally:
            group.stop()


async def outage(private_pg: PrivatePostgres, group: Replicas, url: str) -> None:
    (replica,) = group.start(1)
    pid = replica.proc.pid if replica.proc else None
    log = Verifier.from_vkey(group.vkey)
    async with aiohttp.ClientSession() as http:
        admin = Admin()
        await admin.enroll(http, group, replica)
        await admin.get_token(http, replica)
        acks: list[Ack] = []
        answers: list[tuple[float, float, int, Any]] = []  # (asked at, took, status, body)
        stop = False

        async def client() -> None:
            while not stop:
                t = time.monotonic()
                status, body = await append(http, admin, replica)
                answers.append((t, time.monotonic() - t, status, body))
                if status == 201:
                    receipt = Receipt.from_json(body["receipt"])
                    receipt.verify(log)
                    acks.append(Ack(replica.name, receipt, time.monotonic()))
                await asyncio.sleep(0.02)

        clients = [asyncio.create_task(client()) for _ in range(3)]
        try:
            await wait_for(lambda: len(acks) >= 20, 20, "appends before the outage")
            before, _ = await get_checkpoint(http, replica, log)

            stopped = time.monotonic()
            await asyncio.to_thread(private_pg.stop)
            down = time.monotonic()
            # Every append asked once the server is gone is refused, promptly, with
            # Retry-After (RFC 9110 10.2.3) in an RFC 9457 problem.
            await wait_for(
                lambda: sum(1 for a in answers if a[0] > down) >= 6, 30, "answers in outage"
            )
            assert await readyz(http, replica.url) == 503
            outage = [a for a in answers if a[0] > down]
            assert {a[2] for a in outage} == {503}, [a[2:] for a in outage][:5]
            assert all(int(a[3]["retry_after"]) > 0 for a in outage)
            assert all(a[3]["type"].endswith("/unavailable") for a in outage)

            await asyncio.to_thread(private_pg.start)
            up = time.monotonic()
            await wait_for(
                lambda: any(a[0] > up and a[2] == 201 for a in answers),
                RECOVERY_LIMIT,
                "an append after PostgreSQL came back",
            )
            resumed = min(a[0] + a[1] for a in answers if a[0] > up and a[2] == 201) - up
            n = len(acks)
            await wait_for(lambda: len(acks) >= n + 10, 20, "appends after the outage")
        finally:
            stop = True
            await asyncio.gather(*clients)

        # Never a hang: every answer, before, during and after the outage, came in time.
        slowest = max(a[1] for a in answers)
        assert slowest < ANSWER_LIMIT, slowest
        # Only 201 and 503 (the moment of the stop may fail either way, never else).
        assert {a[2] for a in answers} <= {201, 503}
        assert replica.proc is not None and replica.proc.pid == pid and replica.starts == 1
        assert await readyz(http, replica.url) == 200

        final, _ = await get_checkpoint(http, replica, log)
        await check_included(http, [replica], acks, final)
        await check_consistent(http, [replica], [before], final)
        print(
            f"{len(acks)} acks, {sum(a[2] == 503 for a in answers)} refusals;"
            f" stop took {down - stopped:.1f} s; appends resumed {resumed:.2f} s after"
            f" the server; slowest answer {slowest:.2f} s"
        )
        # The acknowledged entries are in the database itself, not only in a replica's view.
        store = PGStore(url, writer=False)
        try:
            assert store.size() >= final.size
            leaves = store.read_nodes([(0, a.receipt.index) for a in acks])
        finally:
            store.close()
        assert leaves == [a.receipt.leaf_hash for a in acks]


async def wait_for(cond: object, limit: float, what: str) -> None:
    """Wait for what other tasks or processes cause (appends answered), at most ``limit``."""
    deadline = time.monotonic() + limit
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)
