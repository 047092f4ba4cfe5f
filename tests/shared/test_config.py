"""``redis_url``: read from env, TOML and ``serve --redis-url``, checked, and its password
kept out of the repr, the config digest and ``gateway.started``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app
from gateway.appkeys import AUTHORITY, TICKETS
from gateway.auth.dpop import ReplayCache
from gateway.cli import _config, _parser
from gateway.config import Config
from gateway.errors import ConfigError
from gateway.sessions.signalling import LocalTickets
from gateway.shared import REDIS, RedisReplays, RedisTickets
from tests.shared.conftest import RedisServer

SECRET = "s3cr3t-pw"


def test_unset_by_default_and_read_from_env_toml_and_the_serve_flag(tmp_path: Path) -> None:
    assert Config().redis_url is None
    url = "redis://127.0.0.1:6390/2"
    assert Config.load({"TELEGATE_REDIS_URL": url}).redis_url == url
    assert Config.load({"TELEGATE_REDIS_URL": ""}).redis_url is None  # empty means unset
    toml = tmp_path / "t.toml"
    toml.write_text(f'redis_url = "{url}"\n')
    assert Config.load({"TELEGATE_CONFIG": str(toml)}).redis_url == url
    args = _parser().parse_args(["serve", "--redis-url", "rediss://h.example:6380/0"])
    assert _config(args).redis_url == "rediss://h.example:6380/0"


@pytest.mark.parametrize(
    "url",
    ["postgresql://h/db", "http://h:6379", "redis://", "redis://h:port/0", "unix://", "h:6379"],
)
def test_anything_but_a_redis_url_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="redis_url"):
        Config(redis_url=url)


@pytest.mark.parametrize(
    "url", ["redis://h:6379/0", "rediss://u:p@h.example:6380/1", "unix:///run/redis.sock"]
)
def test_redis_rediss_and_unix_urls_are_taken(url: str) -> None:
    assert Config(redis_url=url).redis_url == url


def test_a_refused_url_shows_no_password() -> None:
    with pytest.raises(ConfigError) as e:
        Config(redis_url=f"redis://:{SECRET}@h:port/0")
    assert SECRET not in str(e.value)


def test_the_password_is_in_neither_repr_nor_digest() -> None:
    a = Config(redis_url=f"redis://:{SECRET}@127.0.0.1:6379/0")
    b = Config(redis_url="redis://:another@127.0.0.1:6379/0")
    assert SECRET not in repr(a) and "redis://:***@127.0.0.1:6379/0" in repr(a)
    # Another password, the same settings; another host, other settings.
    assert a.digest() == b.digest()
    assert a.digest() != Config(redis_url="redis://:x@127.0.0.2:6379/0").digest()


async def test_the_default_keeps_everything_in_process(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await aiohttp_client(create_app(Config(data_dir=tmp_path / "data")))
    app = client.server.app
    assert REDIS not in app
    assert isinstance(app[AUTHORITY].replay, ReplayCache)
    assert isinstance(app[TICKETS], LocalTickets)


async def test_with_redis_the_shared_structures_are_used_and_started_names_no_password(
    aiohttp_client: Any, tmp_path: Path, redis_server: RedisServer
) -> None:
    config = Config(data_dir=tmp_path / "data", redis_url=redis_server.url)
    client = await aiohttp_client(create_app(config))
    app = client.server.app
    assert isinstance(app[AUTHORITY].replay, RedisReplays)
    assert isinstance(app[TICKETS], RedisTickets)
    assert await app[REDIS].ping()
    started = await (await client.get("/ledger/entries/0")).json()
    assert started["event"]["type"] == "gateway.started"
    assert started["event"]["data"]["config_sha256"] == config.digest()
    hidden = Config(data_dir=tmp_path / "data", redis_url=f"redis://:{SECRET}@h:1/0")
    assert SECRET not in repr(hidden) and SECRET not in str(hidden.digest())
