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
from gateway.auth.store import IdentityStore, Invite, Subject, TokenRecord
from gateway.cli import main
from gateway.config import Config
from gateway.consent.store import Consent, ConsentStore, Emergency
from gateway.db import SCHEMAS, Database, SchemaMismatch
from gateway.db.migrate import head
from gateway.sessions.store import CallSession, SessionStore, State
from tests.db import legacy_release as old

ROOT = Path(__file__).resolve().parents[2]
#: The stores after consent and sessions, in the order ``db current`` lists them.
OTHERS = [name for name in SCHEMAS if name not in ("consent", "sessions")]
#: The same in a gateway's data dir: the witness server's store is not kept there.
EMBEDDED = [name for name in OTHERS if SCHEMAS[name].in_data_dir]


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
        opened = {"consent": head("consent"), "sessions": head("sessions")}
        assert {k: v for k, v in db.current().items() if k in opened} == opened
        # Writable afterwards, and the old rows are still there after a second start.
        assert consents.revoke("c1", 1_700_000_500)
        sessions.add(CallSession("s4", "pat:9", "prov:9", State.SCHEDULED, 1, 1))
        assert db.upgrade() == {name: head(name) for name in SCHEMAS if SCHEMAS[name].in_data_dir}
        assert db.current()["identity"] == head("identity")  # made by the upgrade
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
        "consent: none (made when the gateway first uses it)",
        "sessions: none (made when the gateway first uses it)",
    ] + [f"{n}: none (made when the gateway first uses it)" for n in EMBEDDED]
    assert not (data / "consent.db").exists()  # asking creates nothing
    assert main(["db", "upgrade", "--data-dir", str(data)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "consent: consent_0001",
        "sessions: sessions_0001",
    ] + [f"{n}: {head(n)}" for n in EMBEDDED]
    assert main(["db", "current", "--data-dir", str(data)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "consent: consent_0001 (head)",
        "sessions: sessions_0001 (head)",
    ] + [f"{n}: {head(n)} (head)" for n in EMBEDDED]
    assert not (data / "witness.db").exists()  # the witness server's, not the gateway's
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
    ] + [f"{n}: {head(n)} (head)" for n in OTHERS]
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


def test_an_identity_db_of_the_previous_release_is_adopted_with_every_record(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    old.make_identity_db(data)
    db = Database(data)
    try:
        store = IdentityStore(db.open("identity"))  # what serve does at start
        for sid, role, jkt, jwk, created, revoked, patient, attrs in old.SUBJECTS:
            assert store.subject(sid) == Subject(
                sid, role, jkt, jwk, created, revoked, patient, attrs
            )
            assert store.subject_by_jkt(jkt) == sid
        assert store.display_names(["pat:1", "dev:1", "adm:1"]) == {
            "pat:1": "Ana",
            "dev:1": "Oxi 2",
        }
        now = 1_700_001_000
        assert store.peek_invite("h1", now) == Invite(
            "provider", "adm:1", 1_700_000_000, 1_900_000_000, {"npi": "1234567893"}
        )
        assert store.peek_invite("h2", now) is None  # used before the upgrade, still used
        for t in old.TOKENS:
            assert store.token(t[0]) == TokenRecord(*t)
        # The revoked patient's device is refused with it; the revoked token's bit is set.
        assert store.revoked_subjects() == {"pat:2", "dev:2"}
        assert store.revoked_indexes() == [1]
        assert not store.use_client_jti("k1", 1_900_000_000, now)  # spent before: a replay
        # New indexes start after the highest one the old release handed out.
        assert store.reserve_status_indexes(2) == range(8, 10)
        assert store.redeem_invite("h1", now) is not None
        assert store.revoke_subject("adm:1", now) == [0]
        store.close()
        assert db.current()["identity"] == head("identity")
    finally:
        db.close()
    raw = sqlite3.connect(data / "identity.db")
    assert raw.execute("SELECT count(*) FROM subjects").fetchone() == (len(old.SUBJECTS),)
    assert json.loads(raw.execute("SELECT attrs FROM subjects WHERE id='dev:1'").fetchone()[0]) == {
        "model": "Oxi 2"
    }
    names = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"idx_subjects_jkt", "idx_tokens_sub", "idx_tokens_status_idx"} <= names
    raw.close()


def test_an_identity_db_with_other_columns_is_refused_not_adopted(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    raw = sqlite3.connect(data / "identity.db")
    raw.executescript(old.IDENTITY_SCHEMA)
    raw.execute("ALTER TABLE invites DROP COLUMN attrs")
    raw.close()
    db = Database(data)
    try:
        with pytest.raises(SchemaMismatch, match="invites is not the one telegate created"):
            db.open("identity")
    finally:
        db.close()


def test_federation_cosignature_and_witness_files_are_adopted_with_every_record(
    tmp_path: Path,
) -> None:
    from gateway.cosignatures import CosignatureStore
    from gateway.federation.state import FederationState, Link
    from gateway.federation.verify import StatusRef
    from gateway.witness import WitnessConfig, WitnessDatabase, WitnessStore
    from ledger.witness import LogState

    data, wdir = tmp_path / "data", tmp_path / "witness"
    old.make_federation_files(data, wdir)
    db = Database(data)
    wdb = WitnessDatabase(WitnessConfig(name="w.example/w", data_dir=wdir))
    try:
        fed = FederationState(db.open("federation"))  # what serve does at start
        for log, _size, note in old.PEER_CHECKPOINTS:
            assert fed.latest(log) == note
        for log, _seen, a, b in old.PEER_FORKS:
            assert fed.fork(log) == (a, b)
        for issuer, jwks, fetched in old.PINS:
            assert fed.pinned(issuer) == (jwks, fetched)
        assert sorted(fed.links(0), key=lambda k: k.jti) == [
            Link(*x[:6], StatusRef(x[6], x[7]))  # type: ignore[arg-type]
            for x in old.EXCHANGED
        ]
        cos = CosignatureStore(db.open("cosignatures"))
        for witness, size in old.WITNESS_SIZES:
            assert cos.witnessed_size(witness) == size
        newest = cos.newest([w for w, _ in old.WITNESS_SIZES], 2)
        assert newest == (9, old.COSIGNED[1][1] + old.LINES[1][3] + old.LINES[2][3])
        assert cos.newest(["w0+vkey"], 1) is not None
        witness = WitnessStore(wdb.open("witness"))
        for origin, size, root, ts, note in old.WITNESSED:
            assert witness.latest(origin) == LogState(size, root, ts)
            assert witness.checkpoint(origin) == note
        assert witness.forks("a.example/log") == [old.WITNESS_FORKS[0][4]]
        current = db.current()
        assert current["federation"] == head("federation")
        assert current["cosignatures"] == head("cosignatures")
        assert wdb.current()["witness"] == head("witness")
        # Writable afterwards, and still there after a second start.
        fed.record_fork("d.example/log", 1, (b"x", b"y"))
        cos.prune(9)
    finally:
        db.close()
        wdb.close()
    db = Database(data)
    try:
        fed = FederationState(db.open("federation"))
        assert fed.fork("d.example/log") == (b"x", b"y")
        assert fed.latest(old.PEER_CHECKPOINTS[0][0]) == old.PEER_CHECKPOINTS[0][2]
        lines = CosignatureStore(db.open("cosignatures")).newest(["w0+vkey", "w1+vkey"], 1)
        assert lines is not None and lines[0] == 9
    finally:
        db.close()
    raw = sqlite3.connect(wdir / "state.db")  # the witness's file kept its name
    assert raw.execute("SELECT count(*) FROM witness_forks").fetchone() == (1,)
    raw.close()


def test_the_witness_refuses_a_stale_postgresql_schema_then_serves_from_it(
    tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.witness import WitnessConfig, open_witness

    toml = tmp_path / "witness.toml"
    toml.write_text(f'name = "w.example/w"\ndata_dir = "w"\ndatabase_url = "{pg_url}"\n')
    config = WitnessConfig.load(toml, env={})
    with pytest.raises(SchemaMismatch, match="witness schema is at no schema yet"):
        open_witness(config)
    assert main(["db", "upgrade", "--database-url", pg_url]) == 0
    service = open_witness(config)
    service.close()
    assert not (tmp_path / "w" / "state.db").exists()  # the state is in PostgreSQL


async def test_a_witness_hosted_by_a_gateway_on_postgresql_keeps_its_state_there(
    tmp_path: Path, pg_url: str, aiohttp_client: Any
) -> None:
    # Every replica hosts the witness with one key: a state.db per replica would let two of
    # them cosign two roots for one size. Without a database_url of its own, it uses the
    # gateway's database.
    from gateway.witness import WITNESS
    from ledger.note import Signer
    from tests.witness.conftest import History

    log = Signer.generate("peer.example/log")
    toml = tmp_path / "witness.toml"
    toml.write_text(
        'name = "w.example/w"\ndata_dir = "w"\n\n'
        f'[[logs]]\norigin = "peer.example/log"\nvkey = "{log.vkey}"\n'
    )
    assert main(["db", "upgrade", "--database-url", pg_url]) == 0
    config = Config(data_dir=tmp_path / "data", database_url=pg_url, witness_config=str(toml))
    client = await aiohttp_client(create_app(config))
    service = client.server.app[WITNESS]
    service.add_checkpoint(History(log).grow(3).body(0))
    assert not (tmp_path / "w" / "state.db").exists()
    with psycopg.connect(pg_url) as c:
        assert c.execute("SELECT origin, size FROM witness_logs").fetchall() == [
            ("peer.example/log", 3)
        ]


def test_a_local_invite_lands_in_the_database_the_gateway_reads(
    tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`telegate invite admin --database-url` on a PostgreSQL deployment: the invite is in
    that database (where every replica looks), and no identity.db appears in the data dir."""
    import time

    from gateway.auth.enroll import hash_code
    from gateway.auth.store import IdentityStore

    data = tmp_path / "data"
    args = ["--data-dir", str(data), "--database-url", pg_url]
    assert main(["db", "upgrade", *args]) == 0
    capsys.readouterr()
    assert main(["invite", "admin", *args]) == 0
    code = capsys.readouterr().out.strip()
    db = Database(data, pg_url)
    try:
        store = IdentityStore(db.open("identity"))
        invite = store.peek_invite(hash_code(code), int(time.time()))
        assert invite is not None and invite.role == "admin"
        store.close()
    finally:
        db.close()
    assert not (data / "identity.db").exists()


def test_keys_rotate_publishes_the_new_key_in_the_shared_database(
    tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`telegate keys rotate --database-url`: the new key's public part and its
    predecessor's retirement are in the database when the command returns, so replicas on
    other hosts verify the new key within their next second (docs/postgresql.md)."""
    from gateway.auth.store import IdentityStore

    data = tmp_path / "data"
    args = ["--data-dir", str(data), "--database-url", pg_url]
    assert main(["db", "upgrade", *args]) == 0
    capsys.readouterr()
    assert main(["keys", "rotate", *args]) == 0
    new = capsys.readouterr().out.split()[4]  # "new attestation signing key KID (alg); ..."
    db = Database(data, pg_url)
    try:
        store = IdentityStore(db.open("identity"))
        published = {k.kid: k.retired for k in store.signing_keys_since()}
        store.close()
    finally:
        db.close()
    assert published[new] is None  # the current key
    assert len(published) == 2 and all(r is not None for k, r in published.items() if k != new)
