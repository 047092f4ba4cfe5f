"""Alembic owns the schema: a data dir of the previous release is adopted with every record,
``telegate db upgrade|current`` work on both engines, and a PostgreSQL schema that is not
this release's stops ``serve`` with one line naming the command to run."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiohttp import web

from gateway.app import create_app
from gateway.cli import main
from gateway.config import Config
from gateway.consent.store import Consent, ConsentStore, Emergency
from gateway.db import Database, SchemaMismatch
from gateway.db.migrate import head
from gateway.sessions.store import CallSession, SessionStore, State
from tests.db import legacy_release as old

ROOT = Path(__file__).resolve().parents[2]


def test_a_data_dir_of_the_previous_release_is_adopted_with_every_record(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    old.make_data_dir(data)
    db = Database(data)
    try:
        consents = ConsentStore(db.open("consent"))  # what serve does at start
        sessions = SessionStore(db.open("sessions"))
        for c in old.CONSENTS:
            assert consents.get(c[0]) == Consent(*c[:3], tuple(c[3]), *c[4:])  # type: ignore[misc]
        for pid, prov, pat, _reason, created, until in old.EMERGENCIES:
            assert consents.emergency(prov, pat, created + 1) == Emergency(
                pid, prov, pat, created, until
            )
        for s in old.SESSIONS:
            assert sessions.get(s[0]) == CallSession(*s[:3], State(s[3]), *s[4:])
        assert db.current() == {
            "consent": head("consent"),
            "sessions": head("sessions"),
            "vitals": None,  # an old vitals.db is adopted when the vitals store opens it
        }
        # Writable afterwards, and the old rows are still there after a second start.
        assert consents.revoke("c1", 1_700_000_500)
        sessions.add(CallSession("s4", "pat:9", "prov:9", State.SCHEDULED, 1, 1))
        assert db.upgrade() == {
            "consent": head("consent"),
            "sessions": head("sessions"),
            "vitals": head("vitals"),
        }
    finally:
        db.close()
    raw = sqlite3.connect(data / "consent.db")
    assert raw.execute("SELECT count(*) FROM consents").fetchone() == (len(old.CONSENTS),)
    assert json.loads(raw.execute("SELECT scopes FROM consents WHERE id='c3'").fetchone()[0]) == [
        "devices",
        "vitals.stream",
    ]
    raw.close()


def test_a_store_file_that_is_not_the_old_schema_is_refused_not_adopted(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    raw = sqlite3.connect(data / "sessions.db")
    raw.execute("CREATE TABLE sessions (id TEXT PRIMARY KEY, who TEXT)")
    raw.close()
    db = Database(data)
    try:
        with pytest.raises(SchemaMismatch, match="refusing to adopt"):
            db.open("sessions")
    finally:
        db.close()


def test_db_upgrade_and_current_on_the_embedded_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    old.make_data_dir(data)
    (data / "consent.db").unlink()
    assert main(["db", "current", "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "consent: none (behind: run `telegate db upgrade` for consent_0001)",
        "sessions: none (behind: run `telegate db upgrade` for sessions_0001)",
        "vitals: none (behind: run `telegate db upgrade` for vitals_0001)",
    ]
    assert not (data / "consent.db").exists()  # asking creates nothing
    assert main(["db", "upgrade", "--data-dir", str(data)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "consent: consent_0001",
        "sessions: sessions_0001",
        "vitals: vitals_0001",
    ]
    assert main(["db", "current", "--data-dir", str(data)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "consent: consent_0001 (head)",
        "sessions: sessions_0001 (head)",
        "vitals: vitals_0001 (head)",
    ]
    db = Database(data)
    try:  # the legacy sessions.db kept its rows through `db upgrade`
        assert SessionStore(db.engine("sessions")).get("s2") is not None
    finally:
        db.close()


def test_db_upgrade_and_current_on_postgresql(
    tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--data-dir", str(tmp_path / "data"), "--database-url", pg_url]
    assert main(["db", "current", *args]) == 0
    assert "consent: none (behind" in capsys.readouterr().out
    assert main(["db", "upgrade", *args]) == 0
    assert main(["db", "upgrade", *args]) == 0  # twice is a no-op
    capsys.readouterr()
    assert main(["db", "current", *args]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "consent: consent_0001 (head)",
        "sessions: sessions_0001 (head)",
        "vitals: vitals_0001 (head)",
    ]
    assert not (tmp_path / "data").exists()  # nothing went to SQLite files


def test_an_unreachable_database_is_one_line_without_the_password(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = "postgresql://postgres:hunter2@127.0.0.1:1/test"
    assert main(["db", "current", "--database-url", url]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot use the database postgresql://postgres:***@127.0.0.1:1/")
    assert "hunter2" not in err and len(err.strip().splitlines()) == 1


def _serve(tmp_path: Path, url: str) -> subprocess.CompletedProcess[str]:
    where = ["--data-dir", str(tmp_path / "data"), "--database-url", url]
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--port", "1", *where],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_serve_refuses_a_postgresql_schema_older_than_the_code(tmp_path: Path, pg_url: str) -> None:
    r = _serve(tmp_path, pg_url)  # never upgraded: no schema at all
    assert r.returncode == 1, r.stderr
    assert r.stderr.splitlines() == [
        "error: the consent schema is at no schema yet, this release needs consent_0001: "
        "run `telegate db upgrade`"
    ]
    assert not (tmp_path / "data" / "ledger.db").exists()  # refused before anything opened


def test_serve_refuses_a_postgresql_schema_newer_than_the_code(tmp_path: Path, pg_url: str) -> None:
    assert main(["db", "upgrade", "--database-url", pg_url]) == 0
    with psycopg.connect(pg_url, autocommit=True) as c:
        c.execute(
            "UPDATE alembic_version SET version_num = 'sessions_0099' "
            "WHERE version_num = 'sessions_0001'"
        )
    r = _serve(tmp_path, pg_url)
    assert r.returncode == 1
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("error: the database is at revision sessions_0099, newer than")


async def test_the_app_refuses_to_start_on_a_stale_postgresql_schema(
    tmp_path: Path, pg_url: str
) -> None:
    config = Config(data_dir=tmp_path / "data", database_url=pg_url)
    runner = web.AppRunner(create_app(config))
    with pytest.raises(SchemaMismatch, match="telegate db upgrade"):
        await runner.setup()
    await runner.cleanup()
    assert not (tmp_path / "data" / "ledger.db").exists()  # refused before the ledger opened


async def test_the_app_runs_its_consent_and_sessions_on_postgresql(
    tmp_path: Path, pg_url: str, aiohttp_client: Any
) -> None:
    assert main(["db", "upgrade", "--database-url", pg_url]) == 0
    config = Config(data_dir=tmp_path / "data", database_url=pg_url)
    client = await aiohttp_client(create_app(config))
    from gateway.appkeys import CONSENTS, SESSIONS

    app = client.server.app
    app[CONSENTS].add(Consent("c1", "pat:1", "prov:1", ("call",), 1, 2, None))
    app[SESSIONS].add(CallSession("s1", "pat:1", "prov:1", State.SCHEDULED, 1, 1))
    assert not (tmp_path / "data" / "consent.db").exists()
    assert not (tmp_path / "data" / "sessions.db").exists()
    with psycopg.connect(pg_url) as c:
        assert c.execute("SELECT count(*) FROM consents").fetchone() == (1,)
        assert c.execute("SELECT scopes FROM consents").fetchone() == (["call"],)  # jsonb
        assert c.execute("SELECT count(*) FROM sessions").fetchone() == (1,)


def test_an_old_data_dir_s_vitals_are_all_found_and_decrypt_after_the_upgrade(
    tmp_path: Path,
) -> None:
    from gateway.vitals.store import Erased, VitalsStore

    data = tmp_path / "data"
    old.make_data_dir(data)
    db = Database(data)
    try:
        master = (data / "keys" / "vitals-master.key").read_bytes()
        store = VitalsStore(db.open("vitals"), master)  # what serve does at start
        assert db.current()["vitals"] == head("vitals")
        for patient in {v[2] for v in old.VITALS}:
            got = [
                (m.device, m.batch_id, m.received, m.ledger_index, content)
                for m, content in store.read(patient, 0, 2**62, 0, 100)
            ]
            assert got == [
                (d, b, r, i, c) for d, b, p, r, c, i in old.VITALS if p == patient and i is not None
            ]
        # The batch the old release left pending is still pending (reconcile settles it).
        assert [(d, b) for d, b, _e, _s in store.pending()] == [
            (d, b) for d, b, _p, _r, _c, i in old.VITALS if i is None
        ]
        patient, when, _event, index = old.ERASED[0]
        assert store.erased(patient) == (when, index)
        with pytest.raises(Erased):
            store.read(patient, 0, 2**62, 0, 100)
        # Writable afterwards: a new batch goes in after the old ones and reads back.
        tag, nonce, ct = store.seal("pat:1", "dev:1", "b3", b"{}", {"readings": []}, 1_700_000_100)
        row = ("dev:1", "b3", "pat:1", 1_700_000_100, tag, nonce, ct, b"{}", 8)
        assert store.commit([row], []) == [True]
        store.set_indexes([(9, "dev:1", "b3")])
        (*_, (last, content)) = store.read("pat:1", 0, 2**62, 0, 100)
        assert (last.batch_id, content) == ("b3", {"readings": []})
        assert last.seq > len(old.VITALS)  # AUTOINCREMENT kept: no sequence number reused
    finally:
        db.close()
