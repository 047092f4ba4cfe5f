"""Ledger fixtures: one store factory per backend, so the same tests run on SQLite and on
PostgreSQL (a fresh schema per test, see tests/ledger/pg.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ledger.pgstore import PGStore
from ledger.store import LogStore, SQLiteStore
from tests.ledger.pg import pg_url

__all__ = ["pg_url"]


Opener = Callable[..., LogStore]


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def open_store(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """``open_store(writer=True)``: a new handle on this test's one log, on ``backend``."""
    if backend == "sqlite":
        return lambda writer=True: SQLiteStore(tmp_path / "log.db", writer=writer)
    url = request.getfixturevalue("pg_url")
    return lambda writer=True: PGStore(url, writer=writer)
