"""Benchmark of the gateway as a witnessed log: how soon an append is covered by a witnessed
checkpoint, and what witnessing costs the appends, against the same gateway with none.

Not a test: it measures and prints tables (system | metric | value | ratio), then checks the
targets of issue 9 (< 5 % append throughput loss, witnessed within 1 s p99 at 5,000
appends/s offered) and prints PASS/MISS with the margin.

    python -m bench.witnessing --quick        # under a minute
    python -m bench.witnessing                # full run, about 4 minutes
    python -m bench.witnessing --witness-rate 50 --json bench/out/witnessing.json

Three witnesses run as separate ``telegate witness serve`` processes on 127.0.0.1 for the
whole run. A row is one witnessed setup (1 witness, quorum 1; 3 witnesses, quorum 3 or 2)
beside its peer, the same gateway with no witnesses: two fresh gateways, each
``create_app(Config(...))`` served by an aiohttp AppRunner on a free loopback port in this
process, measured phase by phase one after the other. The appends are made in this process
through the gateway's own ``gateway.recorder.record`` (``Log.append`` plus its metric): no
HTTP endpoint appends at 5,000/s on this machine (an authenticated request costs the gateway
about 0.8 ms of CPU, see bench.auth), and the witnessing task runs on this same event loop,
as it does in ``telegate serve``. Progress goes to stderr, results to stdout. A watchdog
stops the run if it overruns.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if not __package__:
    # Run as a script (python bench/witnessing.py): this file's directory would shadow the
    # ``ledger`` package, so look modules up from the repository root instead.
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    sys.path.insert(0, os.path.dirname(_here))

from bench.auth import AuthTable, Gateway, _delta, meta, run_section, watchdog
from bench.ledger import (
    Results,
    _load,
    closed_loop,
    entry,
    pct,
    print_summary,
    progress,
    schedule,
    status,
)
from bench.vitals import free_port, machine_busy, proc_cpu

OFFERED = 5000.0  # appends/s, the rate
TARGET_LOSS = 0.05  # most append throughput witnessing may cost
TARGET_P99 = 1.0  # seconds from receipt to a witnessed checkpoint covering it
ORIGIN = "bench.example/telegate/log"
WARMUP = 200  # appends before each measured phase
TRICKLE = 20.0  # appends/s: more commits than picks, so witnessing runs at its full rate
DRAIN = 10.0  # seconds to wait for the last appends of a phase to be witnessed

now = time.perf_counter


class WitnessTable(AuthTable):
    """bench.auth's table; the ratio column names what it compares with."""

    def __init__(self, title: str, against: str) -> None:
        super().__init__(title)
        self.against = against

    def render(self) -> str:
        return super().render().replace("ratio to telegate", f"ratio to {self.against}", 1)


@dataclass(frozen=True, slots=True)
class Setup:
    """A row's witnessing: the first ``n`` witnesses, ``k`` of them make a quorum."""

    label: str
    n: int
    k: int


PEER = Setup("gateway, 0 witnesses (peer)", 0, 0)
WITNESSED = (
    Setup("gateway, 1 witness (1 of 1)", 1, 1),
    Setup("gateway, 3 witnesses (3 of 3)", 3, 3),
    Setup("gateway, 3 witnesses (2 of 3)", 3, 2),
)


# -- the witnesses: `telegate witness serve`, one process each ---------------------------------
class WitnessProcess:
    """``telegate witness serve --config <toml>`` on a free loopback port, following ``logs``
    (origin -> log vkey), with none of this shell's TELEGATE_* settings."""

    def __init__(self, root: Path, name: str, logs: dict[str, str]) -> None:
        from gateway.config import WitnessPeer
        from gateway.witness.config import WitnessConfig
        from gateway.witness.keys import init_witness_key

        self.name, self.port = name, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        toml = root / f"{name.split('.')[0]}.toml"
        blocks = "".join(
            f"\n[[logs]]\norigin = {json.dumps(o)}\nvkey = {json.dumps(v)}\n"
            for o, v in logs.items()
        )
        toml.write_text(
            f"name = {json.dumps(name)}\ndata_dir = {json.dumps(toml.stem)}\n"
            f'host = "127.0.0.1"\nport = {self.port}\n{blocks}'
        )
        config = WitnessConfig.load(toml)
        # What `telegate witness init` does; `serve` then loads this key.
        self.vkey = init_witness_key(config.key_path, name)[0].vkey
        self.peer = WitnessPeer(self.url, self.vkey)
        self.log = toml.with_suffix(".log")
        exe = Path(sys.executable).with_name("telegate")
        env = {k: v for k, v in os.environ.items() if not k.startswith("TELEGATE_")}
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [str(exe), "witness", "serve", "--config", str(toml)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )

    async def wait_ready(self, http: Any, limit: float = 60.0) -> None:
        deadline = now() + limit
        while now() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"witness {self.name} exited: {self.tail()}")
            with contextlib.suppress(OSError, asyncio.TimeoutError):
                async with http.get(self.url + "/healthz") as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"witness {self.name} not ready within {limit:g}s: {self.tail()}")

    def cpu(self) -> float:
        return sum(proc_cpu(self.proc.pid))

    def tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-800:]
        return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


# -- one gateway -------------------------------------------------------------------------------
class Served:
    """What bench.auth's /metrics reader needs: an HTTP session and the gateway's base URL."""

    def __init__(self, session: Any, base: str) -> None:
        self.session, self.base = session, base

    async def metrics(self) -> dict[str, float]:
        return await Gateway.metrics(self)  # type: ignore[arg-type]


def watch_published(ledger: Any) -> list[tuple[float, int, bytes]]:
    """(time, size, note) each time the gateway adopts a quorum-cosigned checkpoint.

    ``Witnessing._publish`` hands it to ``Log.set_cosigned``, and ``GET /ledger/checkpoint``
    serves ``log.cosigned_checkpoint`` from the moment that returns: the time taken right
    after it is the first instant any client could be served it. The wrapper is set on this
    Log instance only; the gateway's code is not changed.
    """
    marks: list[tuple[float, int, bytes]] = []
    adopt = ledger.set_cosigned

    def set_cosigned(note: bytes) -> None:
        adopt(note)
        t = now()
        marks.append((t, _size(note), note))  # list.append: safe from the worker thread

    ledger.set_cosigned = set_cosigned
    return marks


def _size(note: bytes) -> int:
    from ledger.checkpoint import Checkpoint
    from ledger.note import parse_note

    return Checkpoint.parse(parse_note(note).text).size


def after(receipts: Sequence[tuple[float, int]], seen: Sequence[tuple[float, int]]) -> list[float]:
    """For each (receipt time, index), seconds until the first (time, size) in ``seen`` (sizes
    rising) whose tree covers the index; inf if none did. Sorted."""
    sizes = [s for _, s in seen]
    out = []
    for t, index in receipts:
        j = bisect.bisect_right(sizes, index)  # the first size > index
        out.append(seen[j][0] - t if j < len(seen) else float("inf"))
    out.sort()
    return out


async def until(cond: Callable[[], bool], limit: float) -> bool:
    """Wait until ``cond()`` holds (checked every 5 ms); False after ``limit`` seconds."""
    deadline = now() + limit
    while not cond():
        if now() > deadline:
            return False
        await asyncio.sleep(0.005)
    return True


async def wait_covered(marks: list[tuple[float, int, bytes]], size: int, limit: float) -> bool:
    return await until(lambda: bool(marks) and marks[-1][1] >= size, limit)


async def poll_checkpoint(
    http: Any, url: str, interval: float, stop: asyncio.Event
) -> list[tuple[float, bytes]]:
    """GET /ledger/checkpoint every ``interval`` s until ``stop``: each new body, first seen."""
    seen: list[tuple[float, bytes]] = []
    while not stop.is_set():
        async with http.get(url) as r:
            body = await r.read()
        if not seen or body != seen[-1][1]:
            seen.append((now(), body))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
    return seen


def cpu_now(witnesses: Sequence[WitnessProcess]) -> tuple[float, float, float, float]:
    """(wall, this process's CPU, the witnesses' CPU, the machine's busy CPU), seconds."""
    return now(), sum(proc_cpu(os.getpid())), sum(w.cpu() for w in witnesses), machine_busy()


THREADS = {"ledger-writer": "writer", "MainThread": "loop", "asyncio_": "workers"}


def thread_cpu() -> dict[str, float]:
    """CPU seconds of this process's threads: the ledger writers, the event loop's thread,
    the default executor's workers (asyncio.to_thread) and the rest."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    tick, out = os.sysconf("SC_CLK_TCK"), dict.fromkeys([*THREADS.values(), "other"], 0.0)
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError):
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            name = names.get(int(tid), "")
            group = next((g for p, g in THREADS.items() if name.startswith(p)), "other")
            out[group] += (int(fields[11]) + int(fields[12])) / tick
    return out


def cpu_since(
    t0: tuple[float, float, float, float], witnesses: Sequence[WitnessProcess], n: int
) -> dict[str, float]:
    """CPU per append (µs) over ``n`` appends since ``t0``, and how busy the rest was."""
    wall, me, wit, busy = (b - a for a, b in zip(t0, cpu_now(witnesses), strict=True))
    return {
        "gw_cpu_us": me / max(1, n) * 1e6,
        "witness_cpu_us": wit / max(1, n) * 1e6,
        "gw_core": me / wall,
        "others_core": max(0.0, busy - me - wit) / wall,  # clock ticks can make it < 0
    }


async def open_loop(
    append: Any, rate: float, seconds: float, receipts: list[tuple[float, int]]
) -> dict[str, Any]:
    """``rate * seconds`` appends scheduled at fixed intervals, each in its own task, never
    waiting for earlier ones; latency from the scheduled time (no coordinated omission)."""
    total, lat, tasks = int(rate * seconds), [], set()
    errors: list[str] = []

    async def one(i: int, sched: float) -> None:
        try:
            r = await append(i)
        except Exception as e:
            errors.append(f"{type(e).__name__}: {e}")
            return
        t = now()
        receipts.append((t, r.index))
        lat.append(t - sched)

    t0, lag = await schedule(rate, total, one, tasks)
    if tasks:
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
    end = max((t for t, _ in receipts), default=now())
    lat.sort()
    return {
        "n": len(lat),
        "total": total,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "achieved": len(lat) / (end - t0),
        "receipt_p50_ms": pct(lat, 0.5) * 1e3,
        "receipt_p99_ms": pct(lat, 0.99) * 1e3,
        "send_lag_ms": lag * 1e3,
    }


def summary(lat: Sequence[float]) -> dict[str, float]:
    return {
        "p50_ms": pct(lat, 0.5) * 1e3,
        "p99_ms": pct(lat, 0.99) * 1e3,
        "max_ms": (lat[-1] if lat else float("nan")) * 1e3,
        "unwitnessed": sum(1 for x in lat if x == float("inf")),
        "samples": len(lat),
    }


def _sum(m: dict[str, float], name: str) -> float:
    """A metric summed over its label sets."""
    return sum(v for k, v in m.items() if k == name or k.startswith(name + "{"))


def _dsum(a: dict[str, float], b: dict[str, float], name: str) -> float:
    return _sum(b, name) - _sum(a, name)


class RowGateway:
    """One gateway: ``create_app(Config(...))`` on a free loopback port, in this process,
    with the setup's witnesses; its adoptions of witnessed checkpoints timed."""

    def __init__(
        self, cfg: Config, s: Setup, j: int, tmp: Path, mine: list[WitnessProcess]
    ) -> None:
        from gateway.app import create_app
        from gateway.config import Config as GatewayConfig

        self.setup, self.mine = s, mine
        self.config = GatewayConfig(
            data_dir=tmp / f"gw{j}",
            log_origin=f"{ORIGIN}/{j}",
            witnesses=tuple(w.peer for w in mine),
            witness_quorum=s.k if s.n else -1,
            witness_rate=cfg.witness_rate,
            rate_exempt_loopback=True,  # one load generator: the request limits stay out of it
        )
        self.app = create_app(self.config)
        self.seq = iter(range(10**9))
        self.runner: Any = None

    async def start(self, http: Any) -> None:
        from aiohttp import web

        from gateway.appkeys import LOG
        from gateway.witnessing import WITNESSING

        self.runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.served = Served(http, f"http://127.0.0.1:{self.runner.addresses[0][1]}")
        self.ledger = self.app[LOG]
        self.marks = watch_published(self.ledger)
        # The gateway.started event witnessed: connections to the witnesses are open.
        # (It may have been adopted before the wrapper was set: ask Witnessing.)
        if self.mine and not await until(lambda: self.app[WITNESSING].published >= 1, 30):
            raise RuntimeError(f"{self.setup.label}: no witnessed checkpoint 30 s after start")
        await asyncio.gather(*(self.append() for _ in range(WARMUP)))
        self.m_start = await self.served.metrics()

    async def append(self, _: object = None) -> Any:
        from gateway.recorder import record

        return await record(self.app, entry(next(self.seq)))

    async def drain(self) -> bool:
        """Wait until a witnessed checkpoint covers every append so far."""
        return not self.mine or await wait_covered(self.marks, self.ledger.size, DRAIN)

    def published(self) -> list[tuple[float, int]]:
        return [(t, size) for t, size, _ in self.marks]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        shutil.rmtree(self.config.data_dir, ignore_errors=True)


@dataclass
class Row:
    """One witnessed setup and its own peer (a second fresh gateway, 0 witnesses), side by
    side in one round."""

    setup: Setup
    round: int
    out: dict[str, Any] = field(default_factory=dict)  # the witnessed gateway
    peer: dict[str, Any] = field(default_factory=dict)
    witnessed: list[float] = field(default_factory=list)  # offered rate, seconds, sorted
    polled: list[float] = field(default_factory=list)
    saturated: list[float] = field(default_factory=list)  # closed loop


async def trickle(cfg: Config, gw: RowGateway, witnesses: list[WitnessProcess], o: Any) -> None:
    """A few appends a second: witnessing still submits at its full rate (more commits than
    picks), so the CPU above the peer's is what witnessing costs per second."""
    c = cpu_now(witnesses)
    await open_loop(gw.append, TRICKLE, cfg.trickle_seconds, [])
    wall, me, wit, _ = (b - a for a, b in zip(c, cpu_now(witnesses), strict=True))
    o.update(trickle_gw_ms_s=me / wall * 1e3, trickle_witness_ms_s=wit / wall * 1e3)
    await gw.drain()


async def offered(
    cfg: Config, gw: RowGateway, witnesses: list[WitnessProcess], http: Any, o: Any
) -> tuple[list[tuple[float, int]], list[tuple[float, bytes]]]:
    """The offered rate, open loop, GET /ledger/checkpoint polled meanwhile; returns the
    (receipt time, index) of each append and the bodies polled."""
    m0 = await gw.served.metrics()
    receipts: list[tuple[float, int]] = []
    stop = asyncio.Event()
    url = gw.served.base + "/ledger/checkpoint"
    poller = asyncio.create_task(poll_checkpoint(http, url, cfg.poll, stop))
    published0, c = len(gw.marks), cpu_now(witnesses)
    o.update(await open_loop(gw.append, cfg.rate, cfg.seconds, receipts))
    o.update(cpu_since(c, witnesses, o["n"]))
    o["published_per_s"] = (len(gw.marks) - published0) / (now() - c[0])
    o["drained"] = await gw.drain()
    await asyncio.sleep(2 * cfg.poll)  # the poller sees the last one too
    stop.set()
    seen = await poller
    m1 = await gw.served.metrics()
    commits = _delta(m1, m0, "telegate_ledger_commit_entries_count")
    o["entries_per_commit"] = _delta(m1, m0, "telegate_ledger_commit_entries_sum") / commits
    if gw.mine:
        cosigned = _dsum(m0, m1, "telegate_witness_cosign_seconds_count")
        o["cosign_mean_ms"] = (
            _dsum(m0, m1, "telegate_witness_cosign_seconds_sum") / max(1.0, cosigned) * 1e3
        )
        o["submissions_per_s"] = cosigned / cfg.seconds / len(gw.mine)
    return receipts, seen


async def burst(
    cfg: Config,
    gw: RowGateway,
    witnesses: list[WitnessProcess],
    acc: dict[str, float],
    sat: list[tuple[float, int]],
) -> None:
    """One closed-loop burst: as many appends as the gateway takes; sums into ``acc``."""

    async def timed(_: bytes) -> None:
        r = await gw.append()
        sat.append((now(), r.index))

    c, th = cpu_now(witnesses), thread_cpu()
    n, elapsed = await closed_loop(timed, cfg.appenders, cfg.burst_seconds, gw.seq)
    wall, me, wit, busy = (b - a for a, b in zip(c, cpu_now(witnesses), strict=True))
    threads = {k: v - th[k] for k, v in thread_cpu().items()}
    for k, v in (("n", n), ("elapsed", elapsed), ("cpu", me), ("wall", wall), *threads.items()):
        acc[k] = acc.get(k, 0.0) + v
    acc["others"] = acc.get("others", 0.0) + busy - me - wit
    await gw.drain()  # untimed: the next burst (the other gateway's) starts from quiet


async def run_row(
    cfg: Config, row: Row, j: int, tmp: Path, witnesses: list[WitnessProcess], http: Any
) -> None:
    """The witnessed gateway and its peer, phase by phase, one after the other (the order
    swapped every round): a trickle, the offered rate, then closed-loop bursts alternating
    between the two, so both meet the same background load."""
    wit = RowGateway(cfg, row.setup, 2 * j, tmp, witnesses[: row.setup.n])
    peer = RowGateway(cfg, PEER, 2 * j + 1, tmp, [])
    pair = [(peer, row.peer), (wit, row.out)]
    if row.round % 2:
        pair.reverse()
    sat: list[tuple[float, int]] = []
    acc: dict[int, dict[str, float]] = {id(gw): {} for gw, _ in pair}
    try:
        for gw, _ in pair:
            await gw.start(http)
        for gw, o in pair:
            await trickle(cfg, gw, witnesses, o)
        found = {}
        for gw, o in pair:
            found[id(gw)] = await offered(cfg, gw, witnesses, http, o)
        for _ in range(cfg.bursts):
            for gw, _ in pair:
                await burst(cfg, gw, witnesses, acc[id(gw)], sat if gw is wit else [])
        m_end = await wit.served.metrics()
    finally:
        for gw, _ in pair:
            await gw.stop()
    for gw, o in pair:
        a = acc[id(gw)]
        o.update(
            saturated_aps=a["n"] / a["elapsed"],
            saturated_cpu_us=a["cpu"] / a["n"] * 1e6,
            saturated_core=a["cpu"] / a["wall"],
            saturated_others=max(0.0, a["others"]) / a["wall"],
            **{f"saturated_{g}_core": a[g] / a["wall"] for g in (*THREADS.values(), "other")},
        )
    receipts, seen = found[id(wit)]
    row.witnessed = after(receipts, wit.published())
    row.saturated = after(sat, wit.published())
    row.polled = check_served(wit, seen, receipts, row.out)
    row.out["failures"] = _dsum(wit.m_start, m_end, "telegate_witness_failures_total")
    row.out["alarms"] = _dsum(wit.m_start, m_end, "telegate_witness_alarms_total")
    row.out.update(summary(row.witnessed))
    row.out.update({f"saturated_{k}": v for k, v in summary(row.saturated).items()})


def check_served(
    gw: RowGateway, seen: list[tuple[float, bytes]], receipts: list[tuple[float, int]], o: Any
) -> list[float]:
    """Verify every polled body and every adopted note: k valid cosignatures by the row's
    witnesses (counted in ``o["invalid_served"]``); return the latency as polled."""
    from ledger.checkpoint import verify_witnessed
    from ledger.errors import LedgerError
    from ledger.note import Verifier

    log_v = Verifier.from_vkey(gw.ledger.signer.vkey)
    wit_v = [Verifier.from_vkey(w.vkey) for w in gw.mine]
    bad, polled = 0, []
    notes = [(t, body, True) for t, body in seen] + [(t, n, False) for t, _, n in gw.marks]
    for t, note, was_polled in notes:
        try:
            cp = verify_witnessed(note, log_v, wit_v, gw.setup.k).checkpoint
        except LedgerError:
            bad += 1
        else:
            if was_polled:
                polled.append((t, cp.size))
    o.update(invalid_served=bad, polls_seen=len(seen))
    return after(receipts, polled)


# -- the rows, interleaved -----------------------------------------------------------------------
def plan(cfg: Config) -> list[Row]:
    """Every witnessed setup once a round (with its own peer), the order rotated."""
    rows = []
    for r in range(cfg.rounds):
        k = r % len(WITNESSED)
        rows += [Row(s, r) for s in WITNESSED[k:] + WITNESSED[:k]]
    return rows


async def bench_rows(
    cfg: Config, rows: list[Row], tmp: Path, witnesses: list[WitnessProcess], http: Any
) -> None:
    for j, row in enumerate(rows):
        progress(
            f"round {row.round + 1}/{cfg.rounds}: {row.setup.label} and its peer "
            f"(row {j + 1}/{len(rows)}; load average {_load()})"
        )
        await run_row(cfg, row, j, tmp, witnesses, http)
        o, p = row.out, row.peer
        progress(
            f"  witnessed p99 {o['p99_ms']:.0f} ms; receipt p99 {o['receipt_p99_ms']:.1f} ms "
            f"(peer {p['receipt_p99_ms']:.1f}); saturated {o['saturated_aps']:,.0f}/s "
            f"(peer {p['saturated_aps']:,.0f}/s)"
        )


# -- tables --------------------------------------------------------------------------------------
def _med(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def _name(s: Setup) -> str:
    return f"{s.k} of {s.n}"


def latency_rows(cfg: Config, t: WitnessTable, s: Setup, rs: list[Row]) -> dict[str, Any]:
    """Table 1's rows for one setup, its samples pooled over the rounds."""
    w, p, q = (summary(sorted(x for r in rs for x in getattr(r, a))) for a in LATENCIES)
    base, at = s.n == 1, f"@{cfg.rate:,.0f}/s"

    def add(metric: str, value: float, key: str, note: str = "") -> None:
        t.add(s.label, metric, value, "ms", key=key, base=base, note=note)

    def med(key: str) -> float:
        return _med([r.out[key] for r in rs])

    add(f"p50 receipt -> witnessed {at}", w["p50_ms"], "p50")
    add(
        f"p99 receipt -> witnessed {at}",
        w["p99_ms"],
        "p99",
        "(per round: "
        + " / ".join(f"{r.out['p99_ms']:.0f}" for r in rs)
        + " ms; rest of the machine "
        + " / ".join(f"{r.out['others_core']:.2f}" for r in rs)
        + " core)",
    )
    add(f"max receipt -> witnessed {at}", w["max_ms"], "max")
    add("  p99 seen polling /ledger/checkpoint", p["p99_ms"], "poll", "(an upper bound)")
    add(
        "  mean pick -> cosignature (gateway metric)",
        med("cosign_mean_ms"),
        "cosign",
        f"({med('submissions_per_s'):.1f} submissions/s to each witness, "
        f"{med('published_per_s'):.1f} witnessed checkpoints published/s)",
    )
    add(
        f"  p99 at saturation ({cfg.appenders} appenders)",
        q["p99_ms"],
        "sat",
        f"(p50 {q['p50_ms']:.0f} ms)",
    )
    return dict(zip(LATENCIES, (w, p, q), strict=True))


LATENCIES = ("witnessed", "polled", "saturated")


def cost_rows(cfg: Config, t: WitnessTable, s: Setup, rs: list[Row]) -> dict[str, Any]:
    """Table 2's rows for one setup and its peers: medians over the rounds, the ratio of
    the medians, and the per-round ratios of the closed loop."""
    at = f"@{cfg.rate:,.0f}/s"

    def med(key: str, peer: bool) -> float:
        return _med([(r.peer if peer else r.out)[key] for r in rs])

    def ratios(key: str) -> list[float]:
        return [r.out[key] / r.peer[key] for r in rs]

    def add(metric: str, key: str, unit: str, note: Callable[[bool], str]) -> None:
        for peer in (True, False):
            extra = note(peer)
            if key == "saturated_aps" and not peer:
                extra = f"(per round: {', '.join(f'{x:.2f}x' for x in ratios(key))}) {extra}"
            label = PEER.label if peer else s.label
            t.add(label, metric, med(key, peer), unit, key=f"{key} {s}", base=peer, note=extra)

    add(
        f"appends/s, closed loop, {cfg.appenders} appenders",
        "saturated_aps",
        "/s",
        lambda p: f"(rest of the machine {med('saturated_others', p):.2f} core)",
    )
    add(
        "  gateway CPU per append, closed loop",
        "saturated_cpu_us",
        "us",
        lambda p: (
            f"({med('saturated_core', p):.2f} core: ledger writer "
            f"{med('saturated_writer_core', p):.2f}, event loop {med('saturated_loop_core', p):.2f}"
            f", to_thread workers {med('saturated_workers_core', p):.2f})"
        ),
    )
    add(
        f"  append -> receipt p99 {at}",
        "receipt_p99_ms",
        "ms",
        lambda p: f"(p50 {med('receipt_p50_ms', p):.2f} ms)",
    )
    add(
        f"  gateway CPU per append {at}",
        "gw_cpu_us",
        "us",
        lambda p: (
            f"({med('gw_core', p):.2f} core; witnesses {med('witness_cpu_us', p):.1f} "
            f"µs; rest of the machine {med('others_core', p):.2f} core; "
            f"{med('entries_per_commit', p):.1f} entries per group commit)"
        ),
    )
    add(
        f"  gateway CPU per second @{TRICKLE:,.0f}/s",
        "trickle_gw_ms_s",
        "ms/s",
        lambda p: f"(witnesses {med('trickle_witness_ms_s', p):.0f} ms/s)",
    )
    return {
        "throughput": ratios("saturated_aps"),
        "cpu_per_append": ratios("saturated_cpu_us"),
        "fixed_gw_ms_s": _med([r.out["trickle_gw_ms_s"] - r.peer["trickle_gw_ms_s"] for r in rs]),
        "fixed_witness_ms_s": med("trickle_witness_ms_s", False),
        "peer_core": med("saturated_core", True),
    }


def report(cfg: Config, rows: list[Row], res: Results) -> None:
    m = res.metrics
    m["rows"] = [
        {"setup": r.setup.label, "round": r.round + 1, "witnessed": r.out, "peer": r.peer}
        for r in rows
    ]
    by = {s: [r for r in rows if r.setup == s] for s in WITNESSED}
    t = WitnessTable(
        f"1. Checkpoint-to-witnessed latency at {cfg.rate:,.0f} appends/s offered", "1 witness"
    )
    for s, rs in by.items():
        m[f"latency {_name(s)}"] = latency_rows(cfg, t, s, rs)
    invalid = sum(r.out["invalid_served"] for r in rows)
    fails = sum(r.out["failures"] + r.out["alarms"] for r in rows)
    unw = sum(summary(r.witnessed)["unwitnessed"] for r in rows)
    errors = sum(r.out["errors"] + r.peer["errors"] for r in rows)
    t.notes += [
        "receipt -> witnessed: for each append, from the moment its receipt is returned to "
        "the appender (the entry is durable and in a log-signed checkpoint) to the first "
        "moment GET /ledger/checkpoint serves a checkpoint with k valid cosignatures whose "
        "size covers the entry. That moment is taken when the gateway adopts the checkpoint "
        "(Log.set_cosigned returns, timed by a wrapper on the Log instance): the handler "
        "serves log.cosigned_checkpoint from then on, so it is exact, with no polling "
        "interval and no added load. /metrics has no such instant (telegate_witnessed_size "
        "is a gauge to poll; telegate_witness_cosign_seconds starts at the pick, after the "
        "rate-limit wait, and ends before the quorum is counted).",
        f"cross-check: a client in this process polls GET /ledger/checkpoint every "
        f"{cfg.poll * 1e3:g} ms during every offered-rate phase (the peer's too) and checks "
        "each new body with ledger.checkpoint.verify_witnessed(note, log vkey, witness "
        "vkeys, k); so is every adopted note. Served or adopted without k valid "
        f"cosignatures: {invalid}. Witness failures and alarms: {fails:g}. Appends not "
        f"witnessed within {DRAIN:g} s of their phase's end: {unw}. Failed appends: "
        f"{errors}.",
        f"samples: every append of the offered-rate phases, pooled over {cfg.rounds} "
        f"round(s) ({cfg.seconds:g} s x {cfg.rate:,.0f}/s each); saturation: the "
        f"closed-loop bursts ({cfg.appenders} appenders). The gateway submits at most "
        f"witness_rate = {cfg.witness_rate:g} checkpoints a second to each witness (its "
        "default is 10), so a new checkpoint waits up to "
        f"{1e3 / cfg.witness_rate:.0f} ms for the next pick.",
    ]
    res.emit(t)

    t = WitnessTable(
        "2. What witnessing costs the appends: each setup beside its own peer (0 witnesses)",
        "its peer",
    )
    for s, rs in by.items():
        m[f"cost {_name(s)}"] = cost_rows(cfg, t, s, rs)
    t.notes += [
        "each row of a round starts two fresh gateways in this process (fresh data "
        "directories and log keys): the witnessed one and its peer. They run each phase one "
        "after the other (which goes first swaps every round), and the closed loop as "
        f"{cfg.bursts} bursts of {cfg.burst_seconds:g} s each, alternating between them, so "
        "both meet the same background load. Values are medians over the rounds; the "
        "ratio is of the medians, the per-round ratios are those of each pair.",
        f"phases: {cfg.trickle_seconds:g} s at {TRICKLE:,.0f} appends/s (more commits than "
        "picks: witnessing runs at its full rate, so the CPU above the peer's is its cost "
        f"per second); {cfg.seconds:g} s at {cfg.rate:,.0f}/s (appends scheduled every "
        f"{1e3 / cfg.rate:.1f} ms, each its own task awaiting gateway.recorder.record(app, "
        "event bytes), receipt latency from the scheduled time); the closed-loop bursts "
        "(bench.ledger's closed_loop over the same call). The witnesses stay up across rows "
        "and follow one origin per gateway.",
        "CPU: this process (both gateways' event loop, ledger writers and threads, plus the "
        "in-process appenders and the poller; the idle gateway takes nothing) and the three "
        "witness processes, from /proc; 'rest of the machine' is the CPU busy outside them "
        "(other jobs on this shared host), out of 2 cores.",
    ]
    res.emit(t)


def summarize(cfg: Config, res: Results) -> None:
    m = res.metrics
    lines: list[dict[str, Any]] = []

    def add(target: str, ok: bool | None, detail: str) -> None:
        lines.append({"target": target, "status": status(ok), "detail": detail})

    cost = {s: m[f"cost {_name(s)}"] for s in WITNESSED if f"cost {_name(s)}" in m}
    if cost:
        loss = {s: 1 - _med(c["throughput"]) for s, c in cost.items()}
        worst = max(loss, key=lambda s: loss[s])
        add(
            "< 5 % append throughput loss with witnessing",
            loss[worst] < TARGET_LOSS,
            f"worst {_name(worst)}: {loss[worst]:+.1%} ({loss[worst] / TARGET_LOSS:.2f}x of "
            "the limit); "
            + ", ".join(
                f"{_name(s)} {loss[s]:+.1%} [{1 - max(c['throughput']):+.0%} to "
                f"{1 - min(c['throughput']):+.0%}]"
                for s, c in cost.items()
            )
            + " (closed loop vs its peer: median [range] of the per-round pairs)",
        )
        add(
            "  (info) CPU per append at saturation vs its peer",
            None,
            ", ".join(f"{_name(s)} {_med(c['cpu_per_append']) - 1:+.1%}" for s, c in cost.items())
            + " (gateway process, median of the pairs)",
        )
        add(
            "  (info) CPU witnessing takes per second",
            None,
            ", ".join(
                f"{_name(s)}: gateway {c['fixed_gw_ms_s']:+.0f} ms/s "
                f"({c['fixed_gw_ms_s'] / 10:.1f} % of one core, "
                f"{c['fixed_gw_ms_s'] / (c['peer_core'] * 10):.1f} % of the "
                f"{c['peer_core']:.2f} core the peer got at saturation), witnesses "
                f"{c['fixed_witness_ms_s']:.0f} ms/s"
                for s, c in cost.items()
            )
            + f" (at {TRICKLE:,.0f} appends/s, minus the peer's; witness_rate "
            f"{cfg.witness_rate:g}/s)",
        )
    lat = {
        s: m[f"latency {_name(s)}"]["witnessed"] for s in WITNESSED if f"latency {_name(s)}" in m
    }
    if lat:
        worst = max(lat, key=lambda s: lat[s]["p99_ms"])
        p99 = lat[worst]["p99_ms"] / 1e3
        add(
            f"witnessed within 1 s p99 at {cfg.rate:,.0f} appends/s",
            p99 < TARGET_P99 and not any(x["unwitnessed"] for x in lat.values()),
            f"worst {_name(worst)}: p99 {p99 * 1e3:.0f} ms = {p99 / TARGET_P99:.2f}x of the "
            "limit; "
            + ", ".join(
                f"{_name(s)} p50 {x['p50_ms']:.0f} / p99 {x['p99_ms']:.0f} ms"
                for s, x in lat.items()
            ),
        )
    rows = m.get("rows", [])
    if rows:
        quiet = [r["witnessed"] for r in rows if r["witnessed"]["others_core"] < 1.0]
        busy = [r["witnessed"] for r in rows if r["witnessed"]["others_core"] >= 1.0]

        def worst_p99(rs: list[dict[str, float]]) -> str:
            if not rs:
                return "no row"
            return f"worst p99 {max(r['p99_ms'] for r in rs):.0f} ms over {len(rs)} row(s)"

        add(
            "  (info) witnessed p99 by what the rest of the machine used",
            None,
            f"under 1 core (of 2): {worst_p99(quiet)}; 1 core or more: {worst_p99(busy)}",
        )
    note = "(--quick: one round, short phases; run without --quick for the full numbers)"
    print_summary(res, lines, note if cfg.quick else None)


# -- driver --------------------------------------------------------------------------------------
@dataclass
class Config:
    quick: bool
    rounds: int
    seconds: float
    trickle_seconds: float
    bursts: int
    burst_seconds: float
    rate: float
    appenders: int
    witness_rate: float
    poll: float
    hard_limit: float
    json: str | None
    tmpdir: str | None


def parse_args(argv: Sequence[str] | None = None) -> Config:
    ap = argparse.ArgumentParser(
        prog="python -m bench.witnessing",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    ap.add_argument("--quick", action="store_true", help="one round of short phases")
    ap.add_argument("--rounds", type=int, help="rounds of every setup (default 3; quick 1)")
    ap.add_argument("--seconds", type=float, help="offered-rate phase (default 5; quick 3)")
    ap.add_argument("--bursts", type=int, help="closed-loop bursts per gateway (3; quick 2)")
    ap.add_argument("--rate", type=float, default=OFFERED, help="offered appends/s (5000)")
    ap.add_argument("--appenders", type=int, default=1000, help="closed-loop appenders (1000)")
    ap.add_argument(
        "--witness-rate",
        type=float,
        help="the gateway's witness_rate, submissions/s to each witness (its default, 10)",
    )
    ap.add_argument("--poll-ms", type=float, default=20.0, help="/ledger/checkpoint poll (20)")
    ap.add_argument("--json", metavar="FILE", help="also write all results as JSON")
    ap.add_argument("--tmpdir", help="where to create the data directories")
    a = ap.parse_args(argv)
    from gateway.config import Config as GatewayConfig

    q = a.quick
    rounds, seconds, bursts = (
        a.rounds or (1 if q else 3),
        a.seconds or (3.0 if q else 5.0),
        a.bursts or (2 if q else 3),
    )
    if not (1 <= rounds <= 10 and 1 <= seconds <= 60 and 1 <= bursts <= 20):
        ap.error("need 1 <= rounds <= 10, 1 <= seconds <= 60, 1 <= bursts <= 20")
    if not (100 <= a.rate <= 50_000 and 1 <= a.appenders <= 5000 and 1 <= a.poll_ms <= 1000):
        ap.error("need 100 <= rate <= 50,000, 1 <= appenders <= 5,000, 1 <= poll-ms <= 1,000")
    trickle = 2.0 if q else 3.0
    per_gateway = trickle + seconds + bursts * 1.0 + 10  # + start, drains and stop
    return Config(
        quick=q,
        rounds=rounds,
        seconds=seconds,
        trickle_seconds=trickle,
        bursts=bursts,
        burst_seconds=1.0,
        rate=a.rate,
        appenders=a.appenders,
        witness_rate=a.witness_rate or GatewayConfig().witness_rate,
        poll=a.poll_ms / 1e3,
        hard_limit=60 + rounds * len(WITNESSED) * 2 * per_gateway,
        json=a.json,
        tmpdir=a.tmpdir,
    )


async def amain(cfg: Config, res: Results, tmp: Path, witnesses: list[WitnessProcess]) -> None:
    import aiohttp

    rows = plan(cfg)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        for w in witnesses:
            await w.wait_ready(http)
        print(
            "witnesses: "
            + ", ".join(f"{w.name} at {w.url} (pid {w.proc.pid})" for w in witnesses)
            + f"; the gateways run in this process (pid {os.getpid()}), data in {tmp}",
            flush=True,
        )
        await run_section(res, "rows", lambda: bench_rows(cfg, rows, tmp, witnesses, http))
    done = [r for r in rows if r.out.get("saturated_aps")]
    if {r.setup for r in done} == set(WITNESSED):
        report(cfg, done, res)
    summarize(cfg, res)


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_args(argv)
    res = Results(args=dict(vars(cfg)))
    mt = res.meta = meta()
    print(
        f"telegate witnessing benchmark ({'quick' if cfg.quick else 'full'}): python "
        f"{mt['python']}, aiohttp {mt['aiohttp']}, sqlite {mt['sqlite']}, {mt['cpus']} CPUs, "
        f"{mt['platform']}, load average {_load()}\n"
        f"{cfg.rounds} round(s) of {len(WITNESSED)} rows, each a witnessed gateway and its "
        f"peer: {cfg.trickle_seconds:g} s at {TRICKLE:g}/s, {cfg.seconds:g} s at "
        f"{cfg.rate:,.0f} appends/s offered, {cfg.bursts} x {cfg.burst_seconds:g} s closed "
        f"loop each; witness_rate {cfg.witness_rate:g}/s",
        flush=True,
    )
    tmp = Path(tempfile.mkdtemp(prefix="telegate-bench-witnessing-", dir=cfg.tmpdir))
    witnesses: list[WitnessProcess] = []

    def kill_all() -> None:
        for w in witnesses:
            with contextlib.suppress(Exception):
                w.kill()

    timer = watchdog(cfg, res, tmp, kill_all)  # type: ignore[arg-type]
    try:
        from gateway.ledger_keys import init_log_key

        # The witnessed gateways' log keys first: the witnesses pin them all from the start.
        logs = {
            f"{ORIGIN}/{j}": init_log_key(tmp / f"gw{j}" / "keys", f"{ORIGIN}/{j}")[0].vkey
            for j in range(0, 2 * cfg.rounds * len(WITNESSED), 2)  # the witnessed ones
        }
        progress("starting 3 witnesses (telegate witness serve)")
        for i in range(3):
            witnesses.append(WitnessProcess(tmp, f"w{i}.bench.example/witness", logs))
        asyncio.run(amain(cfg, res, tmp, witnesses))
        mt["elapsed_s"] = now() - _START
        mt["loadavg_at_end"] = os.getloadavg()
        print(f"\n(total {mt['elapsed_s']:.0f}s; load average at the end {_load()})")
        res.dump(cfg.json, complete=True)
    finally:
        timer.cancel()
        for w in witnesses:
            with contextlib.suppress(Exception):
                w.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    progress("done")
    return 1 if res.errors else 0


_START = now()

if __name__ == "__main__":
    raise SystemExit(main())
