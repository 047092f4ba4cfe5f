"""The soak's memory tracing (gateway/limits/memtrace.py): off unless asked for; when on,
``telegate serve`` writes a baseline on the first SIGUSR2 and the growth since it on the
next, naming source lines and types only."""

from __future__ import annotations

import signal
import time
import tracemalloc
from pathlib import Path

import pytest

from gateway.limits.memtrace import DIR_ENV, ENV, FRAMES_ENV, MemTrace, from_env
from tests.faults.conftest import Gateway


class _Blob:
    def __init__(self) -> None:
        self.data = bytearray(1024)


def test_off_unless_set_to_1(tmp_path: Path) -> None:
    assert from_env({}, tmp_path) is None
    assert from_env({ENV: "0"}, tmp_path) is None
    assert from_env({ENV: "yes"}, tmp_path) is None
    on = from_env({ENV: "1"}, tmp_path)
    assert on is not None and on.out == tmp_path / "tracemalloc"
    assert on.frames == 1
    there = from_env({ENV: "1", DIR_ENV: str(tmp_path / "x"), FRAMES_ENV: "8"}, tmp_path)
    assert there is not None and there.out == tmp_path / "x" and there.frames == 8


def test_the_growth_report_names_what_grew(tmp_path: Path) -> None:
    was = tracemalloc.is_tracing()
    trace = MemTrace(tmp_path / "out", frames=4)
    trace.start()
    try:
        base = trace.report()
        held = [_Blob() for _ in range(2000)]  # 2 MiB, kept until the report
        grown = trace.report()
        assert len(held) == 2000
    finally:
        if not was:
            tracemalloc.stop()
    assert "baseline" in base.read_text()
    assert "# SQLite's heap " in base.read_text()  # C memory tracemalloc does not see
    text = grown.read_text()
    assert base.stat().st_mode & 0o077 == 0  # the operator's only
    top = text.split("# by traceback")[0]
    assert "growth since the baseline" in top and "test_memtrace.py" in top
    assert "test_memtrace._Blob (now 2,000)" in text.split("# live objects by type")[1]


@pytest.mark.slow  # a traced gateway starts slowly: every import's allocations are traced
def test_telegate_serve_writes_reports_on_sigusr2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, "1")
    monkeypatch.setenv(DIR_ENV, str(tmp_path / "reports"))
    gw = Gateway(tmp_path / "data", tmp_path)
    try:
        assert gw.proc is not None
        for n in (1, 2):
            gw.proc.send_signal(signal.SIGUSR2)
            path = tmp_path / "reports" / f"tracemalloc-{n}.txt"
            deadline = time.monotonic() + 60
            while not (path.exists() and path.read_text().endswith("\n")):
                assert time.monotonic() < deadline, gw.log_path.read_text()[-2000:]
                time.sleep(0.05)
        assert "growth since the baseline" in path.read_text()
        assert gw.proc.poll() is None  # the signal reported, and killed nothing
    finally:
        assert gw.stop() == 0
