"""Benchmark of telegate's vitals intake against a raw aiohttp POST server.

Not a test: it measures and prints tables (system | metric | value | ratio to telegate),
then checks the targets of the vitals issue and prints PASS/MISS with the margin.

    python -m bench.vitals --quick            # under a minute
    python -m bench.vitals                    # full run, about 3 minutes
    python -m bench.vitals --batches 100 --json bench/out/vitals.json
    python -m bench.vitals --quick --sections mqtt   # MQTT vs HTTP, 1,000 devices (section 6)

One run starts `telegate serve` as a subprocess on 127.0.0.1 (fresh data directory), a raw
aiohttp server (multiprocessing spawn) that reads each body and answers 201 with a small
JSON, and bench.auth's load generator in a process of its own. Devices are enrolled as the
vitals tests do (tests/gateway/vitals/world.py); every request's signed batch and DPoP proof
is made before its row starts, and the raw server gets the very same requests. Section 2
starts a second, fresh gateway under strace to count fsyncs per request. Progress goes to
stderr, results to stdout. A watchdog stops the run if it overruns.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from types import SimpleNamespace
from typing import Any

if not __package__:
    # Run as a script (python bench/vitals.py): this file's directory would shadow the
    # ``ledger`` package, so look modules up from the repository root instead.
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    sys.path.insert(0, os.path.dirname(_here))

from bench.auth import (
    AuthTable,
    Gateway,
    Job,
    LoadGen,
    _Client,
    _delta,
    _log_peer,
    run_section,
    watchdog,
)
from bench.ledger import Results, pct, print_summary, progress, run_raw, status
from bench.signalling import bounded, connect_ws

BATCHES = (1, 10, 100)
TARGET = 15_000.0  # readings/s on one core at batch 100
HIST = "telegate_http_request_duration_seconds"
ROUTE = '{method="POST",route="/v1/vitals"}'
# Requests made per row and batch size: enough for the row's seconds at well above the
# rates seen here (the raw server may run out first; its rate is over what it sent).
POOL_RPS = {1: 1400, 10: 700, 100: 160}

now = time.perf_counter
Reqs = list[tuple[dict[str, str], bytes | None]]


# -- the servers ----------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_cpu(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process, all its threads, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (all CPUs, /proc/stat)."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait


def first_child(pid: int) -> int:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return int(f.read().split()[0])


class GatewayProcess:
    """`telegate serve --data-dir <tmp> --port <free>`: the gateway as it is deployed (JSON
    access log at INFO, here to a file), with none of this shell's TELEGATE_* settings.
    With ``fsyncs``, it runs under ``strace --seccomp-bpf`` (only fsync/fdatasync stop) and
    :meth:`fsyncs` counts them by file."""

    metrics = Gateway.metrics  # bench.auth's /metrics reader (uses .session and .base)

    def __init__(
        self,
        data_dir: Path,
        log: Path,
        fsyncs: Path | None = None,
        env_extra: dict[str, str] | None = None,
    ) -> None:
        exe = Path(sys.executable).with_name("telegate")
        port = free_port()
        cmd = [str(exe), "serve", "--data-dir", str(data_dir), "--host", "127.0.0.1"]
        if fsyncs is not None:
            trace = ["strace", "-f", "--seccomp-bpf", "-qq", "-e", "trace=fsync,fdatasync"]
            cmd = [*trace, "-e", "signal=none", "-y", "-o", str(fsyncs), *cmd]
        env = {k: v for k, v in os.environ.items() if not k.startswith("TELEGATE_")}
        env["TELEGATE_RATE_EXEMPT_LOOPBACK"] = "true"  # one load generator, one address
        env.update(env_extra or {})  # section 6: TELEGATE_MQTT_URL
        self.data_dir, self.log, self.trace = data_dir, log, fsyncs
        self.base = f"http://127.0.0.1:{port}"
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [*cmd, "--port", str(port)], stdout=out, stderr=subprocess.STDOUT, env=env
            )
        self.pid = self.proc.pid  # strace's until wait_ready finds the gateway under it
        self.session: Any = None

    async def wait_ready(self, session: Any, limit: float = 60.0) -> None:
        self.session = session
        t0 = now()
        while now() - t0 < limit:
            if self.proc.poll() is not None:
                raise RuntimeError(f"telegate serve exited: {self.tail()}")
            with contextlib.suppress(OSError, asyncio.TimeoutError):
                async with session.get(self.base + "/readyz") as r:
                    if r.status == 200:
                        if self.trace is not None:
                            self.pid = first_child(self.pid)
                        return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"telegate serve not ready within {limit:g}s: {self.tail()}")

    def cpu(self) -> tuple[float, float]:
        return proc_cpu(self.pid)

    def fsyncs(self) -> Counter[str]:
        """fsync + fdatasync calls so far, by database (its -wal and -journal counted in)."""
        out: Counter[str] = Counter()
        if self.trace is not None:
            for m in re.finditer(r"f(?:data)?sync\(\d+<([^>]*)>", self.trace.read_text()):
                out[os.path.basename(m.group(1)).split("-")[0]] += 1
        return out

    def tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-800:]
        return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGTERM)  # the gateway itself, also under strace
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGKILL)
            self.proc.kill()
            self.proc.wait(5)


def _raw_main(conn: Connection) -> None:
    """Child process: the peer, an aiohttp app that reads the body and answers 201."""
    from aiohttp import web

    async def post(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response({"accepted": True, "bytes": len(body)}, status=201)

    async def serve() -> None:
        app = web.Application()  # client_max_size 1 MiB, as the gateway's max_body_size
        app.router.add_post("/v1/vitals", post)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        conn.send(runner.addresses[0][1])
        with contextlib.suppress(EOFError, OSError):
            await asyncio.to_thread(conn.recv)
        await runner.cleanup()

    asyncio.run(serve())


class RawServer:
    def __init__(self) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_raw_main, args=(child,), name="bench-raw", daemon=True)
        self.proc.start()
        child.close()
        if not self.conn.poll(60):
            raise RuntimeError("the raw server did not start within 60 s")
        self.base = f"http://127.0.0.1:{self.conn.recv()}"
        self.pid = self.proc.pid or 0

    def cpu(self) -> tuple[float, float]:
        return proc_cpu(self.pid)

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.proc.join(10)
        self.kill()

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)


# -- the devices and their requests ---------------------------------------------------------
@dataclass
class Fleet:
    world: Any  # tests.gateway.vitals.world.World: admin, provider, patients, devices
    patients: list[Any]
    devices: list[Any]  # device i reports for patients[i % len(patients)]
    tokens: list[str]
    token_time: float = 0.0


async def setup_fleet(cfg: Config, gw: GatewayProcess, http: Any) -> Fleet:
    from tests.gateway.idclient import invite_and_enroll
    from tests.gateway.vitals.world import World

    c = _Client(http, gw.base)
    progress("setup: admin, provider, 2 patients with a device each (tests' World)")
    world = await World(c).setup(SimpleNamespace(data_dir=gw.data_dir))  # type: ignore[arg-type]
    more = cfg.patients - 2
    progress(f"setup: {more} more patients, {cfg.devices - 2} more devices")
    patients = [world.pat, world.other] + await bounded(
        range(more), lambda _: invite_and_enroll(c, world.adm, world.adm_t, "patient"), 8
    )
    devices = [world.dev, world.other_dev] + await bounded(
        range(2, cfg.devices), lambda i: world.device(patients[i % len(patients)]), 8
    )
    fleet = Fleet(world, patients, devices, [])
    await refresh_tokens(fleet, gw, http, force=True)
    return fleet


async def refresh_tokens(fleet: Fleet, gw: GatewayProcess, http: Any, force: bool) -> None:
    """New access tokens for every device when the old ones are 2 minutes old (they live 5,
    and a row's requests carry them for up to a minute and a half)."""
    from tests.gateway.idclient import get_token

    if force or time.time() - fleet.token_time > 120:
        c = _Client(http, gw.base)
        fleet.tokens = await bounded(fleet.devices, lambda d: get_token(c, d), 8)
        fleet.token_time = time.time()


def readings(b: int, t: float, seed: int) -> list[dict[str, Any]]:
    """``b`` plausible readings, one a second back from ``t``, cycling through the codes."""
    from tests.gateway.vitals.world import bp, hr, iso

    out: list[dict[str, Any]] = []
    for k in range(b):
        ts, j = t - 1 - k, (seed + k) % 7
        if j == 0:
            out.append(hr(60 + (seed + k) % 40, ts))
        elif j == 1:
            out.append(bp(110 + k % 30, 70 + k % 15, ts))
        else:
            code, unit, value = (
                ("59408-5", "%", 95 + k % 5),
                ("8310-5", "Cel", 36.5 + (k % 8) / 10),
                ("9279-1", "/min", 12 + k % 8),
                ("15074-8", "mmol/L", 4.5 + (k % 20) / 10),
                ("29463-7", "kg", 70 + (k % 50) / 10),
            )[j - 2]
            out.append({"code": code, "unit": unit, "value": value, "time": iso(ts)})
    return out


def make_requests(
    fleet: Fleet, url: str, b: int, n: int, tag: str, devices: Sequence[int] | None = None
) -> tuple[Reqs, float]:
    """``n`` ready requests (signed batch + DPoP proof, each its own batch id and proof id),
    the devices taking turns; and the client's CPU seconds per request to make them."""
    from tests.gateway.vitals.world import batch, sign

    idx = list(devices) if devices is not None else list(range(len(fleet.devices)))
    t, cpu0 = time.time(), time.process_time()
    out: Reqs = []
    for i in range(n):
        d = idx[i % len(idx)]
        dev, token = fleet.devices[d], fleet.tokens[d]
        jws = sign(dev, batch(readings(b, t, i), f"{tag}-{i}"))
        headers = {
            "Authorization": f"DPoP {token}",
            "DPoP": dev.dpop("POST", url, token),
            "Content-Type": "application/jose",
        }
        out.append((headers, jws.encode()))
    return out, (time.process_time() - cpu0) / max(1, n)


# -- section 1: readings/s at each batch size -------------------------------------------------
async def run_row(
    lg: LoadGen, server: Any, url: str, reqs: Reqs, conc: int, seconds: float
) -> dict[str, Any]:
    """One closed-loop row of ``reqs`` (``conc`` of them warm up the connections), with the
    server's CPU from /proc and the load generator's own."""
    u0, s0 = server.cpu()
    busy0, lg0 = machine_busy(), proc_cpu(lg.proc.pid or 0)
    out = await lg.run(Job("POST", url, reqs, conc, conc, seconds))
    u1, s1 = server.cpu()
    busy, lg1 = machine_busy() - busy0, proc_cpu(lg.proc.pid or 0)
    if out["status"].get("201", 0) != out["n"]:
        raise RuntimeError(f"POST {url}: {out['status']} (first error: {out['first_error']})")
    cpu, sent = (u1 - u0) + (s1 - s0), out["n"] + conc
    per_req = cpu / sent
    return {
        "rps": out["n"] / out["elapsed"],
        "p50": out["p50"] * 1e3,
        "p99": out["p99"] * 1e3,
        "n": out["n"],
        "sent": sent,
        "elapsed": out["elapsed"],
        "cpu_us": per_req * 1e6,
        "server_core": per_req * out["n"] / out["elapsed"],
        "server_sys": (s1 - s0) / cpu if cpu else float("nan"),
        "client_core": out["client_cpu"] / out["elapsed"],
        # Everything else on the machine: this process, and whatever else runs here.
        "others_core": (busy - cpu - sum(lg1) + sum(lg0)) / out["wall"],
    }


def ledger_stats(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """What the gateway's /metrics say about a row: entries per ledger commit, the mean
    append->receipt and handler times."""
    commits = _delta(after, before, "telegate_ledger_commit_entries_count")
    appends = _delta(after, before, "telegate_ledger_append_seconds_count")
    handled = _delta(after, before, f"{HIST}_count{ROUTE}")
    return {
        "commits": commits,
        "avg_entries": _delta(after, before, "telegate_ledger_commit_entries_sum") / commits
        if commits
        else float("nan"),
        "append_ms": _delta(after, before, "telegate_ledger_append_seconds_sum")
        / max(1.0, appends)
        * 1e3,
        "handler_ms": _delta(after, before, f"{HIST}_sum{ROUTE}") / max(1.0, handled) * 1e3,
    }


async def bench_rates(
    cfg: Config,
    gw: GatewayProcess,
    raw: RawServer,
    lg: LoadGen,
    fleet: Fleet,
    http: Any,
    res: Results,
) -> None:
    rounds: dict[str, list[float]] = {}
    url, conc = gw.base + "/v1/vitals", cfg.concurrency
    for r in range(cfg.rounds):
        rnd = f"round {r + 1}/{cfg.rounds}: " if cfg.rounds > 1 else ""
        for b in cfg.batches:
            await refresh_tokens(fleet, gw, http, force=False)
            n = int(POOL_RPS[b] * cfg.seconds) + conc
            progress(f"rates: {rnd}batch {b}: signing {n:,} batches and DPoP proofs (untimed)")
            reqs, gen_s = make_requests(fleet, url, b, n, f"r{r}b{b}")
            progress(f"rates: {rnd}batch {b}: telegate, {conc} posters")
            before = await gw.metrics()
            g = await run_row(lg, gw, url, reqs, conc, cfg.seconds)
            g.update(ledger_stats(before, await gw.metrics()))
            g.update(gen_us=gen_s * 1e6, body=sum(len(x[1] or b"") for x in reqs) / n)
            progress(f"rates: {rnd}batch {b}: raw aiohttp, the same {n:,} requests")
            w = await run_row(lg, raw, raw.base + "/v1/vitals", reqs, conc, cfg.seconds)
            for name, row in (("gw", g), ("raw", w)):
                for k, v in row.items():
                    rounds.setdefault(f"{name}_{k}_{b}", []).append(v)
            rounds.setdefault(f"ratio_{b}", []).append(g["rps"] / w["rps"])
            progress(
                f"rates: {rnd}batch {b}: telegate {g['rps'] * b:,.0f} readings/s, "
                f"raw {w['rps'] * b:,.0f}/s"
            )
    for k, vs in rounds.items():
        res.metrics[k] = sorted(vs)[len(vs) // 2]  # the median (of two: the higher)
        res.metrics[k + "_rounds"] = vs
    report_rates(cfg, res)


def report_rates(cfg: Config, res: Results) -> None:
    m = res.metrics
    t = AuthTable(
        f"1. Readings accepted over HTTP: POST /v1/vitals, {cfg.devices} devices, "
        f"{cfg.concurrency} concurrent posters, vs a raw aiohttp POST of the same requests"
    )
    for b in cfg.batches:
        for name, system in (("gw", "telegate POST /v1/vitals"), ("raw", "raw aiohttp POST")):
            x = {k: m[f"{name}_{k}_{b}"] for k in ("rps", "p50", "p99", "cpu_us", "server_sys")}
            x.update({k: m[f"{name}_{k}_core_{b}"] for k in ("server", "client", "others")})
            base = name == "gw"
            t.add(
                system,
                f"readings/s, batch {b}",
                x["rps"] * b,
                "/s",
                key=f"r{b}",
                base=base,
                note=f"({x['rps']:,.0f} req/s; p50 {x['p50']:.1f} ms, p99 {x['p99']:.1f} ms; "
                f"server {x['server']:.2f}, client {x['client']:.2f}, others "
                f"{x['others']:.2f} core)",
            )
            t.add(
                system,
                "  readings per server CPU-second",
                b * 1e6 / x["cpu_us"],
                "/s",
                key=f"c{b}",
                base=base,
                note=f"(server CPU {x['cpu_us']:,.0f} µs per request, "
                f"{x['server_sys']:.0%} in the kernel)",
            )
        t.add(
            "telegate / raw",
            f"  readings/s ratio, batch {b}",
            m[f"ratio_{b}"],
            "x",
            note=f"(and telegate spends {m[f'gw_cpu_us_{b}'] / m[f'raw_cpu_us_{b}']:.1f}x the "
            "raw server's CPU per request)",
        )
    rounds = (
        f"; median of {cfg.rounds} rounds, each value on its own and the ratio over the "
        "per-round ratios"
        if cfg.rounds > 1
        else ""
    )
    t.notes += [
        f"each row: up to {cfg.seconds:g}s or its pool of requests (closed loop, keep-alive, "
        f"{cfg.concurrency} connections from bench.auth's load generator process, after one "
        f"warm-up request per connection){rounds}. Every request is a new batch (own batch "
        "id) with its own DPoP proof; the devices take turns.",
        "telegate: the `telegate serve` subprocess: DPoP proof + access token, device lookup, "
        "JWS check, validation, HMAC tag + AES-GCM seal, vitals.db group insert (WAL, "
        "synchronous=FULL), ledger append (group commit, fsync, signed checkpoint), receipt "
        "with inclusion proof; JSON access log at INFO to a file. raw: an aiohttp app that "
        "reads the same body (same headers) and answers 201 with a 30-byte JSON.",
        "client cost kept out: the signed batches and DPoP proofs are made in this process "
        "before each row ("
        + ", ".join(f"batch {b}: {m[f'gw_gen_us_{b}']:,.0f} µs" for b in cfg.batches)
        + " of CPU per request); the load generator only sends and reads. 'server/client "
        f"core' is CPU time over the row's wall time ({os.cpu_count()} CPUs): a client near "
        "1.00 core would mean the row measures the client; 'others' is the rest of the "
        "machine's busy CPU (/proc/stat): when it is high, other work took the server's CPU.",
        "readings per server CPU-second = batch size / the server process's CPU per request "
        "(all threads, from /proc; warm-up included): what one fully busy core would accept.",
        "body sizes: "
        + ", ".join(f"batch {b}: {m[f'gw_body_{b}']:,.0f} B" for b in cfg.batches)
        + " (compact JWS, EdDSA); readings cycle through heart rate, BP panel, SpO2, "
        "temperature, respiratory rate, glucose and weight.",
    ]
    res.emit(t)


# -- section 2: group commit at batch 1 -------------------------------------------------------
COMMIT_CONCURRENCY = (4, 32, 128)


async def bench_commit(cfg: Config, tmp: Path, lg: LoadGen, http: Any, res: Results) -> None:
    """Batch 1 at rising concurrency on a second, fresh gateway: entries per ledger commit
    from /metrics and, under strace, fsyncs per request for every database."""
    m = res.metrics
    traced = cfg.fsyncs and shutil.which("strace") is not None
    fs = tmp / "fsyncs.txt" if traced else None
    progress("commit: a second gateway" + (" under strace (fsync, fdatasync)" if traced else ""))
    gw = GatewayProcess(tmp / "data-commit", tmp / "gateway-commit.log", fs)
    rows: dict[int, dict[str, Any]] = {}
    try:
        await gw.wait_ready(http)
        fleet = await setup_fleet(cfg, gw, http)
        url = gw.base + "/v1/vitals"
        for c in COMMIT_CONCURRENCY:
            await refresh_tokens(fleet, gw, http, force=False)
            reqs, _ = make_requests(fleet, url, 1, int(POOL_RPS[1] * cfg.seconds) + c, f"c{c}")
            progress(f"commit: batch 1, {c} posters")
            before, f0 = await gw.metrics(), gw.fsyncs()
            row = await run_row(lg, gw, url, reqs, c, cfg.seconds)
            await asyncio.sleep(0.2)  # the vitals writer's last index update
            row.update(ledger_stats(before, await gw.metrics()))
            row["fsyncs"] = {db: n / row["sent"] for db, n in (gw.fsyncs() - f0).items()}
            rows[c] = row
    finally:
        gw.stop()
    secs = cfg.peer_seconds
    progress(f"commit: peers, telegate Log.append with 1 appender and raw sqlite, {secs:g}s")
    log1, _ = await _log_peer(tmp / "peer-log-1.db", 1, secs)
    raw1, lat = await asyncio.to_thread(run_raw, tmp / "peer-raw.db", 1, secs)
    lat.sort()
    m.update(peer_log1=log1, peer_fsync=raw1, peer_fsync_p50_ms=pct(lat, 0.5) * 1e3)
    for c, row in rows.items():
        for k, v in row.items():
            m[f"commit_{k}_{c}"] = v
    t = AuthTable("2. Group commit at batch 1: a fresh gateway, rising concurrency")
    for c, row in rows.items():
        per = ", ".join(f"{db} {v:.2f}" for db, v in sorted(row["fsyncs"].items()))
        t.add(
            "telegate POST /v1/vitals",
            f"requests/s, batch 1, {c} posters",
            row["rps"],
            "/s",
            key="g",
            base=c == max(rows),
            note=f"(p50 {row['p50']:.1f} ms; handler mean {row['handler_ms']:.1f} ms, of "
            f"which append->receipt {row['append_ms']:.1f} ms; server {row['server_core']:.2f}"
            " core)",
        )
        t.add(
            "  ledger (gateway /metrics)", "  entries per group commit", row["avg_entries"], "avg"
        )
        if traced:
            t.add(
                "  all databases (strace)",
                "  fsyncs per request",
                sum(row["fsyncs"].values()),
                "avg",
                note=f"({per})",
            )
    t.add(
        "telegate Log.append (own db)",
        "durable appends/s, 1 appender",
        log1,
        "/s",
        key="g",
        note="(one fsync per append)",
    )
    t.add(
        "raw sqlite WAL/FULL, 1 row/commit",
        "durable commits/s, 1 writer",
        raw1,
        "/s",
        key="g",
        note=f"(the fsync floor: p50 {m['peer_fsync_p50_ms']:.3f} ms per commit)",
    )
    t.notes += [
        "each row: batch-1 posts from 64 devices for up to "
        f"{cfg.seconds:g}s; entries per commit = telegate_ledger_commit_entries_sum / _count "
        "over the row (each request is one vitals.batch entry).",
        "fsyncs per request: fsync + fdatasync calls on each database's files (main, -wal, "
        "-journal) over the row, divided by the requests sent; counted by running this "
        "gateway under `strace -f --seccomp-bpf -e trace=fsync,fdatasync` (only those calls "
        "stop the process), so its rates are a little lower than section 1's."
        if traced
        else "fsyncs per request were not counted (strace missing or --no-fsyncs).",
        f"peers: {secs:g}s each on fresh databases in the same directory (same disk) while no "
        "gateway runs. Where fsync is this cheap, a per-request fsync costs little time; it "
        "shows in the fsync counts, and on a disk with millisecond flushes it caps the rate.",
    ]
    res.emit(t)


# -- section 3: live push to a provider in a call ---------------------------------------------
async def bench_stream(
    cfg: Config, gw: GatewayProcess, lg: LoadGen, fleet: Fleet, http: Any, res: Results
) -> None:
    from tests.gateway.idclient import call, get_token

    w, c, url = fleet.world, _Client(http, gw.base), gw.base + "/v1/vitals"
    w.prov_t, w.pat_t = await get_token(c, w.prov), await get_token(c, w.pat)
    await w.grant(["call", "vitals.stream"])
    r = await call(c, "POST", "/v1/sessions", w.prov, w.prov_t, json={"patient": w.pat.sub})
    sid = (await r.json())["id"]

    async def sock(h: Any, tok: str) -> Any:
        r = await call(c, "POST", f"/v1/sessions/{sid}/ticket", h, tok)
        return await connect_ws(http, gw.base + (await r.json())["ws"], hello=True)

    socks = [await sock(w.prov, w.prov_t), await sock(w.pat, w.pat_t)]
    await call(c, "POST", f"/v1/sessions/{sid}/admit", w.prov, w.prov_t)
    pushed: dict[str, asyncio.Future[float]] = {}

    async def reader() -> None:
        async for msg in socks[0]:
            d = json.loads(msg.data)
            f = pushed.get(d.get("batch_id", "")) if d.get("type") == "vitals" else None
            if f is not None and not f.done():
                f.set_result(now())

    task = asyncio.create_task(reader())
    others = [i for i in range(cfg.devices) if i % cfg.patients]  # not patient 0's devices
    t = AuthTable("3. Live stream: POST /v1/vitals (batch 1) to the provider's call websocket")
    for mode in ("idle", "load"):
        await refresh_tokens(fleet, gw, http, force=False)
        posts, _ = make_requests(fleet, url, 1, cfg.stream_posts, mode, [0])
        if load := mode == "load":
            bg, _ = make_requests(fleet, url, 10, int(POOL_RPS[10] * cfg.seconds), "bg", others)
            job = asyncio.create_task(lg.run(Job("POST", url, bg, 32, 32, cfg.seconds)))
            await asyncio.sleep(1.0)
        lat = []
        for i, (h, body) in enumerate(posts):
            pushed[f"{mode}-{i}"] = fut = asyncio.get_running_loop().create_future()
            t0 = now()
            async with http.post(url, headers=h, data=body) as resp:
                if resp.status != 201:
                    raise RuntimeError(f"POST /v1/vitals: {resp.status} {await resp.text()}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(fut), 5)
            lat.append((fut.result() - t0) * 1e3 if fut.done() else float("inf"))
            await asyncio.sleep(0.02)
        lat.sort()
        bg_rps = (await job)["n"] / cfg.seconds if load else 0.0
        note = f"(meanwhile 32 posters of batch 10 from other devices: {bg_rps:,.0f} req/s)"
        for q, label in ((0.5, f"post -> push p50, {mode}"), (0.99, "  post -> push p99")):
            res.metrics[f"push_{mode}_p{q * 100:g}"] = pct(lat, q)
            t.add("telegate vitals push", label, pct(lat, q), "ms", note=note * (q > 0.9) * load)
    task.cancel()
    await asyncio.gather(*(s.close() for s in socks), return_exceptions=True)
    t.notes.append(
        f"{cfg.stream_posts} posts of one reading, one at a time 20 ms apart, by a device of "
        "a patient whose provider is in an admitted call with vitals.stream consent; from "
        "sending the request (this process) to the 'vitals' message on the provider's socket."
    )
    res.emit(t)


# -- summary --------------------------------------------------------------------------------
def summarize(cfg: Config, res: Results) -> None:
    m = res.metrics
    lines: list[dict[str, Any]] = []

    def add(target: str, ok: bool | None, detail: str) -> None:
        lines.append({"target": target, "status": status(ok), "detail": detail})

    top = max(cfg.batches)
    if f"gw_cpu_us_{top}" in m:
        per_core = top * 1e6 / m[f"gw_cpu_us_{top}"]
        add(
            f">= {TARGET:,.0f} readings/s on one core at batch 100",
            per_core >= TARGET if top == 100 else None,
            f"{per_core:,.0f} readings per server CPU-second at batch {top} = "
            f"{per_core / TARGET:.2f}x of target "
            f"({'short by' if per_core < TARGET else 'margin'} {abs(per_core - TARGET):,.0f}/s);"
            f" measured {m[f'gw_rps_{top}'] * top:,.0f}/s with the server at "
            f"{m[f'gw_server_core_{top}']:.2f} core, the client at "
            f"{m[f'gw_client_core_{top}']:.2f} core",
        )
    c = max(COMMIT_CONCURRENCY)
    if f"commit_avg_entries_{c}" in m:
        avg, fs = m[f"commit_avg_entries_{c}"], m[f"commit_fsyncs_{c}"]
        worst = max(fs.items(), key=lambda kv: kv[1], default=("", float("nan")))
        ok = avg > 1.5 and (not fs or worst[1] < 1 / 1.5)
        add(
            "batch 1 limited by group commit, not per-request fsync",
            ok,
            f"at {c} posters: {m[f'commit_rps_{c}']:,.0f} req/s, {avg:.1f} entries per ledger "
            "commit"
            + (
                f"; fsyncs per request: {worst[0]} {worst[1]:.2f} (the most), all databases "
                f"{sum(fs.values()):.2f}"
                if fs
                else "; other databases' fsyncs not counted (no strace)"
            )
            + f"; server {m[f'commit_server_core_{c}']:.2f} core; one fsync per append would "
            f"allow {m['peer_log1']:,.0f}/s here (fsync floor {m['peer_fsync']:,.0f}/s)",
        )
    for b in cfg.batches:
        if f"ratio_{b}" in m:
            add(
                f"  (info) telegate / raw aiohttp, batch {b}",
                None,
                f"{m[f'ratio_{b}']:.1%} ({m[f'gw_rps_{b}'] * b:,.0f} vs "
                f"{m[f'raw_rps_{b}'] * b:,.0f} readings/s)",
            )
    if "push_load_p99" in m:
        add(
            "  (info) live push within 100 ms of acceptance",
            None,
            f"post -> push p99 {m['push_idle_p99']:.1f} ms idle, {m['push_load_p99']:.1f} ms "
            "under load (an upper bound: from the request's start, not its acceptance)",
        )
    from bench.vitals_mqtt import summary_lines

    lines += summary_lines(m, status)
    note = "(--quick: one round, short rows; run without --quick for the full numbers)"
    print_summary(res, lines, note if cfg.quick else None)


# -- driver ---------------------------------------------------------------------------------
@dataclass
class Config:
    quick: bool
    batches: tuple[int, ...]
    devices: int
    patients: int
    concurrency: int
    rounds: int
    seconds: float
    peer_seconds: float
    stream_posts: int
    fsyncs: bool
    sections: list[str]
    hard_limit: float
    json: str | None
    tmpdir: str | None
    mqtt_devices: int = 1000


SECTIONS = ("rates", "commit", "stream", "mqtt")


def parse_args(argv: Sequence[str] | None = None) -> Config:
    ap = argparse.ArgumentParser(
        prog="python -m bench.vitals", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    ap.add_argument("--quick", action="store_true", help="one round of short rows")
    ap.add_argument(
        "--batches", default=",".join(map(str, BATCHES)), help="batch sizes (default 1,10,100)"
    )
    ap.add_argument("--devices", type=int, default=64, help="enrolled devices (default 64)")
    ap.add_argument("--patients", type=int, default=16, help="their patients (default 16)")
    ap.add_argument("--concurrency", type=int, default=32, help="concurrent posters (32)")
    ap.add_argument("--rounds", type=int, help="rounds of section 1 (default 3; quick 1)")
    ap.add_argument("--seconds", type=float, help="longest row (default 8; quick 3)")
    ap.add_argument(
        "--no-fsyncs", action="store_true", help="do not count fsyncs with strace (section 2)"
    )
    ap.add_argument(
        "--sections", default=",".join(SECTIONS), help=f"comma list of {','.join(SECTIONS)}"
    )
    ap.add_argument("--json", metavar="FILE", help="also write all results as JSON")
    ap.add_argument("--tmpdir", help="where to create the gateways' data directories")
    ap.add_argument(
        "--mqtt-devices",
        type=int,
        default=1000,
        help="devices connected to the broker in section mqtt (default 1000)",
    )
    a = ap.parse_args(argv)
    try:
        batches = tuple(int(x) for x in a.batches.split(",") if x.strip())
    except ValueError:
        ap.error("--batches takes a comma list of integers")
    if not batches or set(batches) - set(POOL_RPS):
        ap.error(f"--batches are some of {','.join(map(str, POOL_RPS))}")
    sections = [s.strip() for s in a.sections.split(",") if s.strip()]
    if set(sections) - set(SECTIONS):
        ap.error(f"--sections are some of {','.join(SECTIONS)}")
    if not 2 <= a.patients <= a.devices <= 1000 or not 1 <= a.concurrency <= 256:
        ap.error("need 2 <= patients <= devices <= 1000 and 1 <= concurrency <= 256")
    q = a.quick
    rounds, seconds = a.rounds or (1 if q else 3), a.seconds or (3.0 if q else 8.0)
    if not 10 <= a.mqtt_devices <= 5000:
        ap.error("--mqtt-devices is 10..5000")
    if not 1 <= seconds <= 40:
        ap.error("--seconds is 1..40 (the DPoP proofs, made before the row, live 90 s)")
    rows = rounds * len(batches) * 2 + len(COMMIT_CONCURRENCY) + 2
    return Config(
        quick=q,
        batches=batches,
        devices=a.devices,
        patients=a.patients,
        concurrency=a.concurrency,
        rounds=rounds,
        seconds=seconds,
        peer_seconds=1.0 if q else 2.0,
        stream_posts=50 if q else 200,
        fsyncs=not a.no_fsyncs,
        sections=sections,
        hard_limit=90 + (rows + 8) * (seconds + 6),
        json=a.json,
        tmpdir=a.tmpdir,
        mqtt_devices=a.mqtt_devices,
    )


def _load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


async def amain(
    cfg: Config,
    res: Results,
    tmp: Path,
    gw: GatewayProcess,
    raw: RawServer,
    lg: LoadGen,
    broker: Any = None,
) -> None:
    import aiohttp

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        await gw.wait_ready(http)
        print(
            f"gateway at {gw.base} (telegate serve, pid {gw.pid}), raw server at {raw.base} "
            f"(pid {raw.pid}), load generator pid {lg.proc.pid}; data in {gw.data_dir}",
            flush=True,
        )
        fleet = await setup_fleet(cfg, gw, http)
        if "rates" in cfg.sections:
            await run_section(res, "rates", lambda: bench_rates(cfg, gw, raw, lg, fleet, http, res))
        if "commit" in cfg.sections:
            await run_section(res, "commit", lambda: bench_commit(cfg, tmp, lg, http, res))
        if "stream" in cfg.sections:
            await run_section(res, "stream", lambda: bench_stream(cfg, gw, lg, fleet, http, res))
        if "mqtt" in cfg.sections and broker is not None:
            from bench.vitals_mqtt import bench_mqtt

            await run_section(res, "mqtt", lambda: bench_mqtt(cfg, gw, broker, lg, fleet, res))
    summarize(cfg, res)


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_args(argv)
    res = Results(args=dict(vars(cfg)))
    import aiohttp
    import cryptography

    mt = res.meta = {
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "cryptography": cryptography.__version__,
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    print(
        f"telegate vitals benchmark ({'quick' if cfg.quick else 'full'}): python "
        f"{mt['python']}, aiohttp {mt['aiohttp']}, cryptography {mt['cryptography']}, sqlite "
        f"{mt['sqlite']}, {mt['cpus']} CPUs, {mt['platform']}, load average {_load()}\n"
        "ratio = value / telegate's value for the same metric (rates: >1 is faster than "
        "telegate)",
        flush=True,
    )
    tmp = Path(tempfile.mkdtemp(prefix="telegate-bench-vitals-", dir=cfg.tmpdir))
    procs: list[Any] = []

    def kill_all() -> None:
        for p in procs:
            with contextlib.suppress(Exception):
                p.kill()

    timer = watchdog(cfg, res, tmp, kill_all)  # type: ignore[arg-type]
    try:
        broker, env = None, {}
        if "mqtt" in cfg.sections:
            from bench.vitals_mqtt import start_broker

            try:
                procs.append(broker := start_broker(tmp / "mosquitto"))
                env["TELEGATE_MQTT_URL"] = broker.url
                print(f"private mosquitto at {broker.url}", flush=True)
            except RuntimeError as e:  # no mosquitto here: the other sections still run
                print(f"section mqtt skipped: {e}", flush=True)
        progress("starting telegate serve, the raw server and the load generator")
        procs.append(gw := GatewayProcess(tmp / "data", tmp / "gateway.log", env_extra=env))
        procs.append(raw := RawServer())
        procs.append(lg := LoadGen())
        asyncio.run(amain(cfg, res, tmp, gw, raw, lg, broker))
        mt["elapsed_s"] = now() - _START
        mt["loadavg_at_end"] = os.getloadavg()
        print(f"\n(total {mt['elapsed_s']:.0f}s; load average at the end {_load()})")
        res.dump(cfg.json, complete=True)
    finally:
        timer.cancel()
        for p in reversed(procs):
            with contextlib.suppress(Exception):
                p.close() if isinstance(p, LoadGen) else p.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    progress("done")
    return 1 if res.errors else 0


_START = now()

if __name__ == "__main__":
    raise SystemExit(main())
