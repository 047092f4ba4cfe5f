"""Logs to witness, request bodies written from the C2SP text, and a witness on tmp_path.

A :class:`History` keeps a log's leaves in memory and signs checkpoints with the log key, so
a test can fork a log (two histories, one key) or roll it back (sign an older size again).
"""

from __future__ import annotations

import base64
import contextlib
import os
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.db import Database
from gateway.witness.app import create_app
from gateway.witness.config import LogConfig, WitnessConfig
from ledger.checkpoint import Checkpoint
from ledger.merkle import consistency_proof, leaf_hash, root_of
from ledger.note import Signer, format_note
from tests.conftest import need
from tests.pgschema import answers, fresh_schema

ORIGIN = "hospital-a.example/telegate/log"
OTHER_ORIGIN = "clinic-b.example/telegate/log"
WITNESS_NAME = "witness.example/w1"
T0 = 1_760_000_000


class History:
    """One history of a log: its leaves, and checkpoints signed by ``signer``."""

    def __init__(self, signer: Signer, leaves: Sequence[bytes] = ()) -> None:
        self.signer = signer
        self.leaves = list(leaves)

    @property
    def origin(self) -> str:
        return self.signer.name

    def grow(self, n: int, tag: str = "a") -> History:
        start = len(self.leaves)
        self.leaves += [f"{tag} entry {i}\n".encode() for i in range(start, start + n)]
        return self

    def fork(self, at: int) -> History:
        """Another history under the same key, sharing the first ``at`` leaves."""
        return History(self.signer, self.leaves[:at])

    def root(self, size: int) -> bytes:
        return root_of([leaf_hash(e) for e in self.leaves[:size]])

    def checkpoint(self, size: int | None = None) -> bytes:
        size = len(self.leaves) if size is None else size
        text = Checkpoint(self.origin, size, self.root(size)).text()
        return format_note(text, [self.signer.sign(text)])

    def proof(self, old: int, new: int | None = None) -> list[bytes]:
        new = len(self.leaves) if new is None else new
        hashes = [leaf_hash(e) for e in self.leaves[:new]]

        def read(nodes: Sequence[tuple[int, int]]) -> list[bytes]:
            return [root_of(hashes[i << lvl : (i + 1) << lvl]) for lvl, i in nodes]

        return consistency_proof(old, new, read)

    def body(self, old: int, new: int | None = None) -> bytes:
        """The add-checkpoint request moving a witness from ``old`` to ``new`` (default: all)."""
        return request_body(old, self.proof(old, new) if old else [], self.checkpoint(new))


def request_body(old: int, proof: Sequence[bytes], note: bytes) -> bytes:
    """tlog-witness: ``old N``, one base64 hash a line, an empty line, the checkpoint."""
    lines = "".join(base64.b64encode(h).decode() + "\n" for h in proof)
    return f"old {old}\n{lines}\n".encode() + note


class Clock:
    """A clock tests move by hand (POSIX seconds)."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def log_signer() -> Signer:
    return Signer.generate(ORIGIN)


@pytest.fixture
def history(log_signer: Signer) -> History:
    return History(log_signer).grow(10)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="session")
def _pg_schemas() -> Iterator[contextlib.ExitStack]:
    """The PostgreSQL schemas the tests made, dropped when the session ends (a witness app
    may outlive the test's own fixtures by a moment; see tests/gateway/conftest.py)."""
    with contextlib.ExitStack() as stack:
        yield stack


@pytest.fixture
def database_url(tmp_path: Path, request: pytest.FixtureRequest) -> str | None:
    """With ``TELEGATE_TEST_DATABASE_URL`` set, a fresh PostgreSQL schema of it, upgraded as
    ``telegate db upgrade`` would; unset, None: the witness's own ``state.db``."""
    base = os.environ.get("TELEGATE_TEST_DATABASE_URL")
    if not base:
        return None
    need(answers(base), f"PostgreSQL at TELEGATE_TEST_DATABASE_URL={base}")
    url: str = request.getfixturevalue("_pg_schemas").enter_context(fresh_schema(base))
    db = Database(tmp_path / "unused", url)
    try:
        db.upgrade()
    finally:
        db.close()
    return url


@pytest.fixture
def config(tmp_path: Path, log_signer: Signer, database_url: str | None) -> WitnessConfig:
    other = Signer.generate(OTHER_ORIGIN)
    return WitnessConfig(
        name=WITNESS_NAME,
        data_dir=tmp_path / "witness",
        logs=(LogConfig(ORIGIN, (log_signer.vkey,)), LogConfig(OTHER_ORIGIN, (other.vkey,))),
        database_url=database_url,
    )


MakeClient = Callable[[WitnessConfig], Awaitable[TestClient[Any, Any]]]


@pytest.fixture
def make_client(aiohttp_client: Any, clock: Clock) -> MakeClient:
    """Start a witness app on a config (again after a restart: same files, new process state)."""

    async def make(cfg: WitnessConfig) -> TestClient[Any, Any]:
        c: TestClient[Any, Any] = await aiohttp_client(create_app(cfg, clock=clock))
        return c

    return make


@pytest.fixture
async def client(make_client: MakeClient, config: WitnessConfig) -> TestClient[Any, Any]:
    return await make_client(config)
