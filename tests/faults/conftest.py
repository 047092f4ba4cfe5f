"""Fault injection with real processes: ``telegate serve`` subprocesses on loopback, data
directories on real (sometimes deliberately tiny) file systems, signals and locks from other
processes. The fault model is docs/reliability.md."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from gateway.config import Config
from tests.conftest import IN_CI, ROOT, need

# The in-process gateway's fixtures (SQLite files, or a fresh PostgreSQL schema).
from tests.gateway.conftest import _pg_schemas, config, free_port
from tests.gateway.vitals.world import World

ORIGIN = "faults.example/telegate/log"


def cli(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``telegate ARGS`` (the installed entry point's module) and return its result."""
    env = {**os.environ, "TELEGATE_LOG_ORIGIN": ORIGIN, "PYTHONPATH": str(ROOT)}
    r = subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    if check:
        assert r.returncode == 0, f"telegate {' '.join(args)}: rc={r.returncode}\n{r.stderr}"
    return r


def spawn(*args: str, log: Path, crash: tuple[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``telegate ARGS`` in the background, its output in ``log``; with ``crash`` (a mode
    and target of tests/faults/crashpoint.py), killed there."""
    env = {**os.environ, "TELEGATE_LOG_ORIGIN": ORIGIN, "PYTHONPATH": str(ROOT)}
    # The soak's and the fault tests' whole population is one loopback address: the request
    # limits (tests/overload) would meter the load generator, not the faults.
    env["TELEGATE_RATE_EXEMPT_LOOPBACK"] = "true"
    run = ["gateway.cli"] if crash is None else ["tests.faults.crashpoint", *crash]
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", *run, *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )


class Gateway:
    """``telegate serve`` on a free loopback port over ``data_dir``, which may be restarted
    (same port) or killed with SIGKILL. Its output goes to ``log_dir``, never into the data
    directory, so that a full data file system does not also silence it."""

    def __init__(self, data_dir: Path, log_dir: Path) -> None:
        self.data_dir = data_dir
        self.log_path = log_dir / "gateway.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self, timeout: float = 30, crash: tuple[str, str] | None = None) -> None:
        self.proc = spawn(
            "serve",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            log=self.log_path,
            crash=crash,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited: {self.log_path.read_text()[-4000:]}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(self.url + "/healthz", timeout=1) as r,
            ):
                if r.status == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"gateway not up: {self.log_path.read_text()[-4000:]}")

    def kill(self) -> None:
        """SIGKILL: no cleanup, no final commit, nothing flushed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()
            return -9

    def verify(self) -> None:
        """``telegate verify`` of the live log over HTTP: every tile, entry and checkpoint."""
        verify(self.url + "/ledger/")


def verify(source: str | Path) -> None:
    """What ``telegate verify SOURCE`` runs (in this process: a CLI start costs seconds on a
    loaded machine); fails the test unless the whole log verifies."""
    from ledger.cli import main

    assert main(["verify", str(source), "--quiet", "--workers", "1"]) == 0, source


class Remote:
    """What tests/gateway/idclient.py's helpers use of aiohttp's TestClient, over a real
    socket to a gateway in another process."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session, self.base = session, base

    def make_url(self, path: str) -> URL:
        return URL(self.base + path)

    async def request(self, method: str, path: str, **kw: Any) -> aiohttp.ClientResponse:
        return await self.session.request(method, self.base + path, **kw)

    async def get(self, path: str, **kw: Any) -> aiohttp.ClientResponse:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, **kw: Any) -> aiohttp.ClientResponse:
        return await self.request("POST", path, **kw)


@contextlib.asynccontextmanager
async def remote(gw: Gateway, seconds: float = 30) -> AsyncIterator[Remote]:
    t = aiohttp.ClientTimeout(total=seconds)
    # No keep-alive: a gateway killed and restarted must not meet a stale pooled socket.
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(timeout=t, connector=connector) as s:
        yield Remote(s, gw.url)


async def world(r: Remote, gw: Gateway) -> World:
    """An admin, a provider, two patients with a device each, all enrolled over HTTP."""
    return await World(r).setup(Config(data_dir=gw.data_dir, log_origin=ORIGIN))  # type: ignore[arg-type]


@contextlib.contextmanager
def tmpfs(where: Path, size_mb: int) -> Iterator[Path]:
    """A fresh size-limited tmpfs at ``where``, unmounted (lazily if busy) on exit.
    Skipped where mounting is not permitted, except in CI (which runs as root)."""
    where.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    need(r.returncode == 0, f"mounting a tmpfs (root or CAP_SYS_ADMIN): {r.stderr.strip()}")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True, check=False).returncode:
            subprocess.run(["umount", "-l", str(where)], check=False)


def fill(path: Path, chunk: int = 64 * 1024) -> int:
    """Append zeros to ``path`` until the file system says ENOSPC; the bytes written.
    Ends with single-page writes, so that what is left is less than a page."""
    n = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (chunk, 4096, 512):
            block = b"\0" * size
            while True:
                try:
                    n += os.write(fd, block)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return n


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    gw = Gateway(tmp_path / "data", tmp_path)
    try:
        yield gw
    finally:
        gw.stop()


__all__ = [
    "IN_CI",
    "ORIGIN",
    "Gateway",
    "Remote",
    "_pg_schemas",
    "cli",
    "config",
    "fill",
    "remote",
    "spawn",
    "tmpfs",
    "verify",
]
