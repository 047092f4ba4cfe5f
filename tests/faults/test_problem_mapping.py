"""The problem middleware's answer to an embedded store's SQLite errors, made real (a lock
held by another connection, a ROLLBACK with no transaction), without a gateway around."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from gateway.errors import _problem


def _busy(tmp_path: Path) -> sqlite3.OperationalError:
    db = tmp_path / "x.db"
    holder = sqlite3.connect(db, isolation_level=None)
    other = sqlite3.connect(db, timeout=0, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError) as e:
            other.execute("BEGIN IMMEDIATE")
        return e.value
    finally:
        holder.close()
        other.close()


def _masked(cause: sqlite3.OperationalError) -> sqlite3.OperationalError:
    """What a store's unconditional ROLLBACK raises after SQLite rolled back by itself."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        try:
            raise cause
        except sqlite3.OperationalError:
            conn.execute("ROLLBACK")
    except sqlite3.OperationalError as e:
        assert e.__context__ is cause
        return e
    finally:
        conn.close()
    raise AssertionError("ROLLBACK without a transaction did not raise")


def _answer(e: Exception) -> tuple[int, dict[str, object], dict[str, str]]:
    resp = _problem(e)
    assert resp.content_type == "application/problem+json"
    body = resp.body
    assert isinstance(body, bytes)
    return resp.status, json.loads(body), dict(resp.headers)


def test_locked_store_is_503_with_retry_after(tmp_path: Path) -> None:
    status, body, headers = _answer(_busy(tmp_path))
    assert status == 503 and body["type"] == "https://telegate.dev/problems/unavailable"
    assert int(headers["Retry-After"]) >= 1


def test_a_failed_rollback_after_a_transient_error_is_still_503(tmp_path: Path) -> None:
    status, _, headers = _answer(_masked(_busy(tmp_path)))
    assert status == 503 and int(headers["Retry-After"]) >= 1


def test_other_sqlite_errors_stay_500(tmp_path: Path) -> None:
    conn = sqlite3.connect(":memory:")
    try:
        with pytest.raises(sqlite3.OperationalError) as e:
            conn.execute("SELECT * FROM nowhere")
    finally:
        conn.close()
    status, body, headers = _answer(e.value)
    assert status == 500 and "Retry-After" not in headers
    assert "nowhere" not in json.dumps(body)  # nothing of the statement leaks


def test_retryable_is_what_the_middleware_answers_503(tmp_path: Path) -> None:
    """The WebSocket paths (no HTTP answer to give) decide by ``retryable``: the same
    outages the middleware answers 503 + Retry-After, and nothing it answers otherwise."""
    from gateway.db.errors import DatabaseUnavailable
    from gateway.errors import BadRequest, Overloaded, Unavailable, retryable
    from ledger.errors import LedgerUnavailable

    locked = _busy(tmp_path)
    conn = sqlite3.connect(":memory:")
    try:
        with pytest.raises(sqlite3.OperationalError) as e:
            conn.execute("SELECT * FROM nowhere")
    finally:
        conn.close()
    outages = [
        locked,
        _masked(_busy(tmp_path)),
        LedgerUnavailable("stopped"),
        DatabaseUnavailable("down"),
        Unavailable(),
        Overloaded(),
    ]
    others = [e.value, BadRequest("x"), ValueError("x"), KeyError("x")]
    for x in outages:
        assert retryable(x), x
        assert _problem(x).status == 503, x
    for x in others:
        assert not retryable(x), x
        assert _problem(x).status != 503, x


# -- PostgreSQL: every way the database layer can say "not now" is a 503 ----------------------


def _pg() -> str:
    from tests.conftest import need
    from tests.db.conftest import PG_URL
    from tests.pgschema import answers

    need(answers(PG_URL), f"PostgreSQL at {PG_URL} (TELEGATE_TEST_DATABASE_URL)")
    return PG_URL


def _through_reaching(engine: object) -> Exception:
    import sqlalchemy as sa

    from gateway.db.dialect import reading

    assert isinstance(engine, sa.Engine)
    with pytest.raises(Exception) as e, reading(engine) as conn:
        conn.execute(sa.text("SELECT 1"))
    return e.value


def test_a_pool_with_no_free_connection_is_503() -> None:
    """Every pooled connection busy past the pool timeout (each waiting on a server that
    does not answer): SQLAlchemy's TimeoutError, not a DBAPI error; it was a 500."""
    import sqlalchemy as sa

    from gateway.db.engine import pg_url
    from gateway.db.errors import DatabaseUnavailable

    engine = sa.create_engine(pg_url(_pg()), pool_size=1, max_overflow=0, pool_timeout=0.1)
    try:
        with engine.connect():  # the only connection, held
            e = _through_reaching(engine)
            assert isinstance(e, DatabaseUnavailable), repr(e)
            assert isinstance(e.__cause__, sa.exc.TimeoutError)
            assert _problem(e).status == 503
            # Unwrapped (a query made outside ``reaching``): still 503, with Retry-After.
            status, body, headers = _answer(e.__cause__)
            assert status == 503 and int(headers["Retry-After"]) >= 1
            assert body["type"].endswith("/unavailable")
    finally:
        engine.dispose()


def test_a_checkout_that_finds_only_closed_connections_is_503() -> None:
    """A server shutting down accepts a connection and closes it at once: the pool's
    checkout check (gateway.db.engine._still_open) discards it, twice, and SQLAlchemy gives
    up with InvalidRequestError("This connection is closed"); it was a 500. The server's
    closing is played by the checkout listener here, on real connections."""
    import sqlalchemy as sa

    from gateway.db.engine import postgres_engine
    from gateway.db.errors import DatabaseUnavailable, unreachable

    engine = postgres_engine(_pg())

    def closing(*_: object) -> None:
        raise sa.exc.DisconnectionError("the server closed this connection")

    sa.event.listen(engine, "checkout", closing)
    try:
        e = _through_reaching(engine)
        assert isinstance(e, DatabaseUnavailable), repr(e)
        assert unreachable(e.__cause__) and _problem(e).status == 503
    finally:
        engine.dispose()


def test_a_bad_statement_stays_500() -> None:
    import sqlalchemy as sa

    from gateway.db.dialect import reading
    from gateway.db.engine import postgres_engine
    from gateway.db.errors import unreachable
    from gateway.errors import retryable

    engine = postgres_engine(_pg())
    try:
        with pytest.raises(sa.exc.ProgrammingError) as e, reading(engine) as conn:
            conn.execute(sa.text("SELECT * FROM no_such_table_here"))
        assert not unreachable(e.value) and not retryable(e.value)
        status, body, headers = _answer(e.value)
        assert status == 500 and "Retry-After" not in headers
        assert "no_such_table" not in json.dumps(body)
        assert not unreachable(sa.exc.InvalidRequestError("some other misuse"))
    finally:
        engine.dispose()
