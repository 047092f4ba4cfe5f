"""``telegate db copy``: an embedded deployment, made by the real gateway, moved into a new
PostgreSQL database, found whole by a gateway started on it; and every refusal: a running
gateway, a target that is not empty, a URL that is not PostgreSQL, and a copy that failed
half way, which leaves the target refused by ``serve`` until it is dropped."""

from __future__ import annotations

import secrets
import signal
import sqlite3
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from gateway.app import create_app
from gateway.cli import main
from gateway.config import Config
from gateway.consent.store import Consent, ConsentStore, Emergency
from gateway.db import Database
from gateway.db.copy import CopyUnfinished
from gateway.db.copy import _copy_store as copy_store
from gateway.db.engine import postgres_engine, sqlite_engine
from gateway.ledger_keys import init_log_key
from gateway.sessions.store import CallSession, SessionStore, State
from ledger.checkpoint import Checkpoint, open_checkpoint
from ledger.note import Signer, Verifier, format_note
from ledger.pgstore import PGStore
from ledger.store import Frontier, SQLiteStore
from tests.db import legacy_release as old
from tests.gateway.idclient import call, get_token
from tests.gateway.test_sessions import Call

ORIGIN = "copy.example/telegate/log"


@pytest.fixture
def target(pg_base: str) -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped afterwards."""
    name = f"tg_copy_{secrets.token_hex(6)}"
    with psycopg.connect(pg_base, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    parts = urllib.parse.urlsplit(pg_base)
    try:
        yield urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(pg_base, autocommit=True) as c:
            c.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


class Deployment:
    """What the embedded gateway wrote: who enrolled, the consent, the call."""

    call: Call
    session: str


async def _embedded(aiohttp_client: Any, data: Path) -> Deployment:
    client = await aiohttp_client(create_app(Config(data_dir=data, log_origin=ORIGIN)))
    d = Deployment()
    d.call = await Call(client).setup(Config(data_dir=data))  # enrolls, grants a consent
    d.session = await d.call.schedule()
    await client.close()
    return d


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as c:
        rows = c.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
    return {r[0] for r in rows}


def _copy(data: Path, url: str) -> int:
    return main(["db", "copy", "--data-dir", str(data), "--to", url])


async def test_a_copied_deployment_is_whole_and_serves(
    target: str, aiohttp_client: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    d = await _embedded(aiohttp_client, data)
    source = SQLiteStore(data / "ledger.db", writer=False)
    size, note = source.size(), source.checkpoint()
    source.close()
    with sqlite3.connect(data / "consent.db") as db:
        consents = db.execute("SELECT count(*) FROM consents").fetchone()[0]
    capsys.readouterr()

    assert _copy(data, target) == 0
    out, err = capsys.readouterr()
    assert f"ledger: {size} entries" in out and f"consents: {consents} rows" in out
    assert "sessions: 1 rows" in out
    assert f"ledger: {size}/{size} entries copied" in err
    # The PostgreSQL log is the SQLite one: same size, same signed checkpoint (same key).
    pg = PGStore(target, writer=False)
    try:
        assert (pg.size(), pg.checkpoint()) == (size, note)
        frontier, _ = pg.head()
        vkey = (data / "keys" / "log.vkey").read_text().strip()
        assert note is not None
        cp = open_checkpoint(note, Verifier.from_vkey(vkey)).checkpoint
        assert frontier.root() == cp.root
    finally:
        pg.close()
    assert "telegate_copy" not in _tables(target)
    assert main(["db", "current", "--database-url", target]) == 0

    # A gateway on the database finds the records and grows the same log.
    config = Config(data_dir=data, log_origin=ORIGIN, database_url=target)
    client = await aiohttp_client(create_app(config))
    c = d.call
    c.c = client
    pat_t = await get_token(client, c.pat)
    r = await call(client, "GET", f"/v1/sessions/{d.session}", c.pat, pat_t)
    assert r.status == 200, await r.text()
    r = await call(client, "GET", "/v1/consents", c.pat, pat_t)
    assert [x["grantee"] for x in (await r.json())["consents"]] == [c.prov.sub]
    ready = await (await client.get("/readyz")).json()
    assert ready["ledger_size"] > size  # the new tokens' events, after the copied ones
    entry = await (await client.get(f"/ledger/entries/{size - 1}")).json()
    assert entry["event"]["type"]
    await client.close()


def _poison(data: Path) -> None:
    """A row SQLite keeps and PostgreSQL refuses (text holding a NUL): the copy fails at
    the last store, after the ledger and the others were written."""
    with sqlite3.connect(data / "sessions.db") as db:
        db.execute("INSERT INTO sessions VALUES ('bad', ?, 'prov', 'ended', 1, 1)", ("pat\x00",))


async def test_a_failed_copy_leaves_the_target_refused(
    target: str, aiohttp_client: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    await _embedded(aiohttp_client, data)
    _poison(data)
    capsys.readouterr()
    assert _copy(data, target) == 1
    *progress, err = capsys.readouterr().err.splitlines()
    assert err == (
        "error: the copy failed at sessions (DataError); the copy into this database did not"
        " finish: drop it and run `telegate db copy` again"
    )
    assert progress and progress[-1].endswith("entries copied")  # the ledger went first
    # Nothing half-copied: the ledger and the stores' rows were rolled back together.
    with psycopg.connect(target) as conn:
        assert conn.execute("SELECT size FROM ledger_tree").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM consents").fetchone() == (0,)
    for argv in (
        ["serve", "--data-dir", str(data), "--database-url", target],
        ["db", "current", "--database-url", target],
        ["db", "upgrade", "--database-url", target],
    ):
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert err == (
            "error: the copy into this database did not finish: drop it and run "
            "`telegate db copy` again\n"
        ), argv
    # A store opened by the app itself (not through the CLI) refuses it with the same line,
    # not as a schema that merely needs `db upgrade`.
    db = Database(data, target)
    try:
        with pytest.raises(CopyUnfinished, match="did not finish: drop it"):
            db.open("consent")
    finally:
        db.close()
    # And copying again into it is refused until it is dropped.
    assert _copy(data, target) == 1
    assert "not empty" in capsys.readouterr().err


async def test_a_target_that_is_not_empty_is_refused(
    target: str, aiohttp_client: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    await _embedded(aiohttp_client, data)
    assert main(["db", "upgrade", "--database-url", target]) == 0
    before = _tables(target)
    capsys.readouterr()
    assert _copy(data, target) == 1
    err = capsys.readouterr().err
    assert "the target database is not empty (it has alembic_version" in err
    assert _tables(target) == before  # no marker: the database is as it was


async def test_a_running_gateway_is_refused(
    target: str, aiohttp_client: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    await aiohttp_client(create_app(Config(data_dir=data, log_origin=ORIGIN)))
    capsys.readouterr()
    assert _copy(data, target) == 1
    assert f"a gateway is running on {data}" in capsys.readouterr().err
    assert _tables(target) == set()


@pytest.mark.parametrize("url", ["sqlite:///tmp/x.db", "mysql://root@localhost/telegate"])
def test_a_target_that_is_not_postgresql_is_refused(
    tmp_path: Path, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _copy(tmp_path, url) == 1
    assert capsys.readouterr().err == ("error: --to must be postgresql://user@host:port/database\n")


def _big_ledger(data: Path, entries: int) -> None:
    """A SQLite log of ``entries`` signed entries, written in big commits."""
    signer, _ = init_log_key(data / "keys", ORIGIN)
    store = SQLiteStore(data / "ledger.db")
    tree = Frontier()

    def sign(size: int, root: bytes) -> bytes:
        text = Checkpoint(ORIGIN, size, root).text()
        return format_note(text, [signer.sign(text)])

    try:
        for lo in range(0, entries, 10_000):
            leaves = [b'{"n": %d}' % i for i in range(lo, min(entries, lo + 10_000))]
            store.commit(leaves, tree, sign)
    finally:
        store.close()


def test_a_copy_killed_half_way_leaves_the_target_refused(
    target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    _big_ledger(data, 100_000)
    cmd = [sys.executable, "-m", "gateway.cli", "db", "copy", "--data-dir", str(data)]
    proc = subprocess.Popen([*cmd, "--to", target], stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    first = proc.stderr.readline()  # printed once the marker is in and the copy has begun
    assert first == "ledger: 0/100000 entries copied\n", first
    proc.kill()
    assert proc.wait(10) == -signal.SIGKILL
    proc.stderr.close()
    with psycopg.connect(target) as conn:
        assert conn.execute("SELECT size FROM ledger_tree").fetchone() == (0,)
    assert main(["serve", "--data-dir", str(data), "--database-url", target]) == 1
    assert "the copy into this database did not finish" in capsys.readouterr().err


def test_a_data_dir_of_the_previous_release_is_copied_with_every_record(
    target: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    old.make_data_dir(data)  # consent.db and sessions.db as the release before Alembic
    _big_ledger(data, 3)
    assert _copy(data, target) == 0
    db = Database(data, target)
    try:
        consents = ConsentStore(db.open("consent"))
        sessions = SessionStore(db.open("sessions"))
        for c in old.CONSENTS:
            assert consents.get(c[0]) == Consent(*c[:3], tuple(c[3]), *c[4:])  # type: ignore[misc]
        for pid, prov, pat, _reason, created, until in old.EMERGENCIES:
            assert consents.emergency(prov, pat, created + 1) == Emergency(
                pid, prov, pat, created, until
            )
        for s in old.SESSIONS:
            assert sessions.get(s[0]) == CallSession(*s[:3], State(s[3]), *s[4:])
    finally:
        db.close()
    with psycopg.connect(target) as conn:
        scopes = conn.execute("SELECT scopes FROM consents WHERE id = 'c3'").fetchone()
    assert scopes == (["devices", "vitals.stream"],)  # jsonb, not a JSON string in jsonb


def test_a_log_that_the_data_dirs_key_did_not_sign_is_refused(
    target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    _big_ledger(data, 3)
    (data / "keys" / "log.vkey").write_text(Signer.generate(ORIGIN).vkey + "\n")
    assert _copy(data, target) == 1
    assert "the log's newest checkpoint does not verify with" in capsys.readouterr().err
    assert _tables(target) == set()


def test_an_autoincrement_id_is_not_handed_out_again_after_the_copy(
    pg_url: str, tmp_path: Path
) -> None:
    """A store whose AUTOINCREMENT key is a read cursor (vitals batches) must not see an id
    again, even one whose row was deleted before the copy."""
    src = sqlite_engine(tmp_path / "s.db")
    with src.begin() as c:
        c.exec_driver_sql("CREATE TABLE t (seq INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT)")
        c.exec_driver_sql("INSERT INTO t (v) VALUES ('a'), ('b'), ('c')")
        c.exec_driver_sql("DELETE FROM t WHERE seq = 3")
    dst = postgres_engine(pg_url)
    try:
        with dst.begin() as c:
            c.exec_driver_sql(
                "CREATE TABLE t (seq bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, v text)"
            )
            assert copy_store(c, src, ["t"]) == {"t": 2}
            c.exec_driver_sql("INSERT INTO t (v) VALUES ('d')")
            got = c.exec_driver_sql("SELECT seq, v FROM t ORDER BY seq").fetchall()
        assert [tuple(r) for r in got] == [(1, "a"), (2, "b"), (4, "d")]
    finally:
        dst.dispose()
        src.dispose()
