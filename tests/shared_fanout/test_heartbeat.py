"""Starting more than one replica on PostgreSQL without Redis is refused with one line; with
Redis on each, several replicas are fine. Heartbeat rows: written at start, refreshed, gone
at a clean shutdown, ignored once stale (a replica killed with -9)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from gateway.app import create_app
from gateway.db import Database
from gateway.replicas.heartbeat import (
    FRESH_INTERVALS,
    INTERVAL,
    Heartbeat,
    NotAlone,
    refuse_unshared,
)
from gateway.replicas.store import Replica, ReplicaStore
from tests.gateway.conftest import free_port

from .conftest import PrivateRedis, replica_config

ROOT = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(pg_url: str, tmp_path: Path) -> Iterator[ReplicaStore]:
    db = Database(tmp_path, pg_url)
    try:
        yield ReplicaStore(db.open("replicas"))
    finally:
        db.close()


async def test_a_second_replica_without_redis_is_refused_and_leaves_no_row(
    store: ReplicaStore,
) -> None:
    clock = Clock()
    first = Heartbeat(store, redis=False, clock=clock)
    await first.start()
    clock.now += 1
    second = Heartbeat(store, redis=False, clock=clock)
    with pytest.raises(NotAlone, match="TELEGATE_REDIS_URL") as e:
        await second.start()
    assert "\n" not in str(e.value) and first.me.id in str(e.value)
    assert [r.id for r in store.others("", 0)] == [first.me.id]
    await first.close()
    assert store.others("", 0) == []  # a clean shutdown removes the row


@pytest.mark.parametrize(("a", "b"), [(False, True), (True, False)])
async def test_one_replica_with_redis_and_one_without_cannot_share(
    store: ReplicaStore, a: bool, b: bool
) -> None:
    clock = Clock()
    first = Heartbeat(store, redis=a, clock=clock)
    await first.start()
    with pytest.raises(NotAlone):
        await Heartbeat(store, redis=b, clock=clock).start()
    await first.close()


async def test_replicas_with_redis_run_together(store: ReplicaStore) -> None:
    clock = Clock()
    beats = [Heartbeat(store, redis=True, clock=clock) for _ in range(3)]
    for h in beats:
        await h.start()
    assert len(store.others("", 0)) == 3
    for h in beats:
        await h.close()


async def test_a_stale_heartbeat_is_a_dead_replica_and_does_not_block(
    store: ReplicaStore,
) -> None:
    clock = Clock()
    now = int(clock())
    dead = Replica("killed", now - 600, now - FRESH_INTERVALS * INTERVAL - 1, False)
    store.beat(dead, dead.seen)
    h = Heartbeat(store, redis=False, clock=clock)
    await h.start()  # not refused
    await h.close()
    # Seen just inside the window, the same row refuses.
    store.beat(dead, now - FRESH_INTERVALS * INTERVAL + 1)
    with pytest.raises(NotAlone, match="killed"):
        await Heartbeat(store, redis=False, clock=clock).start()


def test_two_starting_at_once_both_refuse(store: ReplicaStore) -> None:
    """Both rows are written before either looks: each sees the other and refuses (a
    restart settles it); neither may serve beside the other unchecked."""
    now = int(Clock()())
    a, b = Replica("a", now, now, False), Replica("b", now, now, False)
    store.beat(a, now)
    store.beat(b, now)
    with pytest.raises(NotAlone, match=r"\(b,"):
        refuse_unshared(store, a, now)
    with pytest.raises(NotAlone, match=r"\(a,"):
        refuse_unshared(store, b, now)


async def test_a_second_gateway_app_without_redis_does_not_start(
    aiohttp_client: Any, tmp_path: Path, pg_url: str
) -> None:
    config = replica_config(tmp_path / "data", pg_url, None)
    await aiohttp_client(create_app(config))
    second = TestServer(create_app(config))
    try:
        with pytest.raises(NotAlone):
            await second.start_server()
    finally:
        await second.close()


async def test_two_gateway_apps_with_redis_both_serve(
    aiohttp_client: Any, tmp_path: Path, pg_url: str, redis_server: PrivateRedis
) -> None:
    config = replica_config(tmp_path / "data", pg_url, redis_server.url)
    a = await aiohttp_client(create_app(config))
    b = await aiohttp_client(create_app(config))
    for c in (a, b):
        assert (await c.get("/readyz")).status == 200


def test_serve_refuses_a_second_replica_without_redis_in_one_line(
    store: ReplicaStore, pg_url: str, tmp_path: Path
) -> None:
    now = int(time.time())
    store.beat(Replica("running", now - 30, now, False), now)
    r = subprocess.run(
        [
            *(sys.executable, "-m", "gateway.cli", "serve", "--port", str(free_port())),
            *("--data-dir", str(tmp_path / "data"), "--database-url", pg_url),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("TELEGATE_")},
    )
    assert r.returncode == 1, r.stdout + r.stderr
    [line] = r.stderr.strip().splitlines()
    assert re.match(r"error: another replica \(running, seen \d+ s ago\)", line), line
    assert "TELEGATE_REDIS_URL" in line
