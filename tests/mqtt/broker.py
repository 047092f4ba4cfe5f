"""A private ``mosquitto`` on a free loopback port with its own config file, started and
killed by the tests that use it (never the machine's shared one on 1883)."""

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

__all__ = ["Broker", "running"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Broker:
    """One mosquitto process: no persistence, its config (``extra`` lines appended to a
    loopback listener) in ``workdir``."""

    def __init__(self, binary: str, workdir: Path, extra: str = "") -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = _free_port()
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start (again, on the same port) and wait until it listens."""
        lines = [f"listener {self.port} 127.0.0.1", "persistence false", "log_dest stderr"]
        if "allow_anonymous" not in self.extra:
            lines.append("allow_anonymous true")
        # Running as root, mosquitto drops to this user after reading its config.
        lines += ["user root" if _root() else "", self.extra]
        self.conf.write_text("\n".join(lines) + "\n")
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [self.binary, "-c", str(self.conf)], cwd=self.workdir, stdout=out, stderr=out
            )
        deadline = time.monotonic() + 10
        while not _listening(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not gone within 10 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL, as a crash: no goodbye to the clients."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None


def _root() -> bool:
    import os

    return os.geteuid() == 0


@contextlib.contextmanager
def running(workdir: Path, extra: str = "") -> Iterator[Broker]:
    """A private mosquitto in ``workdir``, killed on exit. A missing mosquitto is a skip
    locally, a failure in CI."""
    binary = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    need(binary is not None, "mosquitto (apt install mosquitto)")
    assert binary is not None
    workdir.mkdir(parents=True, exist_ok=True)
    broker = Broker(binary, workdir, extra)
    broker.start()
    try:
        yield broker
    finally:
        broker.kill()
