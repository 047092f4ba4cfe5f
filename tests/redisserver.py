"""A private ``redis-server`` on a free loopback port, started and killed by the tests that
use it (never the machine's shared one): per test where a test stops or breaks it
(tests/shared, tests/shared_fanout), per session for tests that need several replicas to
share one (gateway replicas on one database refuse to run without Redis)."""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import need

__all__ = ["RedisServer", "running"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pings(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server process of this test: no persistence, on its own port."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (again, on the same port) and wait until it answers PING."""
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        self.proc = subprocess.Popen(
            args, cwd=self.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while not _pings(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL, as a crash: no goodbye to the clients."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None


@contextlib.contextmanager
def running(workdir: Path) -> Iterator[RedisServer]:
    """A private redis-server in ``workdir``, killed on exit. A missing redis-server is a
    skip locally, a failure in CI."""
    binary = shutil.which("redis-server")
    need(binary is not None, "redis-server (apt install redis-server)")
    assert binary is not None
    workdir.mkdir(parents=True, exist_ok=True)
    server = RedisServer(binary, workdir)
    server.start()
    try:
        yield server
    finally:
        server.kill()
