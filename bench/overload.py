"""Benchmark of load shedding: the gateway under twice the load it can serve.

Not a test: it measures and prints a table, then says whether the latency goal held.

    python -m bench.overload            # about 1.5 minutes, loopback only
    python -m bench.overload --seconds 4 --pending 32

A real gateway (``telegate serve``, in its own process, on 127.0.0.1) is started twice:
once without shedding (``max_pending`` out of reach, ``shed_lag_ms`` 0) and once with it
(``--pending``, ``--lag-ms``: a CPU-bound gateway sheds for its loop's lateness). The token buckets
are off (``rate_exempt_loopback``: every request here comes from one address) so that
what is measured is the cap on requests under way alone. The workload is ``GET /v1/me``
by 8 enrolled clients, each request with its own DPoP proof (signed before each run, so
the load generator spends its time sending).

1. Capacity: a closed loop of 32 concurrent requests for a few seconds, without
   shedding: the requests/s the gateway serves (``1x``).
2. For each gateway, open loops at 1x and at 2x that rate: requests are scheduled at fixed
   intervals, each in its own task, and latency is measured from the scheduled time (no
   coordinated omission). Accepted = answered 200; shed = answered 429, or 503 with the
   ``overloaded`` problem type. Any other 503 (``unavailable``: an outage, not shedding) is
   counted apart and listed under the table.

The latency goal: the p99 of what is accepted at 2x stays within ``--goal-ms`` (default
250 ms). Without shedding the queue grows for as long as the overload lasts, so its p99
only says how long the run was; with shedding it should stay near the 1x figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if not __package__:
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    sys.path.insert(0, os.path.dirname(_here))

from gateway.errors import OVERLOADED_TYPE

LOG_ORIGIN = "bench.example/telegate/log"
HOLDERS = 8
TIMEOUT = 10.0  # a request not answered by then counts as timed out
WATCHDOG = 115.0
SHED_503 = "503 overloaded"


def progress(msg: str) -> None:
    print(f"[{time.monotonic() - _T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


_T0 = time.monotonic()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Gateway:
    """``telegate serve`` in a subprocess with the given settings (``TELEGATE_*``)."""

    def __init__(self, data_dir: Path, nice: int, **settings: Any) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "TELEGATE_LOG_ORIGIN": LOG_ORIGIN, "TELEGATE_LOG_LEVEL": "ERROR"}
        env.update({f"TELEGATE_{k.upper()}": str(v) for k, v in settings.items()})
        # Niced below the load generator: on a shared machine the gateway, not the client,
        # is then what runs out of CPU first. (nice execs: the pid stays the gateway's.)
        cmd = ["nice", "-n", str(nice), sys.executable, "-m", "gateway.cli", "serve"]
        cmd += ["--port", str(self.port)]
        self.proc = subprocess.Popen(
            [*cmd, "--data-dir", str(data_dir)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.data_dir = data_dir

    async def ready(self, session: Any) -> None:
        end = time.monotonic() + 30
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError("the gateway exited")
            with contextlib.suppress(OSError):
                async with session.get(self.base + "/readyz") as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.1)
        raise RuntimeError("the gateway did not become ready")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class _Client:
    """The slice of aiohttp's TestClient that tests.gateway.idclient uses."""

    def __init__(self, session: Any, base: str) -> None:
        self.session, self.base = session, base

    def make_url(self, path: str) -> Any:
        from yarl import URL

        return URL(self.base + path)

    async def post(self, path: str, **kw: Any) -> Any:
        return await self.session.post(self.base + path, **kw)


@dataclass
class Run:
    label: str
    offered: float
    seconds: float
    latencies: list[float] = field(default_factory=list)  # accepted only, seconds
    outcomes: Counter[str] = field(default_factory=Counter)
    cpu: float = 0.0
    client_cpu: float = 0.0
    by_limit: dict[str, float] = field(default_factory=dict)
    lag: float = 0.0

    def rate(self, *kinds: str) -> float:
        return sum(self.outcomes[k] for k in kinds) / self.seconds

    def pct(self, q: float) -> float:
        xs = sorted(self.latencies)
        if not xs:
            return float("nan")
        return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000


#: The outcomes that are deliberate refusals: rate limits and load shedding.
SHED = ("429", SHED_503)


def outcome(status: str, body: bytes) -> str:
    """What an answer counts as: its status, except that a 503 of the ``overloaded`` problem
    type (load shed on purpose, gateway/limits) is ``SHED_503`` and any other 503 (a store
    or the ledger down: an outage) stays ``503``, reported apart."""
    if status == "503":
        with contextlib.suppress(ValueError, AttributeError):
            if json.loads(body).get("type") == OVERLOADED_TYPE:
                return SHED_503
    return status


class Load:
    """Enrolled clients and their tokens on one gateway; requests with fresh proofs."""

    def __init__(self, gw: Gateway, session: Any) -> None:
        self.gw, self.session = gw, session
        self.url = gw.base + "/v1/me"

    async def enroll(self) -> None:
        from tests.gateway.idclient import Holder, enroll, get_token, local_invite

        client = _Client(self.session, self.gw.base)
        self.holders, self.tokens = [], []
        for _ in range(HOLDERS):
            h = Holder()
            await enroll(client, local_invite(self.gw.data_dir), h)
            self.holders.append(h)
            self.tokens.append(await get_token(client, h))

    def requests(self, n: int) -> list[bytes]:
        """``n`` whole requests, each with its own proof, ready to write to a socket."""
        host = f"127.0.0.1:{self.gw.port}"
        out = []
        for i in range(n):
            h, t = self.holders[i % HOLDERS], self.tokens[i % HOLDERS]
            out.append(
                f"GET /v1/me HTTP/1.1\r\nHost: {host}\r\nAuthorization: DPoP {t}\r\n"
                f"DPoP: {h.dpop('GET', self.url, t)}\r\n\r\n".encode()
            )
        return out

    async def worker(self, queue: asyncio.Queue[tuple[bytes, float] | None], run: Run) -> None:
        """Send what ``queue`` holds over one keep-alive connection, one at a time. A raw
        socket rather than aiohttp's client: the load generator shares the machine, and
        this spends a fraction of the CPU per request."""
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        while (item := await queue.get()) is not None:
            request, start = item
            try:
                async with asyncio.timeout(TIMEOUT - (time.monotonic() - start)):
                    if conn is None:
                        conn = await asyncio.open_connection("127.0.0.1", self.gw.port)
                    reader, writer = conn
                    writer.write(request)
                    head = await reader.readuntil(b"\r\n\r\n")
                    status = head[9:12].decode()
                    length = 0
                    for line in head.split(b"\r\n"):
                        if line[:15].lower() == b"content-length:":
                            length = int(line[15:])
                    body = await reader.readexactly(length)
                    if b"connection: close" in head.lower():
                        writer.close()
                        conn = None
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as e:
                run.outcomes["timeout" if isinstance(e, TimeoutError) else "error"] += 1
                if conn is not None:
                    conn[1].close()
                conn = None
                continue
            if status == "200":
                run.latencies.append(time.monotonic() - start)
            run.outcomes[outcome(status, body)] += 1
        if conn is not None:
            conn[1].close()

    async def closed(self, seconds: float, concurrency: int = 32) -> float:
        """Requests/s answered 200 by ``concurrency`` callers in a closed loop."""
        run = Run("capacity", 0, seconds)
        queue: asyncio.Queue[tuple[bytes, float] | None] = asyncio.Queue(maxsize=1)
        workers = [asyncio.create_task(self.worker(queue, run)) for _ in range(concurrency)]
        requests = self.requests(int(seconds * 3000))
        t0 = time.monotonic()
        for request in requests:
            if time.monotonic() - t0 >= seconds:
                break
            await queue.put((request, time.monotonic()))
        for _ in workers:
            await queue.put(None)
        await asyncio.gather(*workers)
        return run.outcomes["200"] / (time.monotonic() - t0)

    async def open(self, label: str, rate: float, seconds: float, connections: int) -> Run:
        """Requests scheduled at ``rate`` a second for ``seconds``; waits for the answers.
        Latency counts from the scheduled time, so a request waiting for a free
        connection, or for the generator itself, is late by that much."""
        requests = self.requests(int(rate * seconds))
        run = Run(label, rate, seconds)
        queue: asyncio.Queue[tuple[bytes, float] | None] = asyncio.Queue()
        workers = [asyncio.create_task(self.worker(queue, run)) for _ in range(connections)]
        cpu0, client0 = self.gw.cpu_seconds(), time.process_time()
        t0 = time.monotonic()
        for i, request in enumerate(requests):
            at = t0 + i / rate
            if (wait := at - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            run.lag = max(run.lag, time.monotonic() - at)
            queue.put_nowait((request, at))
        for _ in workers:
            queue.put_nowait(None)
        await asyncio.gather(*workers)
        span = time.monotonic() - t0
        run.cpu = (self.gw.cpu_seconds() - cpu0) / span
        run.client_cpu = (time.process_time() - client0) / span
        return run


async def limited(session: Any, base: str) -> dict[str, float]:
    """The gateway's ``telegate_limited_total`` by limit (which limit shed what)."""
    async with session.get(base + "/metrics") as r:
        text = await r.text()
    found = re.findall(r'^telegate_limited_total\{limit="([a-z_]+)"\} ([0-9.e+]+)$', text, re.M)
    return {k: float(v) for k, v in found}


async def measure(args: argparse.Namespace, tmp: Path) -> tuple[float, list[Run]]:
    import aiohttp

    runs: list[Run] = []
    capacity = 0.0
    modes = [
        ("no shedding", {"max_pending": 100_000, "shed_lag_ms": 0}),
        ("shedding", {"max_pending": args.pending, "shed_lag_ms": args.lag_ms}),
    ]
    for name, settings in modes:
        data = tmp / name.replace(" ", "-")
        gw = Gateway(data, args.nice, rate_exempt_loopback="true", **settings)
        try:
            async with aiohttp.ClientSession() as session:
                await gw.ready(session)
                load = Load(gw, session)
                await load.enroll()
                if not capacity:
                    progress(f"{name}: capacity, closed loop of 32 for {args.seconds:g}s")
                    await load.closed(1.0)  # warm up
                    capacity = await load.closed(args.seconds)
                    progress(f"capacity {capacity:,.0f} requests/s")
                for mult in (1, 2):
                    progress(f"{name}: {mult}x = {mult * capacity:,.0f}/s for {args.seconds:g}s")
                    label = f"{name}, {mult}x"
                    before = await limited(session, gw.base)
                    run = await load.open(label, mult * capacity, args.seconds, args.connections)
                    after = await limited(session, gw.base)
                    run.by_limit = {k: v - before.get(k, 0) for k, v in after.items()}
                    runs.append(run)
        finally:
            gw.stop()
    return capacity, runs


def report(capacity: float, runs: list[Run], args: argparse.Namespace) -> None:
    print(f"== Overload: GET /v1/me (DPoP), capacity 1x = {capacity:,.0f} requests/s ==")
    print(
        f"   shedding: max_pending={args.pending}, shed_lag_ms={args.lag_ms:g}; "
        f"open loop {args.seconds:g}s a row; the gateway at nice {args.nice}"
    )
    print(f"   load average {args.load_before} before the run, {os.getloadavg()} after")
    cols = (
        "mode",
        "offered/s",
        "accepted/s",
        "p50 ms",
        "p99 ms",
        "shed/s (429+503 overloaded)",
        "timeouts+errors",
        "server core",
        "client core",
    )
    rows = []
    for r in runs:
        other = r.outcomes["timeout"] + r.outcomes["error"]
        rows.append(
            (
                r.label,
                f"{r.offered:,.0f}",
                f"{r.rate('200'):,.0f}",
                f"{r.pct(0.50):,.1f}",
                f"{r.pct(0.99):,.1f}",
                f"{r.rate(*SHED):,.0f}",
                f"{other:,}",
                f"{r.cpu:.2f}",
                f"{r.client_cpu:.2f}",
            )
        )
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]
    print(" | ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    print("-+-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
    by = {r.label: r for r in runs}
    base, plain, shed = by["shedding, 1x"], by["no shedding, 2x"], by["shedding, 2x"]
    print()
    for r in runs:
        odd = {k: v for k, v in r.outcomes.items() if k not in ("200", *SHED)}
        if odd:
            # A 503 here is not shedding but an outage (its problem type is not overloaded).
            print(f"  * {r.label}: other outcomes (not shedding) {dict(odd)}")
        if cut := {k: int(v) for k, v in r.by_limit.items() if v}:
            print(f"  * {r.label}: shed by limit {cut}")
        if r.lag > 0.05:
            print(f"  * {r.label}: the load generator fell {r.lag * 1000:,.0f} ms behind")
    ok = shed.pct(0.99) <= args.goal_ms
    verdict = "PASS" if ok else "MISS"
    print(
        f"{verdict}  at 2x with shedding, p99 of accepted {shed.pct(0.99):,.1f} ms "
        f"(goal {args.goal_ms:g} ms; {shed.pct(0.99) / base.pct(0.99):.2f}x of 1x), "
        f"accepted {shed.rate('200'):,.0f}/s = {shed.rate('200') / capacity:.2f}x of capacity, "
        f"shed {shed.rate(*SHED):,.0f}/s"
    )
    print(
        f"INFO  at 2x without shedding, p99 {plain.pct(0.99):,.1f} ms = "
        f"{plain.pct(0.99) / max(shed.pct(0.99), 1e-9):.1f}x the shedding gateway's, "
        f"accepted {plain.rate('200'):,.0f}/s, "
        f"timed out {plain.outcomes['timeout']:,} (after {TIMEOUT:g} s)"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=6.0, help="length of each row (default 6)")
    p.add_argument("--pending", type=int, default=32, help="max_pending when shedding")
    p.add_argument("--connections", type=int, default=256, help="load generator connections")
    p.add_argument("--lag-ms", type=float, default=100, help="shed_lag_ms when shedding")
    p.add_argument("--nice", type=int, default=0, help="the gateway's niceness (default 0)")
    p.add_argument("--goal-ms", type=float, default=250.0, help="p99 goal of accepted, ms")
    args = p.parse_args()
    threading.Timer(WATCHDOG, lambda: os._exit(3)).start()  # bounded, whatever happens
    args.load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="telegate-overload-"))
    try:
        capacity, runs = asyncio.run(measure(args, tmp))
        report(capacity, runs, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    os._exit(0)  # the watchdog timer thread must not keep the process alive


if __name__ == "__main__":
    main()
