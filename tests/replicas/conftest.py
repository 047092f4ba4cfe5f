"""Several real ``telegate serve`` processes (replicas) on one PostgreSQL database.

Each test gets a fresh database (``CREATE DATABASE telegate_rep_<random>`` on the server of
``TELEGATE_TEST_DATABASE_URL``, default ``postgresql://postgres@127.0.0.1:5432/test``),
brought to the schema by ``telegate db upgrade`` and dropped afterwards. The replicas share
that database URL and one data directory: the key dir (log key, attestation signing keys,
secrets) lives in it, and so do the stores that are still SQLite files (WAL lets processes
share them) until they move to the database. Without a server the tests skip locally and
fail in CI (``tests/conftest.py:need``). ``PrivatePostgres`` runs a cluster of its own for
the test that stops and starts the server.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import need
from tests.pgschema import answers

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
ORIGIN = "replicas.example/telegate/log"
#: What every replica calls itself (``public_url``), as replicas behind one load balancer
#: do: tokens name it as ``iss``/``aud`` and DPoP proofs as ``htu``, whichever replica serves.
PUBLIC_URL = "http://gw.replicas.example"
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def with_database(url: str, name: str) -> str:
    """``url`` naming database ``name`` instead (user, host, port and parameters kept)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + name))


def telegate(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> str:
    """Run the ``telegate`` CLI; its stdout. Fails the test on a non-zero exit."""
    r = subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )
    assert r.returncode == 0, f"telegate {' '.join(args)}: {r.stdout}{r.stderr}"
    return r.stdout


@contextlib.contextmanager
def fresh_database(server: str, drop: bool = True) -> Iterator[str]:
    """A new, empty database on ``server``'s PostgreSQL, upgraded as an operator would
    before starting replicas; dropped afterwards unless ``drop`` is False (``WITH (FORCE)``
    ends the sessions a killed replica left behind)."""
    admin = with_database(server, "postgres")
    name = f"telegate_rep_{secrets.token_hex(5)}"
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as c:
        c.execute(f'CREATE DATABASE "{name}"'.encode())
    url = with_database(server, name)
    try:
        telegate("db", "upgrade", "--database-url", url)
        yield url
    finally:
        if drop:
            with psycopg.connect(admin, autocommit=True, connect_timeout=5) as c:
                c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


@pytest.fixture(scope="session")
def pg_server() -> str:
    url = os.environ.get("TELEGATE_TEST_DATABASE_URL") or DEFAULT_URL
    need(
        answers(with_database(url, "postgres")), f"PostgreSQL at {url} (TELEGATE_TEST_DATABASE_URL)"
    )
    return url


@pytest.fixture
def database(pg_server: str) -> Iterator[str]:
    with fresh_database(pg_server) as url:
        yield url


class Replica:
    """One ``telegate serve`` process on a free loopback port; restartable on that port."""

    def __init__(
        self, name: str, data_dir: Path, database_url: str, logs: Path, redis_url: str | None = None
    ) -> None:
        self.name = name
        self.redis_url = redis_url
        self.data_dir = data_dir
        self.database_url = database_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = logs / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        #: Answered /readyz since its last start, and not killed or stopped since.
        self.ready = False

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "TELEGATE_LOG_ORIGIN": ORIGIN,
            "TELEGATE_PUBLIC_URL": PUBLIC_URL,
            "TELEGATE_LOG_LEVEL": "WARNING",
            # Every client of these tests is one loopback address: the request limits
            # (tests/overload) would meter the load, not the replicas.
            "TELEGATE_RATE_EXEMPT_LOOPBACK": "true",
            # Tokens are fetched once per test: let them outlive a slow run on a busy machine.
            "TELEGATE_TOKEN_LIFETIME": "3600",
            # Replicas on one database share a Redis (a second one without it is refused).
            **({"TELEGATE_REDIS_URL": self.redis_url} if self.redis_url else {}),
        }

    def start(self, wait: bool = True) -> None:
        assert self.proc is None or self.proc.poll() is not None
        self.ready = False
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "gateway.cli", "serve"),
                    *("--port", str(self.port), "--data-dir", str(self.data_dir)),
                    *("--database-url", self.database_url),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env=self.env(),
            )
        if wait:
            self.wait_ready()

    def wait_ready(self, limit: float = 60) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as r:
                    if r.status == 200:
                        self.ready = True
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready: {self.log_path.read_text()[-3000:]}")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, at whatever point it is, and reap it."""
        self.ready = False
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)

    def stop(self) -> int | None:
        self.ready = False
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


class Replicas:
    """Replicas sharing one database URL and one data directory (keys, SQLite stores)."""

    def __init__(self, root: Path, database_url: str, redis_url: str | None = None) -> None:
        self.root = root
        self.database_url = database_url
        self.redis_url = redis_url
        self.data_dir = root / "data"
        self.logs = root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.members: list[Replica] = []
        # The operator makes the log key once and gives it to every replica.
        env = {"TELEGATE_LOG_ORIGIN": ORIGIN, "TELEGATE_DATABASE_URL": database_url}
        self.vkey = telegate("keys", "init", "--data-dir", str(self.data_dir), env=env).strip()

    def start(self, n: int) -> list[Replica]:
        """Start ``n`` replicas: on a new data dir the first alone (SQLite stores still in
        the data dir can refuse first starts at once: ``database is locked``), then the
        rest together."""
        new = [
            Replica(
                f"r{len(self.members) + i}",
                self.data_dir,
                self.database_url,
                self.logs,
                self.redis_url,
            )
            for i in range(n)
        ]
        self.members += new
        if not (self.data_dir / "keys" / "signing").exists():
            new[0].start()
            rest = new[1:]
        else:
            rest = new
        for r in rest:
            r.start(wait=False)
        for r in rest:
            r.wait_ready()
        return new

    def cli_env(self) -> dict[str, str]:
        return {"TELEGATE_LOG_ORIGIN": ORIGIN, "TELEGATE_DATABASE_URL": self.database_url}

    def stop(self) -> None:
        for r in self.members:
            r.stop()


@pytest.fixture
def replicas(database: str, tmp_path: Path, session_redis: str) -> Iterator[Replicas]:
    group = Replicas(tmp_path, database, session_redis)
    try:
        yield group
    finally:
        group.stop()


class PrivatePostgres:
    """A PostgreSQL cluster of this test's own, on a free port (Debian's binaries), which
    the test may stop and start: never the shared one. PostgreSQL refuses to run as root:
    as root, it runs as the ``postgres`` user."""

    def __init__(self) -> None:
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        need(bool(bins), "Debian's PostgreSQL server binaries (/usr/lib/postgresql/*/bin)")
        self.bin = bins[-1].parent
        self.port = free_port()
        self.root = os.geteuid() == 0
        # Under /tmp, not tmp_path: the postgres user must reach it.
        self.dir = Path(tempfile.mkdtemp(prefix="telegate-pg-"))
        if self.root:
            shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "cluster"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._as_postgres(self.bin / "initdb", "-A", "trust", "-U", "postgres", "-D", self.data)

    def _as_postgres(self, *argv: object, timeout: float = 60) -> None:
        runas = ["runuser", "-u", "postgres", "--"] if self.root else []
        r = subprocess.run(
            [*runas, *map(str, argv)],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd="/tmp",
        )
        assert r.returncode == 0, f"{argv[0]}: {r.stdout}{r.stderr}"

    def start(self) -> None:
        opts = f"-p {self.port} -h 127.0.0.1 -k {self.dir}"
        log = self.dir / "server.log"
        self._as_postgres(
            self.bin / "pg_ctl", "start", "-w", "-D", self.data, "-l", log, "-o", opts
        )

    def stop(self) -> None:
        self._as_postgres(self.bin / "pg_ctl", "stop", "-w", "-m", "fast", "-D", self.data)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._as_postgres(self.bin / "pg_ctl", "stop", "-w", "-m", "immediate", "-D", self.data)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    pg = PrivatePostgres()
    try:
        pg.start()
        yield pg
    finally:
        pg.close()
