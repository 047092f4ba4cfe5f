"""Benchmark of the FHIR API's own cost: the same page of one patient's readings through
``/fhir/Observation`` and through ``/v1/patients/{id}/vitals``, first and deep.

Not a test: it measures and prints a table (query | p50 | p99 | ratio to /v1), then checks
the targets of the FHIR issue (a page of 100 in < 50 ms p99 at any depth; the FHIR layer
< 30% over /v1) and prints PASS/MISS.

    python -m bench.fhir --quick                 # 10,000 readings, well under a minute
    python -m bench.fhir                         # 100,000 readings (the issue's size)

One process: a gateway (``create_app``, SQLite, fresh data directory) served by an
AppRunner on 127.0.0.1 and the client, one request at a time, alternating /v1 and /fhir so
both see the same machine. Each request's DPoP proof is made before its clock starts. The
patient reads their own record (no consent event is appended, so neither side waits for a
ledger fsync). Readings are posted as device-signed batches of 1,000. The AuditEvent
search over a 1,000,000-event log that the issue also names is not measured here
(bench/audit.py measures the auditor API's pages over such a log; /fhir/AuditEvent calls
the same page function).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if not __package__:
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    sys.path.insert(0, os.path.dirname(_here))

from bench.auth import _Client
from bench.ledger import pct, progress, status

PAGE = 100
BATCH = 1000
TARGET_P99_MS = 50.0
TARGET_OVERHEAD = 0.30


async def _timed(c: _Client, h: Any, token: str, path: str, params: dict[str, str]) -> float:
    url = str(c.make_url(path))
    headers = {"Authorization": f"DPoP {token}", "DPoP": h.dpop("GET", url, token)}
    t0 = time.perf_counter()
    r = await c.request("GET", path, headers=headers, params=params)
    await r.read()
    dt = time.perf_counter() - t0
    assert r.status == 200, (path, r.status, await r.text())
    return dt * 1000


async def _walk(c: _Client, h: Any, token: str, fhir: bool, pid: str, skip: int) -> str:
    """The cursor that starts a page ``skip`` readings in, reached by paging 1,000 at a time
    (a cursor of either API cannot be written by hand: /fhir's is signed)."""
    from urllib.parse import parse_qs, urlsplit

    cursor = ""
    for _ in range(skip // BATCH):
        if fhir:
            params = {"_count": str(BATCH), **({"_cursor": cursor} if cursor else {})}
            path = "/fhir/Observation"
        else:
            params = {"limit": str(BATCH), **({"after": cursor} if cursor else {})}
            path = f"/v1/patients/{pid}/vitals"
        url = str(c.make_url(path))
        headers = {"Authorization": f"DPoP {token}", "DPoP": h.dpop("GET", url, token)}
        r = await c.request("GET", path, headers=headers, params=params)
        body = await r.json(content_type=None)
        if fhir:
            (nxt,) = [x["url"] for x in body["link"] if x["relation"] == "next"]
            cursor = parse_qs(urlsplit(nxt).query)["_cursor"][0]
        else:
            cursor = body["next"]
    return cursor


async def amain(n: int, reps: int) -> int:
    import aiohttp
    from aiohttp import web

    from gateway.app import create_app
    from gateway.config import Config
    from tests.gateway.idclient import get_token
    from tests.gateway.vitals.world import World, batch, hr, sign

    tmp = Path(tempfile.mkdtemp(prefix="telegate-bench-fhir-"))
    config = Config(
        data_dir=tmp / "data", log_origin="bench.example/telegate/log", rate_exempt_loopback=True
    )
    app = create_app(config)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    session = aiohttp.ClientSession()
    try:
        c = _Client(session, base)
        world = await World(c).setup(config)  # type: ignore[arg-type]
        progress(f"seeding {n:,} readings in batches of {BATCH}")
        t_end = time.time() - 60
        step = min(5.0, 6 * 86400 / n)  # all within the default 7-day acceptance window
        for b in range(n // BATCH):
            rs = [hr(50 + (b + k) % 60, t_end - step * (n - b * BATCH - k)) for k in range(BATCH)]
            if b % 20 == 0:
                world.dev_t = await get_token(c, world.dev)
            r = await world.post(sign(world.dev, batch(rs)))
            assert r.status == 201, await r.text()
        pat, pid = world.pat, world.pat.sub
        token = await get_token(c, pat)
        deep = min(50_000, n // 2)
        progress(f"cursors {deep:,} readings in (page {deep // PAGE + 1})")
        v1_deep = await _walk(c, pat, token, False, pid, deep)
        fhir_deep = await _walk(c, pat, token, True, pid, deep)
        rows: dict[str, list[float]] = {
            k: [] for k in ("v1 first", "fhir first", "v1 deep", "fhir deep")
        }
        progress(f"{reps} requests of each kind, alternating")
        started = time.time()
        for i in range(reps):
            if time.time() - started > 200:  # tokens live 5 minutes
                token, started = await get_token(c, pat), time.time()
            v1 = f"/v1/patients/{pid}/vitals"
            rows["v1 first"].append(await _timed(c, pat, token, v1, {"limit": str(PAGE)}))
            rows["fhir first"].append(
                await _timed(c, pat, token, "/fhir/Observation", {"_count": str(PAGE)})
            )
            rows["v1 deep"].append(
                await _timed(c, pat, token, v1, {"limit": str(PAGE), "after": v1_deep})
            )
            rows["fhir deep"].append(
                await _timed(
                    c, pat, token, "/fhir/Observation", {"_count": str(PAGE), "_cursor": fhir_deep}
                )
            )
            if i % 50 == 49:
                progress(f"{i + 1} of {reps}")
    finally:
        await session.close()
        await runner.cleanup()
    print(
        f"telegate FHIR benchmark: {n:,} readings of one patient, page {PAGE}, {reps} requests "
        f"each; python {platform.python_version()}, {os.cpu_count()} CPUs, load average "
        + "/".join(f"{x:.2f}" for x in os.getloadavg())
    )
    print(f"{'query':<33} {'p50 ms':>8} {'p99 ms':>8} {'p50 vs /v1':>11}")
    stats = {k: (pct(sorted(v), 0.5), pct(sorted(v), 0.99)) for k, v in rows.items()}
    for k, (p50, p99) in stats.items():
        peer = stats[k.replace("fhir", "v1")][0]
        where = "first" if "first" in k else f"deep (page {deep // PAGE + 1})"
        name = f"{'/fhir/Observation' if 'fhir' in k else '/v1 .../vitals'} {where}"
        print(f"{name:<33} {p50:8.2f} {p99:8.2f} {p50 / peer:10.2f}x")
    print("\n== Summary: targets from the issue ==")
    worst = max(stats["fhir first"][1], stats["fhir deep"][1])
    ok1 = worst < TARGET_P99_MS
    target = f"/fhir page of {PAGE} p99 < {TARGET_P99_MS:.0f} ms at any depth"
    print(f"{status(ok1):<5} {target}: {worst:.1f} ms")
    over = max(stats[f"fhir {d}"][0] / stats[f"v1 {d}"][0] - 1 for d in ("first", "deep"))
    ok2 = over < TARGET_OVERHEAD
    print(f"{status(ok2):<5} FHIR layer < {TARGET_OVERHEAD:.0%} over /v1 (p50): {over:+.0%}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="10,000 readings, 100 requests each")
    ap.add_argument("--observations", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=300)
    a = ap.parse_args(argv)
    n, reps = (10_000, 100) if a.quick else (a.observations, a.reps)
    return asyncio.run(amain(max(BATCH * 2, n - n % BATCH), reps))


if __name__ == "__main__":
    sys.exit(main())
