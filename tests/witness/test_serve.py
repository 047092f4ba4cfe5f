"""``telegate witness serve`` as a real process: cosigns, stops cleanly, remembers on restart."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ledger.checkpoint import verify_cosignatures
from ledger.note import Verifier, parse_note

from .conftest import ORIGIN, WITNESS_NAME, History

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveWitness:
    def __init__(self, config: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.out = config.parent / f"witness-{time.monotonic_ns()}.out"
        with self.out.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "witness", "serve", "--config", str(config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"witness did not start: {self.out.read_text()}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1):
                    break
            except OSError:
                time.sleep(0.05)
        # stdout carries one line, the witness's cosignature vkey; stderr says the rest.
        vkeys = [ln for ln in self.out.read_text().splitlines() if ln.startswith(WITNESS_NAME)]
        if len(vkeys) != 1:
            self.stop()
            raise RuntimeError(f"no vkey printed: {self.out.read_text()}")
        self.vkey = Verifier.from_vkey(vkeys[0])

    def post(self, body: bytes) -> tuple[int, str, bytes]:
        req = urllib.request.Request(self.url + "/add-checkpoint", data=body, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.headers.get_content_type(), r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers.get_content_type(), e.read()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


def test_serve_cosigns_and_survives_restart(tmp_path: Path, history: History) -> None:
    port = free_port()
    config = tmp_path / "witness.toml"
    config.write_text(
        f'name = "{WITNESS_NAME}"\ndata_dir = "data"\nport = {port}\n\n'
        f'[[logs]]\norigin = "{ORIGIN}"\nvkey = "{history.signer.vkey}"\n'
    )
    first = LiveWitness(config, port)
    try:
        status, _, lines = first.post(history.body(0))
        assert status == 200, lines
        note = parse_note(history.checkpoint() + lines)
        assert [c.name for c in verify_cosignatures(note, [first.vkey])] == [WITNESS_NAME]
    finally:
        assert first.stop() == 0
    assert (tmp_path / "data" / "witness.skey").stat().st_mode & 0o777 == 0o600

    second = LiveWitness(config, port)
    try:
        assert second.vkey.vkey == first.vkey.vkey
        assert second.post(history.body(0)) == (409, "text/x.tlog.size", b"10\n")
        history.grow(6)
        status, _, lines = second.post(history.body(10))
        assert status == 200
        note = parse_note(history.checkpoint() + lines)
        assert len(verify_cosignatures(note, [second.vkey])) == 1
    finally:
        assert second.stop() == 0
