"""``database_url``: replicas share one PostgreSQL ledger, and its password stays secret."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from gateway.app import LOG, create_app
from gateway.cli import _config, _parser
from gateway.config import Config, redact_url
from gateway.db import Database
from gateway.errors import ConfigError
from gateway.ledger_keys import init_log_key
from ledger.checkpoint import open_checkpoint
from ledger.log import Log
from tests.ledger.pg import pg_url

__all__ = ["pg_url"]

ORIGIN = "replicas.example/telegate/log"
SECRET = "pw-s3cr3t"


def test_database_url_from_env_toml_and_flag(tmp_path: Path) -> None:
    url = f"postgresql://telegate:{SECRET}@db.example:5432/telegate"
    assert Config.load({"TELEGATE_DATABASE_URL": url}).database_url == url
    toml = tmp_path / "c.toml"
    toml.write_text(f'database_url = "{url}"\n')
    assert Config.load({"TELEGATE_CONFIG": str(toml)}).database_url == url
    args = _parser().parse_args(["serve", "--database-url", url])
    assert _config(args).database_url == url
    assert Config.load({}).database_url is None  # the embedded SQLite default
    with pytest.raises(ConfigError, match="postgresql://"):
        Config(database_url="mysql://x@db/y")


def test_the_password_is_neither_shown_nor_hashed() -> None:
    a = Config(database_url=f"postgresql://telegate:{SECRET}@db.example/telegate")
    b = Config(database_url="postgresql://telegate:another@db.example/telegate")
    other = Config(database_url=f"postgresql://telegate:{SECRET}@db2.example/telegate")
    assert SECRET not in repr(a)
    # Rotating the password is not a configuration change; moving the database is.
    assert a.digest() == b.digest() != other.digest()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:p@h:5432/d", "postgresql://u:***@h:5432/d"),
        ("postgresql://u@h/d", "postgresql://u@h/d"),
        (
            "postgresql://h/d?sslmode=require&password=p",
            "postgresql://h/d?sslmode=require&password=***",
        ),
        ("postgresql://u:p:q@h/d", "postgresql://u:***@h/d"),
        ("", ""),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def _with_password(url: str) -> tuple[str, str]:
    """``url`` with a password, and the password: the server's own if the URL has one (CI),
    else SECRET (a server that trusts local connections accepts any password)."""
    parts = urlsplit(url)
    if parts.password:
        return url, parts.password
    user, _, host = parts.netloc.rpartition("@")
    netloc = f"{(user or 'postgres').split(':')[0]}:{SECRET}@{host}"
    return urlunsplit(parts._replace(netloc=netloc)), SECRET


async def test_two_replicas_serve_one_log(
    pg_url: str,
    aiohttp_client: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    session_redis: str,
) -> None:
    # pg_url first: its schema must outlive the apps, which record gateway.stopped.
    caplog.set_level(logging.DEBUG)
    url, password = _with_password(pg_url)
    signer, _ = init_log_key(tmp_path / "a" / "keys", ORIGIN)
    shutil.copytree(tmp_path / "a" / "keys", tmp_path / "b" / "keys")  # one log key for all
    # On PostgreSQL the operator migrates once (`telegate db upgrade`); replicas only check.
    db = Database(tmp_path / "a", url)
    try:
        db.upgrade()
    finally:
        db.close()
    clients = [
        await aiohttp_client(
            create_app(
                Config(
                    data_dir=tmp_path / n,
                    log_origin=ORIGIN,
                    database_url=url,
                    redis_url=session_redis,  # replicas on one database share a Redis
                )
            )
        )
        for n in ("a", "b")
    ]
    a, b = clients
    log_a: Log = a.server.app[LOG]
    r = await log_a.append(b"appended through replica a")
    # Replica b serves the proof of a's receipt at once, whether or not it has looked yet.
    resp = await b.get(f"/ledger/proof/inclusion?index={r.index}&size={r.index + 1}")
    assert resp.status == 200, await resp.text()
    cp = open_checkpoint(r.checkpoint, signer.verifier).checkpoint
    proof = await b.get(f"/ledger/proof/inclusion?index={r.index}&size={cp.size}")
    assert (await proof.json())["proof"] == [p for p in r.to_json()["inclusion_proof"]]
    entry = await b.get(f"/ledger/entries/{r.index}")
    assert entry.status == 200
    # Both replicas recorded their start on the one log; neither wrote the password.
    for i in range(r.index):
        body = await (await b.get(f"/ledger/entries/{i}")).json()
        assert body["event"]["type"] == "gateway.started", body
        assert password not in json.dumps(body)
    for c in clients:
        assert (await c.get("/readyz")).status == 200
        assert password not in await (await c.get("/metrics")).text()
        note = await (await c.get("/ledger/checkpoint")).read()
        assert open_checkpoint(note, signer.verifier).checkpoint.size >= cp.size
    assert password not in caplog.text


@pytest.mark.parametrize(
    ("url", "why"),
    [
        # libpq ends the user information at the first "@": the rest of the password would
        # be looked up as a host name, and half of it printed in the error.
        (f"postgresql://telegate:{SECRET}@x@db.example/telegate", "percent-encode '@'"),
        # An option the driver does not know: one line, not a traceback at first connect.
        (f"postgresql://telegate:{SECRET}@db.example/telegate?bogus=1", 'parameter: "bogus"'),
    ],
)
def test_a_url_the_driver_would_misread_is_refused_in_one_line(url: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why) as refused:
        Config(database_url=url)
    assert SECRET not in str(refused.value)


async def test_an_unreachable_database_tells_the_client_nothing_about_it(
    aiohttp_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The 503 a client gets names no host, port, user, database or driver message: those
    are for the operator's log."""
    from aiohttp import web

    from gateway.db import DatabaseUnavailable
    from gateway.db.errors import reaching
    from gateway.errors import problem_middleware

    async def handler(request: web.Request) -> web.Response:
        import sqlalchemy as sa

        with reaching(f"postgresql://dbuser:{SECRET}@db.internal:6543/phi"):
            raise sa.exc.OperationalError("SELECT 1", {}, Exception("connection refused"))

    app = web.Application(middlewares=[problem_middleware])
    app.router.add_get("/", handler)
    client = await aiohttp_client(app)
    with caplog.at_level(logging.ERROR):
        resp = await client.get("/")
    body = await resp.json()
    assert resp.status == 503 and resp.headers["Retry-After"] == "1"
    assert body["detail"] == DatabaseUnavailable.public_detail
    text = json.dumps(body)
    for secret in (SECRET, "db.internal", "6543", "phi", "dbuser", "refused"):
        assert secret not in text, secret
    logged = " ".join(str(getattr(r, "fields", "")) for r in caplog.records)
    assert "db.internal:6543/phi" in logged and SECRET not in logged
