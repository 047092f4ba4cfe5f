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
