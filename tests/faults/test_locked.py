"""Another process holds SQLite's write lock on a store's file longer than the busy timeout
(the embedded stand-in for a database server that went away): requests that need it answer
503 + Retry-After within a bounded time, those that do not are served, and everything works
again once the lock is released, with no restart and nothing acknowledged lost."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from tests.faults.conftest import Gateway, Remote, remote, world
from tests.faults.test_store_faults import hold_lock
from tests.gateway.idclient import Holder, call
from tests.gateway.vitals.world import World, iso

BUSY = 5.0  # PRAGMA busy_timeout of every embedded store (milliseconds / 1000)
HELD = BUSY + 2.5


async def _timed(coro: Any) -> tuple[float, int, str, dict[str, str]]:
    t0 = time.monotonic()
    resp = await coro
    body = await resp.text()
    return time.monotonic() - t0, resp.status, body, dict(resp.headers)


def _invite(r: Remote, w: World) -> Any:
    return call(r, "POST", "/v1/invites", w.adm, w.adm_t, json={"role": "patient"})


def _grant(r: Remote, w: World, grantee: Holder) -> Any:
    until = iso(time.time() + 3600)
    body = {"grantee": grantee.sub, "scopes": ["vitals.read"], "until": until}
    return call(r, "POST", "/v1/consents", w.pat, w.pat_t, json=body)


async def test_locked_stores_answer_503_then_recover(gateway: Gateway) -> None:
    gw = gateway
    async with remote(gw) as r:
        w = await world(r, gw)
        receipts = [(await (await _invite(r, w)).json())["receipt"]]
        holders = [hold_lock(gw.data_dir / name, HELD) for name in ("ledger.db", "consent.db")]
        try:
            during = await asyncio.gather(
                _timed(_invite(r, w)),
                _timed(_grant(r, w, w.prov)),
                _timed(r.get("/ledger/checkpoint")),
            )
        finally:
            for h in holders:
                h.communicate(timeout=30)
        for secs, status, body, headers in during:
            # One busy timeout waiting for the lock, and at most one more for a batch that
            # was already waiting: never a hang.
            assert secs < 2 * BUSY + 2, (secs, status, body)
            assert status in (200, 201, 503), body
            if status == 503:
                assert headers["Content-Type"].startswith("application/problem+json")
                assert int(headers["Retry-After"]) >= 1
            elif status == 201:
                receipts.append(json.loads(body)["receipt"])
        (_, inv, _, _), (_, grant, body, _), (secs, cp, _, _) = during
        assert grant == 503, body  # consent.db was locked for longer than the busy timeout
        assert inv == 503
        assert cp == 200 and secs < 1  # reading the log needs no lock

        # Released: the same gateway takes both kinds of write again.
        secs, status, body, _ = await _timed(_invite(r, w))
        assert status == 201, body
        receipts.append(json.loads(body)["receipt"])
        secs, status, body, _ = await _timed(_grant(r, w, w.prov))
        assert status == 201, body
        receipts.append(json.loads(body)["receipt"])
        assert (await r.get("/readyz")).status == 200
        for rec in receipts:
            e = await r.get(f"/ledger/entries/{rec['index']}")
            assert (await e.json())["leaf_hash"] == rec["leaf_hash"]
    gw.verify()


def test_lock_holder_is_real(tmp_path: Path) -> None:
    """The holder really excludes writers: a second writer times out against it."""
    import sqlite3

    db = tmp_path / "x.db"
    sqlite3.connect(db).close()
    h = hold_lock(db, 2)
    try:
        c = sqlite3.connect(db, timeout=0.2, isolation_level=None)
        try:
            t0 = time.monotonic()
            try:
                c.execute("BEGIN IMMEDIATE")
                raised = False
            except sqlite3.OperationalError:
                raised = True
            assert raised and time.monotonic() - t0 < 1.5
        finally:
            c.close()
    finally:
        h.communicate(timeout=10)
