"""Shared fixtures. ``VECTORS`` is tests/vectors: third-party test data kept in the
repository (sources and licences in its README), so a fresh clone runs every test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VECTORS = ROOT / "tests" / "vectors"
IN_CI = os.environ.get("CI") == "true"


def need(condition: bool, why: str) -> None:
    """Skip when a real component is missing locally; fail in CI, where it must run."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI: {why}")
    pytest.skip(why)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # In CI a skipped test is a test that did not run: make the run fail, loudly.
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if IN_CI and reporter is not None and reporter.stats.get("skipped"):
        reporter.write_line("CI=true: skipped tests are not allowed", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def session_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a private redis-server for the whole session: replicas sharing one
    PostgreSQL database must share a Redis too (docs/redis.md), and none of these tests
    stops it."""
    from tests.redisserver import running

    with running(tmp_path_factory.mktemp("redis")) as server:
        yield server.url
