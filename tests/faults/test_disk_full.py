"""Disk full: the data directory on a small tmpfs that fills up while clients append.

What may not happen: an append acknowledged (201 with a receipt) that the log does not hold,
an answer other than 201 or 503 + Retry-After to an append, a read refused because the disk
is full, or a gateway that needs a restart once space returns.
"""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path
from typing import Any

from tests.faults.conftest import Gateway, Remote, fill, remote, tmpfs, world
from tests.gateway.idclient import call, get_token, invite_and_enroll
from tests.gateway.vitals.world import World, batch, hr

APPENDED = {201}
TRANSIENT = {503}


class Appends:
    """Appends through the API of two kinds (an invite: identity + ledger; a vitals batch:
    vitals store + ledger), with every answer kept."""

    def __init__(self, r: Remote, w: World) -> None:
        self.r, self.w = r, w
        self.receipts: list[dict[str, Any]] = []
        self.answers: list[tuple[str, int, str, dict[str, str]]] = []

    async def one(self, n: int) -> int:
        if n % 2:
            resp = await call(
                self.r, "POST", "/v1/invites", self.w.adm, self.w.adm_t, json={"role": "patient"}
            )
            kind = "invite"
        else:
            resp = await self.w.send(batch([hr(60 + n % 40, time.time() - 1)]))
            kind = "vitals"
        body = await resp.text()
        self.answers.append((kind, resp.status, body, dict(resp.headers)))
        if resp.status in APPENDED:
            self.receipts.append((await resp.json())["receipt"])
        return resp.status

    async def some(self, start: int, count: int, tasks: int = 4) -> list[int]:
        sem = asyncio.Semaphore(tasks)

        async def go(n: int) -> int:
            async with sem:
                return await self.one(n)

        return list(await asyncio.gather(*(go(n) for n in range(start, start + count))))

    def check_answers(self) -> None:
        for kind, status, body, headers in self.answers:
            assert status in APPENDED | TRANSIENT, (kind, status, body)
            if status in TRANSIENT:
                # RFC 9457 problem, and when to come back (RFC 9110 10.2.3).
                assert headers.get("Content-Type", "").startswith("application/problem+json")
                assert int(headers["Retry-After"]) >= 1, (kind, headers)


async def _reads_work(r: Remote, w: World, auditor: Any, aud_t: str, receipts: list[Any]) -> None:
    cp = await r.get("/ledger/checkpoint")
    assert cp.status == 200, await cp.text()
    size = int((await cp.text()).splitlines()[1])
    if receipts:
        i = receipts[0]["index"]
        proof = await r.get("/ledger/proof/inclusion", params={"index": i, "size": size})
        assert proof.status == 200, await proof.text()
    # An audit query is itself recorded (its answer carries the receipt of that record),
    # so while nothing can be appended it is refused like an append: never answered
    # unrecorded, and never a 500.
    audit = await call(r, "GET", "/v1/audit/events", auditor, aud_t, params={"limit": "5"})
    assert audit.status in APPENDED | TRANSIENT | {200}, await audit.text()
    if audit.status in TRANSIENT:
        assert audit.headers["Content-Type"].startswith("application/problem+json")
        assert int(audit.headers["Retry-After"]) >= 1


async def _all_present(r: Remote, receipts: list[dict[str, Any]]) -> None:
    for rec in receipts:
        e = await r.get(f"/ledger/entries/{rec['index']}")
        assert e.status == 200, await e.text()
        assert (await e.json())["leaf_hash"] == rec["leaf_hash"], rec["index"]
        base64.b64decode(rec["leaf_hash"], validate=True)


async def test_disk_full_appends_refused_reads_served_then_resume(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "mnt", 24) as mnt:
        gw = Gateway(mnt / "data", tmp_path)
        try:
            async with remote(gw) as r:
                w = await world(r, gw)
                auditor = await invite_and_enroll(r, w.adm, w.adm_t, "auditor")  # type: ignore[arg-type]
                aud_t = await get_token(r, auditor)  # type: ignore[arg-type]
                a = Appends(r, w)
                assert set(await a.some(0, 8)) == APPENDED

                # Fill the file system; keep it full (SQLite may free pages) while appending
                # until a good number of appends have been refused.
                filler = mnt / "filler"
                await asyncio.to_thread(fill, filler)
                refused, n, deadline = 0, 8, time.monotonic() + 40
                while refused < 6 and time.monotonic() < deadline:
                    await asyncio.to_thread(fill, filler)
                    statuses = await a.some(n, 8)
                    n += 8
                    refused += sum(s in TRANSIENT for s in statuses)
                    await _reads_work(r, w, auditor, aud_t, a.receipts)
                assert refused >= 6, f"the full disk refused only {refused} of {n - 8} appends"

                # Space returns: appends succeed again, no restart.
                filler.unlink()
                deadline = time.monotonic() + 15
                kinds_ok: set[str] = set()
                while kinds_ok != {"invite", "vitals"} and time.monotonic() < deadline:
                    before = len(a.answers)
                    await a.some(n, 2, tasks=1)
                    n += 2
                    kinds_ok |= {k for k, s, _, _ in a.answers[before:] if s in APPENDED}
                assert kinds_ok == {"invite", "vitals"}, a.answers[-4:]
                assert (await r.get("/readyz")).status == 200
                assert gw.proc is not None and gw.proc.poll() is None

                a.check_answers()
                await _all_present(r, a.receipts)
                gw.verify()
        finally:
            gw.stop()
