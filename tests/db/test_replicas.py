"""Several replicas on one database: what one replica changes, another acts on within a
second, whatever it keeps in process (docs/database.md, "Caches and several replicas")."""

from __future__ import annotations

from typing import Any

from gateway.app import create_app
from gateway.config import Config
from gateway.db import Database
from gateway.sessions import http as sessions_http
from gateway.sessions.store import CallSession, SessionStore, State


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_a_call_ended_through_another_replica_stops_relaying_within_a_second(
    db: Database, aiohttp_client: Any
) -> None:
    clock = Clock()
    config = Config(data_dir=db.data_dir, database_url=db.url, log_origin="r.example/t/log")
    client = await aiohttp_client(create_app(config, clock=clock))
    app = client.server.app
    other = SessionStore(db.open("sessions"))  # the replica that ends the call
    other.add(CallSession("s1", "pat:1", "prov:1", State.ADMITTED, 1, 1))
    seen = await sessions_http.current_session(app, "s1")
    assert seen is not None and seen.state == State.ADMITTED  # now in this replica's hub
    other.move("s1", State.ENDED, 2)
    clock.now += 1.0
    seen = await sessions_http.current_session(app, "s1")
    assert seen is not None and seen.state == State.ENDED
