"""The PostgreSQL pool replaces a connection the server closed, without a round trip per
checkout (gateway/db/engine.py ``_still_open``)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import sqlalchemy as sa

from gateway.auth.store import FAST_POOL_SIZE, IdentityStore
from gateway.db import Database
from gateway.db.engine import postgres_engine


def _backend_pid(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())


def test_a_terminated_pooled_connection_is_replaced_at_checkout(pg_url: str) -> None:
    engine = postgres_engine(pg_url, pool_size=1, max_overflow=0)
    try:
        first = _backend_pid(engine)
        assert _backend_pid(engine) == first  # pooled: the same session again
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (first,))
            # pg_terminate_backend returns before the backend has gone: wait for it.
            for _ in range(200):
                gone = admin.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (first,)
                ).fetchone()
                if gone == (0,):
                    break
                admin.execute("SELECT pg_sleep(0.01)")
        # The next checkout finds the socket closed and opens a new session; the request
        # that asked for it does not fail.
        second = _backend_pid(engine)
        assert second != first
        assert _backend_pid(engine) == second
    finally:
        engine.dispose()


def test_a_healthy_pooled_connection_is_kept_without_a_query(pg_url: str) -> None:
    engine = postgres_engine(pg_url, pool_size=1, max_overflow=0)
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    try:
        _backend_pid(engine)
        statements.clear()
        _backend_pid(engine)
        # Only the query itself: no SELECT 1 ping before it.
        assert statements == ["SELECT pg_backend_pid()"]
    finally:
        engine.dispose()


def test_a_burst_of_token_writes_opens_no_connection_per_token(tmp_path: Path, pg_url: str) -> None:
    # The executor's threads write spent assertion ids at once: the identity store's own
    # pool keeps a connection for each instead of opening and closing overflow ones.
    db = Database(tmp_path / "data", pg_url)
    db.upgrade()
    store = IdentityStore(db.open("identity"))
    try:
        assert store._fast is not None
        opened: list[object] = []
        sa.event.listen(store._fast, "connect", lambda *a: opened.append(a[0]))
        with ThreadPoolExecutor(FAST_POOL_SIZE) as pool:
            spent = list(
                pool.map(
                    lambda i: store.use_client_jti(f"c:{i:04d}", 2_000_000_000, 100), range(400)
                )
            )
        assert spent == [True] * 400
        assert store.use_client_jti("c:0000", 2_000_000_000, 100) is False  # a replay
        assert 1 <= len(opened) <= FAST_POOL_SIZE
    finally:
        store.close()
        db.close()
