"""``database_url``: PostgreSQL only, unset by default, and its password never shown."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app
from gateway.config import Config
from gateway.db import Database
from gateway.errors import ConfigError

URL = "postgresql://telegate:hunter2@db.internal:5432/telegate"


def test_unset_means_the_embedded_sqlite_files() -> None:
    assert Config().database_url is None
    assert Config.load({}).database_url is None
    assert Config.load({"TELEGATE_DATABASE_URL": ""}).database_url is None
    assert Database.from_config(Config()).embedded


def test_env_toml_and_flag_select_postgresql(tmp_path: object) -> None:
    assert Config.load({"TELEGATE_DATABASE_URL": URL}).database_url == URL
    assert Config.load({}, database_url=URL).database_url == URL
    assert not Database.from_config(Config(database_url=URL)).embedded


@pytest.mark.parametrize(
    "bad",
    [
        "sqlite:///x.db",
        "mysql://u@h/db",
        "not a url",
        "postgresql+asyncpg://u@h/db",
        "postgresql://u@h:port/db",
        "postgresql://u@h:5432",
    ],
)
def test_anything_but_postgresql_is_refused_without_echoing_a_password(bad: str) -> None:
    with pytest.raises(ConfigError, match="database_url") as e:
        Config(database_url=bad.replace("//", "//u:hunter2@", 1) if "//" in bad else bad)
    assert "hunter2" not in str(e.value)


def test_reading_the_config_does_not_load_the_database_layer() -> None:
    import subprocess
    import sys

    code = "import sys, gateway.config; print('sqlalchemy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # every CLI command would pay for it otherwise


def test_the_password_is_in_no_digest_repr_or_description() -> None:
    a = Config(database_url=URL)
    b = Config(database_url=URL.replace("hunter2", "other-secret"))
    assert a.digest() == b.digest()  # the digest does not depend on the password
    assert a.digest() != Config(database_url=URL.replace("db.internal", "db2")).digest()
    assert a.digest() != Config().digest()
    for shown in (repr(a), Database.from_config(a).describe()):
        assert "hunter2" not in shown and "db.internal" in shown
    c = Config(database_url="postgresql://u@db.internal/t?sslmode=require&password=hunter2")
    assert "hunter2" not in repr(c) and "sslmode=require" in repr(c)
    assert c.digest() == Config(database_url=c.database_url.replace("hunter2", "x")).digest()


async def test_the_password_reaches_no_log_metric_event_or_file(
    tmp_path: Path, pg_url: str, aiohttp_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # The test server trusts loopback, so any password connects: a marker to look for.
    url = pg_url.replace("postgresql://postgres@", "postgresql://postgres:hunter2@", 1)
    assert "hunter2" in url
    db = Database(tmp_path / "data", url)
    db.upgrade()
    db.close()
    caplog.set_level(logging.DEBUG)
    client = await aiohttp_client(create_app(Config(data_dir=tmp_path / "data", database_url=url)))
    metrics = await (await client.get("/metrics")).text()
    await client.close()  # records gateway.stopped and closes the ledger
    assert "hunter2" not in metrics
    logged = "\n".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records)
    assert "hunter2" not in logged and "postgres:***@" in logged  # the structured fields too
    for f in (tmp_path / "data").rglob("*"):
        if f.is_file():
            assert b"hunter2" not in f.read_bytes(), f  # the ledger's gateway.started too
