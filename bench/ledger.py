"""Side-by-side benchmark of telegate's ledger against pymerkle and the raw hardware limits.

Not a test: it measures and prints tables (system | metric | value | ratio to telegate),
then checks the targets of the ledger issue and prints PASS/MISS with the margin.

    python -m bench.ledger --quick              # ~1-2 min (what `make bench` runs)
    python -m bench.ledger                      # full: 1,000,000 entries, < 15 min
    python -m bench.ledger --entries 200000 --json bench/out/ledger.json
    python -m bench.ledger --sections postgres  # PostgreSQL: 1-3 writer processes, raw psycopg

Everything runs in one process so that the systems are compared side by side on the same
(noisy) machine. Databases live in a temporary directory that is removed at the end.
Progress goes to stderr, results to stdout. A watchdog stops the run if it overruns.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures as cf
import contextlib
import hashlib
import itertools
import json
import math
import os
import platform
import random
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ledger.log import Log

if not __package__:
    # Run as a script (python bench/ledger.py): this file's directory would shadow the
    # ``ledger`` package, so look modules up from the repository root instead.
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    sys.path.insert(0, os.path.dirname(_here))

ORIGIN = "bench.example/log"
CONCURRENCY = (1, 10, 100, 1000)
MAX_BATCH = 4096
OFFERED_RATE = 5000.0
STALL = 120.0  # appends still pending after this long mean the writer is stuck

now = time.perf_counter
_T0 = now()


def progress(msg: str) -> None:
    print(f"[{now() - _T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


# -- workload ---------------------------------------------------------------------------
_ENTRY = (
    b'{"actor":"clinician:%08d","data":{"bp":"120/80","hr":72,"seq":%d,"spo2":98},'
    b'"session":"sess-%012d","time":"2025-01-01T00:00:00.000Z","type":"vitals.batch","v":1}'
)


def entry(i: int) -> bytes:
    """A deterministic, unique, event-sized entry (~170 bytes of canonical JSON)."""
    return _ENTRY % (i % 997, i, i // 7)


def entries(start: int, stop: int) -> Iterator[bytes]:
    return (entry(i) for i in range(start, stop))


def pct(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return math.nan
    k = max(0, min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[k]


# -- result tables ------------------------------------------------------------------------
@dataclass
class Row:
    system: str
    metric: str
    value: float | None
    unit: str
    key: str | None = None  # rows with the same key are compared with the base row
    base: bool = False
    note: str = ""
    ratio: float | None = None


@dataclass
class Table:
    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(
        self,
        system: str,
        metric: str,
        value: float | None,
        unit: str,
        *,
        key: str | None = None,
        base: bool = False,
        note: str = "",
    ) -> Row:
        row = Row(system, metric, value, unit, key, base, note)
        self.rows.append(row)
        return row

    def _ratios(self) -> None:
        bases = {r.key: r.value for r in self.rows if r.base and r.key and r.value}
        for r in self.rows:
            b = bases.get(r.key) if r.key else None
            r.ratio = None if b is None or r.value is None else r.value / b

    def format_value(self, value: float | None, unit: str) -> str:
        """How a value prints; subclasses add units."""
        return fmt(value, unit)

    def render(self) -> str:
        self._ratios()
        head = ("system", "metric", "value", "ratio to telegate")
        body = [
            (
                r.system,
                r.metric,
                self.format_value(r.value, r.unit),
                ("-" if r.ratio is None else fmt_ratio(r.ratio))
                + (f"  {r.note}" if r.note else ""),
            )
            for r in self.rows
        ]
        w = [max(len(x[i]) for x in [head, *body]) for i in range(4)]

        def line(c: Sequence[str]) -> str:
            return f"{c[0]:<{w[0]}} | {c[1]:<{w[1]}} | {c[2]:>{w[2]}} | {c[3]}".rstrip()

        sep = "-+-".join("-" * n for n in w)
        out = [f"\n== {self.title} ==", line(head), sep, *map(line, body)]
        out += [f"  * {n}" for n in self.notes]
        return "\n".join(out)

    def to_json(self) -> dict[str, Any]:
        self._ratios()
        return {
            "title": self.title,
            "rows": [
                {
                    "system": r.system,
                    "metric": r.metric,
                    "value": r.value,
                    "unit": r.unit,
                    "ratio_to_telegate": r.ratio,
                }
                for r in self.rows
            ],
            "notes": self.notes,
        }


def fmt_ratio(r: float) -> str:
    if r >= 100:
        return f"{r:,.0f}x"
    return f"{r:.2f}x" if r >= 0.1 else f"{r:.2g}x"


def fmt(v: float | None, unit: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if unit == "/s":
        return f"{v:,.0f} /s"
    if unit == "ms":
        return f"{v:,.1f} ms" if v >= 100 else f"{v:.3f} ms"
    if unit == "s":
        return f"{v:,.2f} s"
    if unit == "x":
        return f"{v:.2f}x"
    return f"{v:,.0f}{' ' + unit if unit else ''}"


@dataclass
class Results:
    args: dict[str, Any]
    tables: list[Table] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    summary: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def emit(self, table: Table) -> None:
        self.tables.append(table)
        print(table.render(), flush=True)

    def dump(self, path: str | None, *, complete: bool) -> None:
        if not path:
            return
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "complete": complete,
            "meta": self.meta,
            "args": self.args,
            "metrics": self.metrics,
            "tables": [t.to_json() for t in self.tables],
            "summary": self.summary,
            "errors": self.errors,
        }
        p.write_text(json.dumps(data, indent=2, default=str) + "\n")


# -- systems ------------------------------------------------------------------------------
def open_log(path: Path, batches: list[tuple[int, float]] | None = None) -> Log:
    from ledger.log import Log
    from ledger.note import Signer
    from ledger.store import SQLiteStore

    on_commit = None if batches is None else (lambda n, t: batches.append((n, t)))
    log = Log(
        SQLiteStore(path),
        Signer.generate(ORIGIN),
        max_batch=MAX_BATCH,
        max_wait=0.0,
        on_commit=on_commit,
    )
    log.start()
    return log


def telegate_durability(log: Log) -> str:
    try:
        db = log.store._db()  # type: ignore[attr-defined]  # the writer's own settings
        jm = db.execute("PRAGMA journal_mode").fetchone()[0]
        sync = db.execute("PRAGMA synchronous").fetchone()[0]
        return f"journal_mode={jm}, synchronous={_SYNC.get(sync, sync)} (SQLiteStore's own)"
    except Exception as e:  # only informative
        return f"unknown ({e})"


_SYNC = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


def open_pymerkle(path: Path) -> tuple[Any, str]:
    """A pymerkle SqliteTree switched to the same durability as telegate (WAL, FULL)."""
    from pymerkle import SqliteTree  # type: ignore[import-untyped]

    tree = SqliteTree(str(path))
    con = tree.con
    # pymerkle's row_factory returns the first column of each row.
    jm = con.execute("PRAGMA journal_mode = WAL").fetchone()
    con.execute("PRAGMA synchronous = FULL")
    sync = con.execute("PRAGMA synchronous").fetchone()
    return tree, f"journal_mode={jm}, synchronous={_SYNC.get(sync, sync)}"


def open_raw(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.execute(
        "CREATE TABLE leaves (idx INTEGER PRIMARY KEY, data BLOB NOT NULL, hash BLOB NOT NULL)"
    )
    return db


async def closed_loop(
    call: Callable[[bytes], Awaitable[Any]], concurrency: int, duration: float, seq: Iterator[int]
) -> tuple[int, float]:
    """``concurrency`` tasks each append in a loop until ``duration`` is over.

    Returns (appends completed, elapsed seconds including the drain of in-flight appends).
    """
    deadline = now() + duration
    count = 0

    async def worker() -> None:
        nonlocal count
        while now() < deadline:
            await call(entry(next(seq)))
            count += 1

    t0 = now()
    await asyncio.wait_for(
        asyncio.gather(*(worker() for _ in range(concurrency))), duration + STALL
    )
    return count, now() - t0


# -- section 1: durable appends/s ---------------------------------------------------------
def run_telegate(path: Path, c: int, dur: float, seq: Iterator[int]) -> dict[str, Any]:
    batches: list[tuple[int, float]] = []
    log = open_log(path, batches)

    cpu = [0.0]

    async def run() -> tuple[int, float]:
        warm = (log.append(entry(next(seq))) for _ in range(min(c, 100)))
        await asyncio.wait_for(asyncio.gather(*warm), STALL)
        batches.clear()  # warm-up done
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        out = await closed_loop(log.append, c, dur, seq)
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu[0] = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        return out

    try:
        durability = telegate_durability(log)
        n, el = asyncio.run(run())
    finally:
        log.close()
    return {
        "cpu_us": 1e6 * cpu[0] / max(1, n),
        "aps": n / el,
        "avg_batch": n / len(batches) if batches else math.nan,
        "busy": sum(b[1] for b in batches) / el,
        "durability": durability,
    }


def run_pymerkle(path: Path, c: int, dur: float, seq: Iterator[int]) -> dict[str, Any]:
    tree, durability = open_pymerkle(path)
    pool = cf.ThreadPoolExecutor(max_workers=min(c, 32))

    async def run() -> tuple[int, float]:
        loop = asyncio.get_running_loop()

        def call(e: bytes) -> Awaitable[Any]:
            return loop.run_in_executor(pool, tree.append_entry, e)

        for _ in range(5):
            await call(entry(next(seq)))
        return await closed_loop(call, c, dur, seq)

    try:
        n, el = asyncio.run(run())
    finally:
        pool.shutdown()
        tree.close()
    return {"aps": n / el, "durability": durability}


def run_raw(path: Path, b: int, dur: float) -> tuple[float, list[float]]:
    """Entries/s of SHA-256 + executemany in one WAL/FULL transaction per ``b`` rows."""
    db = open_raw(path)
    sha = hashlib.sha256
    lat: list[float] = []
    n, busy, wall0 = 0, 0.0, now()
    while now() - wall0 < dur:
        start = n  # a fresh table per run
        batch = [entry(start + k) for k in range(b)]
        t0 = now()
        rows = [(start + k, e, sha(b"\x00" + e).digest()) for k, e in enumerate(batch)]
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT INTO leaves (idx, data, hash) VALUES (?, ?, ?)", rows)
        db.execute("COMMIT")
        dt = now() - t0
        busy += dt
        n += b
        lat.append(dt)
    db.close()
    return n / busy, lat


def bench_appends(cfg: Config, tmp: Path, res: Results) -> None:
    m = res.metrics
    seq = itertools.count()
    dur, raw_dur = cfg.seconds, cfg.raw_seconds
    runs: dict[str, list[float]] = {}  # metric -> one value per round
    durability = pm_durability = "?"
    commit_lat: list[float] = []
    raw_sizes: dict[int, int] = {}
    db_id = itertools.count()

    def db(name: str) -> Path:
        return tmp / f"{name}-{next(db_id)}.db"

    # Rounds of telegate, pymerkle and raw back to back at each concurrency, so that the
    # systems compared in a row group share the same stretch of machine noise.
    for r in range(cfg.rounds):
        rnd = f"round {r + 1}/{cfg.rounds}: " if cfg.rounds > 1 else ""
        for c in CONCURRENCY:
            progress(f"appends: {rnd}telegate, {c} appenders, {dur:g}s")
            tg = run_telegate(db("tg"), c, dur, seq)
            durability = tg["durability"]
            runs.setdefault(f"telegate_aps_{c}", []).append(tg["aps"])
            runs.setdefault(f"telegate_avg_batch_{c}", []).append(tg["avg_batch"])
            runs.setdefault(f"telegate_writer_busy_{c}", []).append(tg["busy"])

            progress(f"appends: {rnd}pymerkle append_entry, {c} appenders, {dur:g}s")
            pm = run_pymerkle(db("pm"), c, dur, seq)
            pm_durability = pm["durability"]
            runs.setdefault(f"pymerkle_aps_{c}", []).append(pm["aps"])

            b = 1 if math.isnan(tg["avg_batch"]) else max(1, round(tg["avg_batch"]))
            raw_sizes.setdefault(c, b)  # the first round fixes the batch size per row
            b = raw_sizes[c]
            progress(f"appends: {rnd}raw sha256 + sqlite executemany, batch={b}, {raw_dur:g}s")
            rate, lat = run_raw(db("raw"), b, raw_dur)
            runs.setdefault(f"raw_aps_{c}", []).append(rate)
            if b == 1:
                commit_lat += lat

    # pymerkle doing the work telegate does per append: a root (to sign) and a proof.
    progress(f"appends: pymerkle append_entry + get_root + prove_inclusion, {dur:g}s")
    tree, _ = open_pymerkle(db("pm-receipt"))
    n, t0 = 0, now()
    while now() - t0 < dur:
        idx = tree.append_entry(entry(next(seq)))
        tree.get_root(idx)
        tree.prove_inclusion(idx, idx)
        n += 1
    runs["pymerkle_receipt_aps_1"] = [n / (now() - t0)]
    tree.close()

    # pymerkle's batch method (one transaction per append_entries call) and the raw limit
    # at telegate's max_batch.
    pm_batches = sorted({raw_sizes[1000], MAX_BATCH})
    for b in pm_batches:
        progress(f"appends: pymerkle append_entries, batch={b}, {raw_dur:g}s")
        tree, _ = open_pymerkle(db("pm-batch"))
        n, t0 = 0, now()
        while now() - t0 < raw_dur:
            tree.append_entries([entry(next(seq)) for _ in range(b)])
            n += b
        runs[f"pymerkle_batch_aps_{b}"] = [n / (now() - t0)]
        tree.close()
    progress(f"appends: raw sha256 + sqlite executemany, batch={MAX_BATCH}, {raw_dur:g}s")
    runs[f"raw_aps_batch_{MAX_BATCH}"] = [run_raw(db("raw"), MAX_BATCH, raw_dur)[0]]

    for k, vs in runs.items():
        m[k] = statistics.median(vs)
        if len(vs) > 1:
            m[k + "_rounds"] = vs
    if commit_lat:
        commit_lat.sort()
        m["raw_commit_p50_ms"] = pct(commit_lat, 0.5) * 1e3
        m["raw_commit_p99_ms"] = pct(commit_lat, 0.99) * 1e3

    t = Table("1. Durable appends/s, closed loop (fresh database per row)")
    for c in CONCURRENCY:
        key, what = f"aps{c}", f"appends/s, {c} appender{'s' if c > 1 else ''}"
        t.add("telegate Log", what, m[f"telegate_aps_{c}"], "/s", key=key, base=True)
        busy_pct = 100 * m[f"telegate_writer_busy_{c}"]
        t.add(
            "telegate Log",
            "  avg entries per group commit",
            m[f"telegate_avg_batch_{c}"],
            "",
            note=f"(writer thread in _commit {busy_pct:.0f}% of the time)",
        )
        t.add("pymerkle SqliteTree.append_entry", what, m[f"pymerkle_aps_{c}"], "/s", key=key)
        if c == 1:
            t.add(
                "pymerkle append+get_root+prove",
                what,
                m["pymerkle_receipt_aps_1"],
                "/s",
                key=key,
                note="(receipt-equivalent work, unsigned)",
            )
        if c == 1000:
            for b in pm_batches:
                t.add(
                    f"pymerkle append_entries(batch={b})",
                    "appends/s, 1 caller batching",
                    m[f"pymerkle_batch_aps_{b}"],
                    "/s",
                    key=key,
                    note="(no proofs, no root)",
                )
        t.add(f"raw limit (batch={raw_sizes[c]})", what, m[f"raw_aps_{c}"], "/s", key=key)
        if c == 1000:
            t.add(
                f"raw limit (batch={MAX_BATCH})",
                "appends/s, max_batch",
                m[f"raw_aps_batch_{MAX_BATCH}"],
                "/s",
                key=key,
            )
    t.notes += [
        f"{dur:g}s per telegate/pymerkle row, {raw_dur:g}s per batch/raw row, after a short "
        f"warm-up; entries are ~{len(entry(123456))}-byte JSON events"
        + (
            f"; median of {cfg.rounds} interleaved rounds (telegate -> pymerkle -> raw at "
            "each concurrency; per-round values in --json)."
            if cfg.rounds > 1
            else "; telegate -> pymerkle -> raw run back to back at each concurrency."
        ),
        f"telegate durability: {durability}; each group commit is one transaction with an "
        "Ed25519-signed checkpoint, and every entry gets a receipt with an inclusion proof "
        f"(max_batch={MAX_BATCH}, max_wait=0).",
        f"pymerkle durability: {pm_durability}, set on SqliteTree.con (its default is a "
        "rollback journal). append_entry is synchronous, holds the tree lock and commits one "
        "transaction per entry, so concurrency cannot help it; it runs under asyncio in a "
        "thread pool of min(appenders, 32) threads. It returns only an index: no root, proof "
        "or signature (the receipt-equivalent row adds get_root + prove_inclusion).",
        "raw limit: SHA-256 leaf hash + sqlite3 executemany into one WAL/synchronous=FULL "
        "table, one transaction per batch of the size telegate's group commits reached at that "
        "concurrency (in round 1); no tree, no signature, no asyncio; rate = entries / time in "
        "hash+commit.",
    ]
    if commit_lat:
        t.notes.append(
            f"raw 1-row durable commit latency: p50 {m['raw_commit_p50_ms']:.3f} ms, "
            f"p99 {m['raw_commit_p99_ms']:.3f} ms (the fsync floor of any append latency)."
        )
    res.emit(t)


# -- section 2: integration latency at a fixed offered load -------------------------------
async def schedule(
    rate: float,
    total: int,
    one: Callable[[int, float], Awaitable[None]],
    tasks: set[asyncio.Task[None]],
) -> tuple[float, float]:
    """Start ``one(i, scheduled_time)`` for each of ``total`` operations at fixed intervals
    of ``1/rate``, each in its own task (kept in ``tasks`` until done), never waiting for
    earlier ones, so latency counts from the schedule (no coordinated omission). Returns
    the start time and the largest lag behind schedule in starting one."""
    t0, i, lag = now(), 0, 0.0
    while i < total:
        due = min(total, int((now() - t0) * rate) + 1)
        while i < due:
            sched = t0 + i / rate
            lag = max(lag, now() - sched)
            task = asyncio.create_task(one(i, sched))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
        await asyncio.sleep(max(0.0, t0 + i / rate - now()))
    return t0, lag


def open_loop(path: Path, rate: float, dur: float) -> dict[str, Any]:
    """Schedule ``rate * dur`` appends at fixed intervals, each in its own task."""
    total = int(rate * dur)
    batches: list[tuple[int, float]] = []
    log = open_log(path, batches)

    async def run() -> dict[str, Any]:
        from_call: list[float] = []
        from_sched: list[float] = []
        done_at: list[float] = []
        tasks: set[asyncio.Task[None]] = set()
        errors = 0

        async def one(i: int, sched: float) -> None:
            nonlocal errors
            t_call = now()
            try:
                await log.append(entry(i))
            except Exception:
                errors += 1
                return
            end = now()
            from_call.append(end - t_call)
            from_sched.append(end - sched)
            done_at.append(end)

        for i in range(200):  # warm-up
            await asyncio.wait_for(log.append(entry(10**9 + i)), STALL)
        batches.clear()
        t0, max_lag = await schedule(rate, total, one, tasks)
        sent = now() - t0
        if tasks:
            _, still = await asyncio.wait(set(tasks), timeout=max(30.0, 4 * dur))
            for task in still:
                task.cancel()
        from_call.sort()
        from_sched.sort()
        return {
            "offered": rate,
            "total": total,
            "completed": len(done_at),
            "errors": errors,
            "achieved": len(done_at) / (max(done_at) - t0) if done_at else 0.0,
            "sent_s": sent,
            "max_send_lag_ms": max_lag * 1e3,
            "p50_ms": pct(from_sched, 0.5) * 1e3,
            "p99_ms": pct(from_sched, 0.99) * 1e3,
            "max_ms": (from_sched[-1] if from_sched else math.nan) * 1e3,
            "call_p50_ms": pct(from_call, 0.5) * 1e3,
            "call_p99_ms": pct(from_call, 0.99) * 1e3,
        }

    try:
        r = asyncio.run(run())
    finally:
        log.close()
    r["avg_batch"] = sum(b[0] for b in batches) / len(batches) if batches else math.nan
    return r


def bench_latency(cfg: Config, tmp: Path, res: Results) -> None:
    m = res.metrics
    dur = cfg.latency_seconds
    t = Table("2. Integration latency (append call -> receipt), open loop at a fixed offered rate")
    for k, rate in enumerate((OFFERED_RATE, *cfg.extra_rates)):
        progress(f"latency: telegate, {rate:,.0f}/s offered for {dur:g}s")
        r = open_loop(tmp / f"latency-{k}.db", rate, dur)
        m[f"latency_{rate:.0f}"] = r
        s = "telegate Log" if k == 0 else "telegate Log (info)"
        key = "" if k == 0 else f"@{rate:,.0f}/s"
        at = f" @{rate:,.0f}/s"
        t.add(s, "offered rate", rate, "/s")
        t.add(s, "achieved rate (completed / span)", r["achieved"], "/s")
        t.add(s, "p50 from scheduled time" + at, r["p50_ms"], "ms", key="p50" + key, base=True)
        t.add(s, "p99 from scheduled time" + at, r["p99_ms"], "ms", key="p99" + key, base=True)
        t.add(s, "max from scheduled time" + at, r["max_ms"], "ms")
        t.add(s, "p50 from the append call" + at, r["call_p50_ms"], "ms", key="p50" + key)
        t.add(s, "p99 from the append call" + at, r["call_p99_ms"], "ms", key="p99" + key)
        t.add(s, "avg entries per group commit" + at, r["avg_batch"], "")
        t.notes.append(
            f"@{rate:,.0f}/s: completed {r['completed']:,}/{r['total']:,}, errors {r['errors']}, "
            f"all sent after {r['sent_s']:.2f}s, worst send lag {r['max_send_lag_ms']:.1f} ms."
        )
        if k == 0:
            m.update(
                lat_achieved=r["achieved"],
                lat_p50_ms=r["p50_ms"],
                lat_p99_ms=r["p99_ms"],
            )
    if "raw_commit_p50_ms" in m:
        raw = "raw limit (1-row durable commit)"
        t.add(raw, "p50 commit latency", m["raw_commit_p50_ms"], "ms", key="p50")
        t.add(raw, "p99 commit latency", m["raw_commit_p99_ms"], "ms", key="p99")
    t.notes += [
        f"appends scheduled at fixed intervals for {dur:g}s, each in its own asyncio task "
        "(await log.append), never waiting for earlier ones; latency from the scheduled time "
        "includes event-loop lag (no coordinated omission). The target uses it.",
        "pymerkle is not run here: it sustains far below 5,000 appends/s (section 1), so "
        "its open-loop latency would only measure queue growth.",
    ]
    res.emit(t)


# -- sections 3 and 4: proofs and offline verification at N entries ----------------------
def fill_log(log: Log, n: int, budget: float) -> tuple[int, float]:
    """Append entries 0..n-1 through Log.submit in chunks of 10,000 futures."""
    t0 = now()
    last = t0
    done = log.size
    while done < n:
        hi = min(n, done + 10_000)
        _, stuck = cf.wait([log.submit(e) for e in entries(done, hi)], timeout=STALL)
        if stuck:
            raise RuntimeError(f"{len(stuck):,} appends not committed after {STALL:g}s")
        done = hi
        if now() - last > 10:
            last = now()
            rate = done / (last - t0)
            progress(f"  filled {done:,}/{n:,} ({rate:,.0f}/s)")
        if now() - t0 > budget and done < n:
            progress(f"  fill budget of {budget:g}s exhausted at {done:,} entries")
            break
    return done, now() - t0


def fill_pymerkle(tree: Any, n: int, budget: float) -> tuple[int, float]:
    """Bulk-load with append_entries (pymerkle's fastest path) in 100,000-entry calls."""
    t0 = now()
    done = 0
    while done < n:
        hi = min(n, done + 100_000)
        tree.append_entries(entries(done, hi))
        done = hi
        if now() - t0 > budget and done < n:
            progress(f"  pymerkle load budget of {budget:g}s exhausted at {done:,} entries")
            break
    return done, now() - t0


def sample(
    fn: Callable[[int], Any],
    args: Sequence[int],
    budget: float,
    control: Callable[[], Any] | None = None,
) -> tuple[list[float], list[float]]:
    """Sorted latencies of ``fn(a)`` for each a (until ``budget`` seconds have passed).

    With ``control``, a fixed CPU-only workload is timed right after each call: its tail
    shows how much of the measured tail is the machine (preemption by other processes).
    """
    out: list[float] = []
    ctl: list[float] = []
    stop = now() + budget
    for a in args:
        t0 = now()
        fn(a)
        t1 = now()
        out.append(t1 - t0)
        if control is not None:
            control()
            ctl.append(now() - t1)
        if now() > stop:
            break
    out.sort()
    ctl.sort()
    return out, ctl


def make_control(target: float) -> Callable[[], None]:
    """A pure-CPU function (SHA-256 of 64 bytes, repeated) taking about ``target`` seconds."""
    sha = hashlib.sha256
    block = b"\x01" * 65

    def work(reps: int) -> None:
        for _ in range(reps):
            sha(block).digest()

    t0 = now()
    work(2000)
    per = (now() - t0) / 2000
    reps = max(1, round(target / per))
    runs = []
    for _ in range(50):
        t0 = now()
        work(reps)
        runs.append(now() - t0)
    reps = max(1, round(reps * target / statistics.median(runs)))
    return lambda: work(reps)


def bench_proofs_verify(
    cfg: Config, tmp: Path, res: Results, *, proofs: bool, verify: bool
) -> None:
    from ledger.checkpoint import open_checkpoint
    from ledger.merkle import tree_hash, verify_consistency, verify_inclusion

    m = res.metrics
    n_want = cfg.entries
    progress(f"proofs: filling telegate with {n_want:,} entries (Log.submit, 10k chunks)")
    log = open_log(tmp / "proofs.db")

    # Budgets shrink if earlier sections ran long, so the whole run stays under the limit.
    def left() -> float:
        return cfg.hard_limit - (now() - _T0)

    n, fill_s = fill_log(
        log, n_want, max(30.0, min(cfg.fill_budget, left() - 0.35 * cfg.hard_limit))
    )
    m.update(proof_n=n, telegate_fill_s=fill_s, telegate_fill_aps=n / fill_s)
    cp = open_checkpoint(log.checkpoint(), log.verifier).checkpoint
    assert cp.size == n, (cp.size, n)
    rng = random.Random(1234)
    k = cfg.proof_samples
    idx = [rng.randrange(n) for _ in range(k)]
    olds = [rng.randrange(1, n + 1) for _ in range(k)]

    if proofs:
        t = Table(f"3. Proof latency at N = {n:,} entries (random index / old size, size = N)")
        # Sanity: the measured proofs verify against the signed root.
        verify_inclusion(
            idx[0],
            n,
            hashlib.sha256(b"\x00" + entry(idx[0])).digest(),
            log.inclusion_proof(idx[0], n),
            cp.root,
        )
        old_root = tree_hash(olds[0], log.store.read_nodes)
        verify_consistency(olds[0], n, old_root, cp.root, log.consistency_proof(olds[0], n))

        progress(f"proofs: telegate, {k:,} inclusion + {k:,} consistency proofs")
        proof_b = max(3.0, min(cfg.proof_budget, (left() - 0.25 * cfg.hard_limit) / 4))
        warm, _ = sample(lambda i: log.inclusion_proof(i, n), idx[:200], proof_b)
        control = make_control(pct(warm, 0.5))
        tin, ctl = sample(lambda i: log.inclusion_proof(i, n), idx, proof_b, control)
        tco, _ = sample(lambda o: log.consistency_proof(o, n), olds, proof_b)

        progress(f"proofs: loading pymerkle with {n:,} entries (append_entries, bulk)")
        tree, pm_dur = open_pymerkle(tmp / "proofs-pm.db")
        pm_b = max(20.0, min(cfg.pymerkle_budget, left() - 0.2 * cfg.hard_limit))
        pn, pload = fill_pymerkle(tree, n, pm_b)
        t0 = now()
        pm_root = tree.get_root(pn)
        pm_first = now() - t0
        roots_match = pn == n and pm_root == cp.root
        pidx = [i for i in idx if i < pn] if pn < n else idx
        polds = [o for o in olds if o <= pn] if pn < n else olds
        progress(f"proofs: pymerkle at {pn:,}, {len(pidx):,} inclusion + consistency proofs")
        t0 = now()
        tree.prove_inclusion(pidx[0] + 1, pn)
        pm_cold = now() - t0
        proof_b = max(3.0, min(cfg.proof_budget, (left() - 0.1 * cfg.hard_limit) / 2))
        pin, _ = sample(lambda i: tree.prove_inclusion(i + 1, pn), pidx, proof_b)
        pco, _ = sample(lambda o: tree.prove_consistency(o, pn), polds, proof_b)
        cache = tree.get_cache_info()
        tree.close()

        m.update(
            incl_p50_ms=pct(tin, 0.5) * 1e3,
            incl_p99_ms=pct(tin, 0.99) * 1e3,
            cons_p50_ms=pct(tco, 0.5) * 1e3,
            cons_p99_ms=pct(tco, 0.99) * 1e3,
            pm_n=pn,
            pm_load_s=pload,
            pm_incl_p50_ms=pct(pin, 0.5) * 1e3,
            pm_incl_p99_ms=pct(pin, 0.99) * 1e3,
            pm_cons_p50_ms=pct(pco, 0.5) * 1e3,
            pm_cons_p99_ms=pct(pco, 0.99) * 1e3,
            pm_first_root_s=pm_first,
            pm_cold_proof_ms=pm_cold * 1e3,
            control_p50_ms=pct(ctl, 0.5) * 1e3,
            control_p99_ms=pct(ctl, 0.99) * 1e3,
        )
        pm = "pymerkle SqliteTree" + ("" if pn == n else f" (N={pn:,})")
        for name, tele, other in (("inclusion", tin, pin), ("consistency", tco, pco)):
            for q, label in ((0.5, "p50"), (0.99, "p99")):
                key = f"{name}{label}"
                t.add(
                    "telegate Log",
                    f"{name} proof {label}",
                    pct(tele, q) * 1e3,
                    "ms",
                    key=key,
                    base=True,
                )
                t.add(pm, f"{name} proof {label}", pct(other, q) * 1e3, "ms", key=key)
                if name == "inclusion":
                    t.add(
                        "CPU-only control (no I/O)",
                        f"same-p50 fixed work {label}",
                        pct(ctl, q) * 1e3,
                        "ms",
                        key=key,
                        note="(timed after each proof: machine noise)" if q > 0.5 else "",
                    )
        t.add(
            "telegate Log",
            "load N (durable group commits via submit)",
            fill_s,
            "s",
            key="load",
            base=True,
        )
        t.add(pm, "load N (append_entries, 100k per transaction)", pload, "s", key="load")
        t.add(pm, "first get_root after load (cold cache)", pm_first, "s")
        t.add(pm, "first inclusion proof (after get_root)", pm_cold * 1e3, "ms")
        t.notes += [
            f"samples: telegate {len(tin):,}/{len(tco):,}, pymerkle {len(pin):,}/{len(pco):,} "
            f"(same seeded random indices; capped at {proof_b:.0f}s per series).",
            "telegate: log.inclusion_proof(i, N) / log.consistency_proof(old, N), stored "
            "subtree hashes read from SQLite (page cache warm).",
            f"pymerkle: prove_inclusion(i+1, N) / prove_consistency(old, N), durability "
            f"{pm_dur}, default subroot LRU cache (threshold 128, 1 GiB; final size "
            f"{cache.size / 2**20:.1f} MiB, hits {cache.hits:,}, misses {cache.misses:,}); "
            "its proofs rehash subtrees below 128 leaves on every call and every cache miss.",
            f"roots of the two trees over the same N entries match: {roots_match}",
        ]
        if n < n_want:
            t.notes.append(
                f"telegate was filled to only {n:,} of {n_want:,} entries (time budget)."
            )
        if pn < n:
            t.notes.append(f"pymerkle loaded only {pn:,} of {n:,} entries within {pm_b:.0f}s.")
        res.emit(t)

    if verify:
        bench_verify(cfg, tmp, res, log, n)
    log.close()


def bench_verify(cfg: Config, tmp: Path, res: Results, log: Log, n: int) -> None:
    m = res.metrics
    t = Table(f"4. Offline verification of N = {n:,} entries")
    try:
        from ledger.export import export_log
        from ledger.verify import DirSource, verify_log
    except ImportError as e:
        t.add("telegate ledger.verify", "verify_log", None, "s")
        t.notes.append(f"SKIPPED: {e} (ledger.export / ledger.verify not available yet)")
        m["verify_s"] = None
        res.emit(t)
        return

    out = tmp / "export"
    progress(f"verify: exporting {n:,} entries as tlog-tiles to {out}")
    t0 = now()
    export_log(log.store, out)
    export_s = now() - t0
    cpus = os.cpu_count() or 1
    # Close the log (its writer thread) first: a single-threaded verifier, like the CLI,
    # can fork its workers instead of spawning fresh interpreters.
    log.close()
    progress("verify: verify_log(DirSource), 1 process")
    t0 = now()
    cp = verify_log(DirSource(out), log.verifier, workers=1)
    verify1_s = now() - t0
    assert cp.size == n, (cp.size, n)
    # What `telegate verify` does by default: one worker process per CPU.
    progress(f"verify: verify_log(DirSource), {cpus} worker processes")
    t0 = now()
    cp = verify_log(DirSource(out), log.verifier, workers=cpus)
    verify_s = now() - t0
    assert cp.size == n, (cp.size, n)
    progress("verify: the CLI, `python -m ledger verify --quiet` (wall time, with start-up)")
    t0 = now()
    subprocess.run(
        [sys.executable, "-m", "ledger", "verify", "--quiet", "--vkey", log.signer.vkey, str(out)],
        check=True,
        capture_output=True,
    )
    cli_s = now() - t0
    files = sum(1 for _ in out.rglob("*") if _.is_file())
    nbytes = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())

    progress(f"verify: raw limit, hashing {n:,} leaves + {n - 1:,} interior nodes")
    data = list(entries(0, n))
    sha = hashlib.sha256
    t0 = now()
    level = [sha(b"\x00" + e).digest() for e in data]
    while len(level) > 1:
        nxt = [sha(b"\x01" + a + b).digest() for a, b in zip(level[::2], level[1::2])]  # noqa: B905
        if len(level) % 2:
            nxt.append(level[-1])  # RFC 6962: an unpaired right node moves up unchanged
        level = nxt
    raw_s = now() - t0
    del data
    raw_root_ok = level[0] == cp.root

    m.update(
        verify_n=n,
        verify_s=verify_s,
        verify1_s=verify1_s,
        verify_cli_s=cli_s,
        export_s=export_s,
        raw_hash_s=raw_s,
    )
    t.add(
        "telegate ledger.verify",
        f"verify_log, {cpus} workers (CLI default)",
        verify_s,
        "s",
        key="v",
        base=True,
    )
    t.add("telegate ledger.verify", "  entries verified per second", n / verify_s, "/s")
    t.add("telegate ledger.verify", "verify_log, 1 process", verify1_s, "s", key="v")
    t.add("telegate verify CLI", "python -m ledger verify, wall", cli_s, "s", key="v")
    t.add("raw limit (hashlib loop)", "hash N leaves + N-1 nodes", raw_s, "s", key="v")
    t.add("telegate ledger.export", "export_log time (not part of target)", export_s, "s")
    t.notes += [
        f"export: {files:,} files, {nbytes / 2**20:.1f} MiB; verified from the page cache "
        "right after the export (reads + signature + every hash tile + every entry).",
        f"raw limit: in-memory entries, no I/O, no parsing; its root equals the signed root: "
        f"{raw_root_ok}.",
    ]
    res.emit(t)


# -- section 5: the ledger on PostgreSQL, several writer processes ------------------------
def bench_postgres(cfg: Config, tmp: Path, res: Results) -> None:
    from bench.ledger_pg import fresh_schema, run_raw, run_writers

    m, dur, url = res.metrics, cfg.seconds, cfg.database_url
    runs: dict[str, list[dict[str, Any]]] = {}
    seq = itertools.count(5 * 10**9)
    for r in range(cfg.rounds):
        rnd = f"round {r + 1}/{cfg.rounds}: " if cfg.rounds > 1 else ""
        for n in (1, 2, 3):
            progress(f"postgres: {rnd}{n} writer process(es), 1000 appenders, {dur:g}s")
            with fresh_schema(url) as u:
                runs.setdefault(f"pg{n}", []).append(run_writers("closed", u, n, 1000, dur))
        progress(f"postgres: {rnd}SQLite in the same run, 1000 appenders, {dur:g}s")
        tg = run_telegate(tmp / f"pg-sqlite-{r}.db", 1000, dur, seq)
        runs.setdefault("sqlite", []).append(tg)
        progress(f"postgres: {rnd}raw psycopg COPY, batch=1000, {cfg.raw_seconds:g}s")
        with fresh_schema(url) as u:
            runs.setdefault("raw", []).append(run_raw(u, 1000, cfg.raw_seconds))
    lat: dict[int, dict[str, Any]] = {}
    for n in (2, 1):
        progress(f"postgres: latency, {n} writer(s), {OFFERED_RATE:,.0f}/s offered in total")
        with fresh_schema(url) as u:
            lat[n] = run_writers("open", u, n, OFFERED_RATE, cfg.latency_seconds)
    progress(f"postgres: latency, SQLite in the same run, {OFFERED_RATE:,.0f}/s offered")
    sqlite_lat = open_loop(tmp / "pg-sqlite-latency.db", OFFERED_RATE, cfg.latency_seconds)

    def med(name: str, key: str) -> float:
        return statistics.median(float(x[key]) for x in runs[name])

    t = Table("5. The ledger on PostgreSQL: durable appends/s, 1000 appenders in total")
    for n in (1, 2, 3):
        k = f"pg{n}"
        m[f"pg_aps_{n}"] = aps = med(k, "aps")
        t.add(
            f"telegate PGStore, {n} process{'es' if n > 1 else ''}",
            "appends/s",
            aps,
            "/s",
            key="aps",
            base=n == 2,
            note=f"(server {med(k, 'own_server_cpu_us'):.1f} us/append [all postgres "
            f"{med(k, 'server_cpu_us'):.1f}], writers {med(k, 'client_cpu_us'):.1f} us/append "
            f"of which ledger-writer threads {med(k, 'writer_thread_cpu_us'):.1f}; "
            f"avg batch {med(k, 'avg_batch'):.0f}; writer threads in _commit "
            f"{100 * med(k, 'commit_busy') / n:.0f}% of the time)",
        )
        m[f"pg_server_us_{n}"] = med(k, "own_server_cpu_us")
        m[f"pg_writer_us_{n}"] = med(k, "client_cpu_us")
    m["pg_sqlite_aps"] = med("sqlite", "aps")
    t.add(
        "telegate SQLiteStore, 1 process",
        "appends/s",
        m["pg_sqlite_aps"],
        "/s",
        key="aps",
        note=f"(process {med('sqlite', 'cpu_us'):.1f} us/append, SQLite in it)",
    )
    m["pg_raw_aps"] = med("raw", "aps")
    t.add(
        "raw psycopg COPY (batch=1000)",
        "appends/s",
        m["pg_raw_aps"],
        "/s",
        key="aps",
        note=f"(server {med('raw', 'own_server_cpu_us'):.1f} us/append [all postgres "
        f"{med('raw', 'server_cpu_us'):.1f}])",
    )
    for n in (2, 1):
        r = lat[n]
        at = f" @{OFFERED_RATE:,.0f}/s, {n} process{'es' if n > 1 else ''}"
        t.add("telegate PGStore", "p50 from scheduled time" + at, r["p50_ms"], "ms")
        t.add(
            "telegate PGStore",
            "p99 from scheduled time" + at,
            r["p99_ms"],
            "ms",
            note=f"(completed {r['count']:,}; avg batch {r['avg_batch']:.0f}; "
            f"server {r['own_server_cpu_us']:.1f} us/append [all postgres "
            f"{r['server_cpu_us']:.1f}])",
        )
    at = f" @{OFFERED_RATE:,.0f}/s"
    t.add("telegate SQLiteStore", "p50 from scheduled time" + at, sqlite_lat["p50_ms"], "ms")
    t.add(
        "telegate SQLiteStore",
        "p99 from scheduled time" + at,
        sqlite_lat["p99_ms"],
        "ms",
        note=f"(completed {sqlite_lat['completed']:,}; avg batch {sqlite_lat['avg_batch']:.0f})",
    )
    m["pg_lat_p99_ms"], m["pg_lat_p50_ms"] = lat[2]["p99_ms"], lat[2]["p50_ms"]
    t.notes += [
        f"{dur:g}s per closed-loop row after a warm-up; the 1000 appenders are split evenly "
        "over the writer processes, each a Log over a PGStore on one fresh schema; "
        f"median of {cfg.rounds} round(s). Latency: {cfg.latency_seconds:g}s open loop, "
        "the offered rate split over the processes.",
        "server CPU: utime+stime over the row, per append, of the row's own backends (the "
        "writers' connections) plus the server's WAL writer, checkpointer and background "
        "writer (which other clients of the server drive too); [all postgres]: every "
        "postgres process on this machine (other databases' clients included). Writers: "
        "the writer processes' own CPU per append (appenders, event loop and ledger writer "
        "thread), and the ledger-writer threads' part of it (/proc task stat); SQLite: the "
        "whole bench process's CPU per append over the row.",
        "raw: the rows one group commit writes (leaves with SHA-256, as many node rows, a "
        "checkpoint, the tree-state row) by COPY in one transaction per 1000 appends, "
        "synchronous_commit=on; no tree, no signature, no receipts, no asyncio.",
        f"load average at the end of the section: {_load()} (2 CPUs).",
    ]
    res.emit(t)


# -- summary ----------------------------------------------------------------------------------
def summarize(cfg: Config, res: Results) -> None:
    m = res.metrics
    lines: list[dict[str, Any]] = []

    def add(target: str, ok: bool | None, detail: str) -> None:
        lines.append({"target": target, "status": status(ok), "detail": detail})

    v = m.get("telegate_aps_1000")
    if v is not None:
        add(
            ">= 20,000 durable appends/s at 1000 appenders",
            v >= 20_000,
            f"{v:,.0f}/s = {v / 20_000:.2f}x of target"
            + (f", short by {20_000 - v:,.0f}/s" if v < 20_000 else ""),
        )
    p = m.get("pymerkle_aps_1000")
    if v is not None and p:
        r = v / p
        add(
            ">= 5x pymerkle (append_entry, 1000 appenders)",
            r >= 5,
            f"{r:.1f}x ({v:,.0f}/s vs {p:,.0f}/s) = {r / 5:.2f}x of target",
        )
        pb = m.get(f"pymerkle_batch_aps_{MAX_BATCH}")
        if pb:
            add(
                "  (info) vs pymerkle append_entries batch=4096",
                None,
                f"{v / pb:.2f}x ({v:,.0f}/s vs {pb:,.0f}/s; pymerkle gives no proofs/signature)",
            )
    p99 = m.get("lat_p99_ms")
    if p99 is not None:
        ach = m["lat_achieved"]
        add(
            "p99 integration latency < 50 ms at 5,000 appends/s offered",
            p99 < 50,
            f"p99 {p99:.1f} ms = {p99 / 50:.2f}x of limit (p50 {m['lat_p50_ms']:.1f} ms; "
            f"achieved {ach:,.0f}/s)",
        )
    if "incl_p99_ms" in m:
        n = m["proof_n"]
        worst = max(m["incl_p99_ms"], m["cons_p99_ms"])
        at = "" if n >= 1_000_000 else f" [measured at N={n:,}, not 1M]"
        add(
            "inclusion/consistency proofs < 1 ms p99 at 1M",
            worst < 1,
            f"inclusion p99 {m['incl_p99_ms']:.3f} ms, consistency p99 {m['cons_p99_ms']:.3f}"
            f" ms = {worst:.2f}x of limit{at}; CPU-only control p99 "
            f"{m['control_p99_ms']:.3f} ms",
        )
    if "verify_s" in m:
        s = m["verify_s"]
        if s is None:
            add("full verification of 1M entries < 2 s", None, "not measured (module missing)")
        else:
            n = m["verify_n"]
            s1m = s * 1_000_000 / n
            how = "" if n == 1_000_000 else f" [{s:.2f} s at N={n:,}, scaled linearly to 1M]"
            add(
                "full verification of 1M entries < 2 s",
                s1m < 2,
                f"{s1m:.2f} s = {s1m / 2:.2f}x of limit{how}; raw hashlib limit "
                f"{m['raw_hash_s'] * 1_000_000 / n:.2f} s",
            )
    if "pg_aps_2" in m:
        v, raw = m["pg_aps_2"], m["pg_raw_aps"]
        add(
            ">= 20,000 appends/s, 2 PostgreSQL writer processes",
            v >= 20_000,
            f"{v:,.0f}/s = {v / 20_000:.2f}x of target (1: {m['pg_aps_1']:,.0f}/s, "
            f"3: {m['pg_aps_3']:,.0f}/s, SQLite: {m['pg_sqlite_aps']:,.0f}/s)",
        )
        add(
            ">= 50% of raw psycopg, 2 PostgreSQL writer processes",
            v >= 0.5 * raw,
            f"{100 * v / raw:.0f}% ({v:,.0f}/s vs {raw:,.0f}/s)",
        )
        p99 = m["pg_lat_p99_ms"]
        add(
            "p99 < 50 ms at 5,000 appends/s, 2 PostgreSQL writer processes",
            p99 < 50,
            f"p99 {p99:.1f} ms = {p99 / 50:.2f}x of limit (p50 {m['pg_lat_p50_ms']:.1f} ms)",
        )
    print_summary(
        res,
        lines,
        f"(--quick: short runs, N={cfg.entries:,}; run without --quick for the full numbers)"
        if cfg.quick
        else None,
    )


def status(ok: bool | None) -> str:
    """PASS, MISS, or INFO for a row without a target."""
    return "INFO" if ok is None else ("PASS" if ok else "MISS")


def print_summary(res: Results, lines: list[dict[str, Any]], quick_note: str | None) -> None:
    """Keep the summary rows in the results and print them, with any failed sections."""
    res.summary = lines
    print("\n== Summary: targets from the issue ==")
    w = max((len(x["target"]) for x in lines), default=10)
    for x in lines:
        print(f"{x['status']:<5} {x['target']:<{w}}  {x['detail']}")
    for name, err in res.errors.items():
        print(f"ERROR section {name} failed: {err}")
    if quick_note:
        print(quick_note)


# -- driver ------------------------------------------------------------------------------------
@dataclass
class Config:
    quick: bool
    entries: int
    seconds: float
    raw_seconds: float
    rounds: int
    latency_seconds: float
    extra_rates: tuple[float, ...]
    proof_samples: int
    proof_budget: float
    fill_budget: float
    pymerkle_budget: float
    hard_limit: float
    sections: list[str]
    json: str | None
    tmpdir: str | None
    database_url: str = ""


# "postgres" runs only when asked for (it needs a server): --sections ...,postgres
SECTIONS = ("appends", "latency", "proofs", "verify", "postgres")
DEFAULT_SECTIONS = SECTIONS[:4]


def parse_args(argv: Sequence[str] | None = None) -> Config:
    ap = argparse.ArgumentParser(
        prog="python -m bench.ledger", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    ap.add_argument("--quick", action="store_true", help="~1-2 minute run (N=100,000)")
    ap.add_argument(
        "--entries", type=int, help="N for proofs/verify (default 1,000,000; quick 100,000)"
    )
    ap.add_argument(
        "--seconds", type=float, help="per closed-loop throughput row (default 4; quick 1.5)"
    )
    ap.add_argument(
        "--rounds", type=int, help="interleaved rounds of section 1 (default 3; quick 1)"
    )
    ap.add_argument(
        "--latency-seconds", type=float, help="open-loop run length per rate (default 10; quick 4)"
    )
    ap.add_argument(
        "--sections",
        default=",".join(DEFAULT_SECTIONS),
        help=f"comma list of {','.join(SECTIONS)} (default: all but postgres)",
    )
    ap.add_argument(
        "--database-url",
        default=os.environ.get("TELEGATE_TEST_DATABASE_URL")
        or "postgresql://postgres@127.0.0.1:5432/test",
        help="PostgreSQL for the postgres section (a schema per row is created and dropped)",
    )
    ap.add_argument("--json", metavar="FILE", help="also write all results as JSON")
    ap.add_argument(
        "--tmpdir", help="where to create the temporary databases (default: system tmp)"
    )
    a = ap.parse_args(argv)
    sections = [s.strip() for s in a.sections.split(",") if s.strip()]
    bad = set(sections) - set(SECTIONS)
    if bad:
        ap.error(f"unknown sections: {', '.join(sorted(bad))}")
    q = a.quick
    return Config(
        quick=q,
        entries=a.entries or (100_000 if q else 1_000_000),
        seconds=a.seconds or (1.5 if q else 4.0),
        raw_seconds=1.0 if q else 3.0,
        rounds=a.rounds or (1 if q else 3),
        latency_seconds=a.latency_seconds or (4.0 if q else 10.0),
        extra_rates=(1000.0,),
        proof_samples=1000 if q else 5000,
        proof_budget=10.0 if q else 60.0,
        fill_budget=90.0 if q else 420.0,
        pymerkle_budget=60.0 if q else 120.0,
        hard_limit=300.0 if q else 870.0,
        sections=sections,
        json=a.json,
        tmpdir=a.tmpdir,
        database_url=a.database_url,
    )


def meta() -> dict[str, Any]:
    import pymerkle

    return {
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "pymerkle": getattr(pymerkle, "__version__", "?"),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def watchdog(cfg: Config, res: Results, tmp: Path) -> None:
    def fire() -> None:
        print(f"\nWATCHDOG: run exceeded {cfg.hard_limit:g}s; stopping.", file=sys.stderr)
        with contextlib.suppress(Exception):
            res.dump(cfg.json, complete=False)
        shutil.rmtree(tmp, ignore_errors=True)
        sys.stdout.flush()
        os._exit(3)

    timer = threading.Timer(cfg.hard_limit, fire)
    timer.daemon = True
    timer.start()


def run_section(res: Results, name: str, fn: Callable[[], None]) -> None:
    """Run one section; a failure is reported and the remaining sections still run."""
    try:
        fn()
    except Exception as e:
        traceback.print_exc()
        why = str(e)
        if not why and isinstance(e, TimeoutError):
            why = "appends stopped completing; is the ledger writer thread stuck or dead?"
        res.errors[name] = f"{type(e).__name__}: {why}"
        print(f"\n== {name}: FAILED ({res.errors[name]}) ==", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_args(argv)
    res = Results(args={k: v for k, v in vars(cfg).items()})
    res.meta = meta()
    mode = "quick" if cfg.quick else "full"
    tmp = Path(tempfile.mkdtemp(prefix="telegate-bench-", dir=cfg.tmpdir))
    print(
        f"telegate ledger benchmark ({mode}): python {res.meta['python']}, sqlite "
        f"{res.meta['sqlite']}, pymerkle {res.meta['pymerkle']}, {res.meta['cpus']} CPUs, "
        f"{res.meta['platform']}, load average {_load()}\ndatabases in {tmp}; "
        f"N = {cfg.entries:,}; "
        "ratio = value / telegate's value for the same metric (rates: <1 is slower than "
        "telegate; latencies and times: >1 is slower)",
        flush=True,
    )
    watchdog(cfg, res, tmp)
    try:
        if "appends" in cfg.sections:
            run_section(res, "appends", lambda: bench_appends(cfg, tmp, res))
        if "latency" in cfg.sections:
            run_section(res, "latency", lambda: bench_latency(cfg, tmp, res))
        want_p, want_v = "proofs" in cfg.sections, "verify" in cfg.sections
        if want_p or want_v:
            run_section(
                res,
                "proofs/verify",
                lambda: bench_proofs_verify(cfg, tmp, res, proofs=want_p, verify=want_v),
            )
        if "postgres" in cfg.sections:
            run_section(res, "postgres", lambda: bench_postgres(cfg, tmp, res))
        summarize(cfg, res)
        res.meta["elapsed_s"] = now() - _T0
        res.meta["loadavg_at_end"] = os.getloadavg()
        print(f"\n(total {res.meta['elapsed_s']:.0f}s; load average at the end {_load()})")
        res.dump(cfg.json, complete=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    progress("done")
    return 1 if res.errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
