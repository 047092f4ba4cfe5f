"""The ledger on PostgreSQL: writer processes sharing one log, the raw psycopg limit, and
the server's CPU per append. Section ``postgres`` of ``python -m bench.ledger``.

``BENCH_SWITCH=0.0005`` sets the writer processes' ``sys.setswitchinterval`` (an experiment:
how long the writer thread waits for the GIL after each database round trip).
``BENCH_PROFILE=DIR`` runs cProfile (wall clock) in each writer process's ledger-writer
thread and in its event loop, from the start line to the end of the row, and writes
``DIR/writer-K.pstats`` and ``DIR/loop-K.pstats`` (read them with ``python -m pstats``).

Each telegate row spawns N writer processes (``python -m bench.ledger_pg worker ...``), each
a Log over a PGStore on one fresh schema; they open the log, wait for the same start line,
run for the row's duration and print their counts. Server CPU is the CPU time of every
``postgres`` process on this machine over the row (other users of the server count too).
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import hashlib
import json
import os
import resource
import secrets
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

if not __package__:
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    sys.path.insert(0, os.path.dirname(_here))

import psycopg

from bench.ledger import MAX_BATCH, ORIGIN, STALL, entry, pct, schedule

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
now = time.perf_counter


def server_cpu() -> dict[int, float]:
    """CPU seconds used so far by each process named ``postgres`` (all its backends)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, float] = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        if name == "postgres" or name.startswith("postgres:"):
            fields = stat[stat.rindex(")") + 2 :].split()
            out[int(pid)] = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return out


# The server processes that every commit drives (WAL flushes, dirty buffers) whoever sends it.
_SHARED = (b"walwriter", b"checkpointer", b"background writer")


def shared_pids() -> set[int]:
    out: set[int] = set()
    for pid in server_cpu():
        with contextlib.suppress(OSError):
            if any(n in Path(f"/proc/{pid}/cmdline").read_bytes() for n in _SHARED):
                out.add(pid)
    return out


def cpu_since(before: dict[int, float], pids: Iterable[int] | None = None) -> float:
    """Server CPU seconds since ``before`` of every postgres process, or of ``pids`` only;
    processes that exited meanwhile are not counted (the rows' own backends live through
    them)."""
    now_ = server_cpu()
    keep = now_.keys() if pids is None else set(pids) & now_.keys()
    return sum(now_[pid] - before.get(pid, 0.0) for pid in keep)


def backend_pids(conns: Iterable[psycopg.Connection[Any] | None]) -> list[int]:
    return [c.info.backend_pid for c in conns if c is not None and not c.closed]


@contextmanager
def fresh_schema(base: str) -> Iterator[str]:
    schema = f"bench_{secrets.token_hex(5)}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}".encode())
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options={quote(f'-c search_path={schema}')}"
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE".encode())


# -- the writer process ----------------------------------------------------------------
def _worker(mode: str, url: str, k: int, load: float, dur: float) -> dict[str, Any]:
    from ledger.log import Log
    from ledger.note import Signer
    from ledger.pgstore import PGStore

    if sw := os.environ.get("BENCH_SWITCH"):
        sys.setswitchinterval(float(sw))
    batches: list[tuple[int, float]] = []
    log = Log(
        PGStore(url),
        Signer.from_skey(os.environ["BENCH_SKEY"]),
        max_batch=MAX_BATCH,
        on_commit=lambda n, t: batches.append((n, t)),
    )
    prof_dir = os.environ.get("BENCH_PROFILE")
    profs: dict[str, cProfile.Profile] = {}
    if prof_dir:
        run = log._run

        def profiled_run() -> None:
            profs["writer"] = p = cProfile.Profile()
            p.enable()
            try:
                run()
            finally:
                p.disable()

        log._run = profiled_run  # type: ignore[method-assign]
    log.start()
    base = (k + 1) * 10**9
    assert log._thread is not None
    tid = log._thread.native_id

    def writer_cpu() -> float:
        """CPU seconds of the ledger-writer thread (the rest of the process is the event
        loop running the appenders, and the interpreter's other threads)."""
        fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def profile_loop() -> None:
        # The event loop's profile starts at the start line; the writer's runs from the
        # writer's start (the warm-up is a hundred appends, noise).
        if prof_dir:
            profs["loop"] = p = cProfile.Profile()
            p.enable()

    async def closed(appenders: int) -> dict[str, Any]:
        seq = iter(range(base, base + 10**9))
        await asyncio.gather(*(log.append(entry(next(seq))) for _ in range(100)))  # warm-up
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        batches.clear()
        profile_loop()
        deadline, count = now() + dur, 0

        async def one() -> None:
            nonlocal count
            while now() < deadline:
                await log.append(entry(next(seq)))
                count += 1

        t0, c0, w0 = now(), resource.getrusage(resource.RUSAGE_SELF), writer_cpu()
        await asyncio.wait_for(asyncio.gather(*(one() for _ in range(appenders))), dur + STALL)
        c1, w1 = resource.getrusage(resource.RUSAGE_SELF), writer_cpu()
        cpu = (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)
        return {"count": count, "elapsed": now() - t0, "cpu": cpu, "writer_cpu": w1 - w0}

    async def open_loop(rate: float) -> dict[str, Any]:
        for i in range(200):
            await log.append(entry(base - 1000 + i))
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        batches.clear()
        profile_loop()
        lat: list[float] = []
        tasks: set[asyncio.Task[None]] = set()

        async def one(i: int, sched: float) -> None:
            await log.append(entry(base + i))
            lat.append(now() - sched)

        await schedule(rate, int(rate * dur), one, tasks)
        if tasks:
            await asyncio.wait(set(tasks), timeout=30)
        return {"latencies": lat, "count": len(lat)}

    try:
        out = asyncio.run(closed(int(load)) if mode == "closed" else open_loop(load))
        if "loop" in profs:
            profs["loop"].disable()
            profs["loop"].dump_stats(f"{prof_dir}/loop-{k}.pstats")
        store = log.store
        assert isinstance(store, PGStore)
        out["pids"] = backend_pids([store._wconn, *store._pool._idle.queue])
        out["commits"] = len(batches)
        out["commit_s"] = sum(t for _, t in batches)
        print(json.dumps(out), flush=True)
        sys.stdin.readline()  # keep the connections (and their server CPU) until measured
    finally:
        log.close()
        if "writer" in profs:
            profs["writer"].dump_stats(f"{prof_dir}/writer-{k}.pstats")
    return out


def run_writers(mode: str, url: str, n: int, load: float, dur: float) -> dict[str, Any]:
    """Run ``n`` writer processes on ``url`` together; ``load``: total appenders (closed)
    or total offered appends/s (open), split evenly."""
    from ledger.note import Signer

    env = dict(os.environ, BENCH_SKEY=Signer.generate(ORIGIN).skey)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[1]), env.get("PYTHONPATH", "")])
    share = load / n
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.ledger_pg",
                "worker",
                mode,
                url,
                str(k),
                str(share),
                str(dur),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        for k in range(n)
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            if p.stdout.readline().strip() != b"ready":
                raise RuntimeError(f"a writer process failed to start (exit {p.wait()})")
        s0, shared = server_cpu(), shared_pids()
        for p in procs:
            assert p.stdin is not None
            p.stdin.write(b"go\n")
            p.stdin.flush()
        outs = []
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline()
            if not line:
                raise RuntimeError(f"a writer process failed (exit {p.wait()})")
            outs.append(json.loads(line))
        server = cpu_since(s0)
        own = cpu_since(s0, [pid for o in outs for pid in o["pids"]] + list(shared))
        for p in procs:
            p.communicate(b"exit\n", timeout=STALL)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    count = sum(o["count"] for o in outs)
    r: dict[str, Any] = {
        "count": count,
        "server_cpu_us": 1e6 * server / max(1, count),
        "own_server_cpu_us": 1e6 * own / max(1, count),
    }
    if mode == "closed":
        r["aps"] = sum(o["count"] / o["elapsed"] for o in outs)
        r["client_cpu_us"] = 1e6 * sum(o["cpu"] for o in outs) / max(1, count)
        r["writer_thread_cpu_us"] = 1e6 * sum(o["writer_cpu"] for o in outs) / max(1, count)
        r["avg_batch"] = count / max(1, sum(o["commits"] for o in outs))
        r["commit_busy"] = sum(o["commit_s"] for o in outs) / dur
    else:
        lat = sorted(x for o in outs for x in o["latencies"])
        r.update(p50_ms=pct(lat, 0.5) * 1e3, p99_ms=pct(lat, 0.99) * 1e3)
        r["avg_batch"] = count / max(1, sum(o["commits"] for o in outs))
    return r


def run_raw(url: str, batch: int, dur: float) -> dict[str, Any]:
    """The rows one group commit of ``batch`` writes (leaves with their SHA-256, as many
    node rows, a checkpoint, the tree-state row), by psycopg COPY, one transaction each,
    in as few round trips as the store; no tree, no signature, no lock wait, no asyncio."""
    from ledger.pgstore import PGStore, copy_rows

    PGStore(url).close()  # the same tables, and the same COPY framing as the store
    sha = hashlib.sha256
    n, busy = 0, 0.0
    s0, shared = server_cpu(), shared_pids()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = on")
        pids = [*backend_pids([conn]), *shared]
        wall = now()
        while now() - wall < dur:
            rows = [entry(n + i) for i in range(batch)]
            t0 = now()
            hashes = [sha(b"\x00" + e).digest() for e in rows]
            inner = [((1 << 48) | i, h) for i, h in enumerate(hashes, n)]
            with conn.cursor() as cur:
                cur.execute("BEGIN")
                with cur.copy(
                    "COPY ledger_nodes (id, hash, data) FROM STDIN (FORMAT BINARY)"
                ) as cp:
                    cp.write(copy_rows(n, hashes, rows, inner))
                with conn.pipeline():
                    cur.execute(
                        "INSERT INTO ledger_checkpoints (size, note) VALUES (%s, %s)",
                        (n + batch, b"x" * 200),
                    )
                    cur.execute("UPDATE ledger_tree SET size = %s WHERE id = 0", (n + batch,))
                    cur.execute("COMMIT")
            busy += now() - t0
            n += batch
        server = cpu_since(s0)  # before the connection (and its backend) closes
        own = cpu_since(s0, pids)
    return {"aps": n / busy, "server_cpu_us": 1e6 * server / n, "own_server_cpu_us": 1e6 * own / n}


def main(argv: list[str]) -> int:
    if argv[:1] == ["worker"]:
        mode, url, k, load, dur = argv[1], argv[2], int(argv[3]), float(argv[4]), float(argv[5])
        _worker(mode, url, k, load, dur)
        return 0
    print("usage: python -m bench.ledger --sections postgres", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))


__all__ = ["DEFAULT_URL", "fresh_schema", "run_raw", "run_writers", "server_cpu"]
