"""Where the gateway's memory goes, for a soak that finds it growing (bench/soak.py
``--tracemalloc``). Debug only and off unless ``TELEGATE_TRACEMALLOC=1`` is set for
``telegate serve``: then Python's tracemalloc runs from the start (it slows allocation and
costs memory of its own), and each SIGUSR2 writes a report to
``TELEGATE_TRACEMALLOC_DIR`` (default ``<data dir>/tracemalloc``): the first a baseline,
each later one what grew since that baseline, by source line and by traceback, and the
counts of live objects by type. The reports name source lines and types, never values."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import tracemalloc
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from aiohttp import web

__all__ = ["DIR_ENV", "ENV", "FRAMES_ENV", "MemTrace", "from_env", "setup"]

ENV = "TELEGATE_TRACEMALLOC"
DIR_ENV = "TELEGATE_TRACEMALLOC_DIR"
#: Frames kept per allocation (default 1: the allocating line, at the least cost; more
#: group the growth by traceback too, and slow the gateway several times over).
FRAMES_ENV = "TELEGATE_TRACEMALLOC_FRAMES"
log = logging.getLogger("telegate.memtrace")

#: What tracemalloc counts of its own and of imports: noise in a diff.
_NOISE = (
    tracemalloc.Filter(False, tracemalloc.__file__),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
    tracemalloc.Filter(False, "<unknown>"),
)


def _sqlite_heap() -> tuple[int, int] | None:
    """SQLite's own heap (its page caches, statements, schemas: malloc'd in C, so not seen
    by tracemalloc) in bytes, now and at its highest, from the library the ``sqlite3``
    module uses; None where it cannot be asked."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("sqlite3")
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name)
        lib.sqlite3_memory_used.restype = ctypes.c_int64
        lib.sqlite3_memory_highwater.restype = ctypes.c_int64
        lib.sqlite3_memory_highwater.argtypes = [ctypes.c_int]
        return int(lib.sqlite3_memory_used()), int(lib.sqlite3_memory_highwater(0))
    except (OSError, AttributeError):
        return None


def _rss_anon() -> int | None:
    """This process's anonymous resident memory in bytes (Linux), None elsewhere."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _types() -> Counter[str]:
    return Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects())


class MemTrace:
    """Snapshots of one process's heap; :meth:`report` writes the next report file."""

    def __init__(self, out: Path, frames: int = 1, top: int = 40) -> None:
        self.out = out
        self.frames = frames
        self.top = top
        self.base: tracemalloc.Snapshot | None = None
        self.base_types: Counter[str] = Counter()
        self.count = 0

    def start(self) -> None:
        if not tracemalloc.is_tracing():
            tracemalloc.start(self.frames)

    def report(self) -> Path:
        """Take a snapshot and write its report: the baseline the first time, then the
        growth since the baseline. Returns the file written."""
        gc.collect()
        snap = tracemalloc.take_snapshot().filter_traces(_NOISE)
        types = _types()
        self.count += 1
        self.out.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.out / f"tracemalloc-{self.count}.txt"
        traced, peak = tracemalloc.get_traced_memory()
        lines = [f"# report {self.count}: traced {traced / 2**20:.1f} MiB, peak {peak / 2**20:.1f}"]
        sqlite, anon = _sqlite_heap(), _rss_anon()
        if sqlite is not None:
            lines.append(
                f"# SQLite's heap {sqlite[0] / 2**20:.1f} MiB (highest {sqlite[1] / 2**20:.1f})"
            )
        if anon is not None:
            lines.append(f"# anonymous RSS {anon / 2**20:.1f} MiB")
        if self.base is None:
            self.base, self.base_types = snap, types
            lines.append("# baseline: the largest allocations by line")
            lines += [str(s) for s in snap.statistics("lineno")[: self.top]]
        else:
            by_line = snap.compare_to(self.base, "lineno")
            grown = sum(s.size_diff for s in by_line)
            lines.append(f"# growth since the baseline: {grown / 2**10:+,.0f} KiB; by line")
            lines += [str(s) for s in by_line[: self.top]]
            lines.append("# by traceback (the ten that grew most)")
            for s in snap.compare_to(self.base, "traceback")[: 10 if self.frames > 1 else 0]:
                lines.append(f"{s.size_diff / 2**10:+,.1f} KiB, {s.count_diff:+,} blocks:")
                lines += ["    " + f for f in s.traceback.format(limit=self.frames)]
            lines.append("# live objects by type, change since the baseline")
            diff = Counter(types)
            diff.subtract(self.base_types)
            for name, n in sorted(diff.items(), key=lambda kv: -abs(kv[1]))[: self.top]:
                if n:
                    lines.append(f"{n:+,} {name} (now {types[name]:,})")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path


MEMTRACE = web.AppKey("memtrace", MemTrace)


def from_env(env: Mapping[str, str], data_dir: Path) -> MemTrace | None:
    """The MemTrace ``TELEGATE_TRACEMALLOC=1`` asks for; None when it is not set to 1."""
    if env.get(ENV, "") != "1":
        return None
    frames = int(env.get(FRAMES_ENV) or 1)
    return MemTrace(Path(env.get(DIR_ENV) or data_dir / "tracemalloc"), max(1, min(frames, 50)))


def setup(app: web.Application, trace: MemTrace) -> None:
    """Trace ``app``'s process from now on, and write a report on each SIGUSR2."""
    trace.start()
    app[MEMTRACE] = trace
    app.cleanup_ctx.append(_on_signal)
    log.warning(
        "tracemalloc on: SIGUSR2 writes a report", extra={"fields": {"dir": str(trace.out)}}
    )


async def _on_signal(app: web.Application) -> AsyncIterator[None]:
    loop = asyncio.get_running_loop()
    trace = app[MEMTRACE]
    busy = asyncio.Lock()

    async def report() -> None:
        if busy.locked():
            return  # a report is being written: a second signal asks for nothing new
        async with busy:
            path = await asyncio.to_thread(trace.report)
            log.warning("tracemalloc report written", extra={"fields": {"path": str(path)}})

    tasks: set[asyncio.Task[None]] = set()

    def on_signal() -> None:
        task = asyncio.ensure_future(report())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    loop.add_signal_handler(signal.SIGUSR2, on_signal)
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGUSR2)
        for task in list(tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
