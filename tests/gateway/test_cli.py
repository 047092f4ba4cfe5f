"""The ``telegate`` CLI: keys, export, verify, and readable errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main
from gateway.config import Config
from gateway.errors import ConfigError


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
    )


def test_keys_init_is_idempotent_and_private(tmp_path: Path) -> None:
    first = _run("keys", "init", "--data-dir", str(tmp_path))
    assert first.returncode == 0, first.stderr
    vkey = first.stdout.strip()
    assert vkey.startswith("localhost/telegate/log+")
    skey = tmp_path / "keys" / "log.skey"
    assert skey.stat().st_mode & 0o777 == 0o600
    again = _run("keys", "init", "--data-dir", str(tmp_path))
    assert again.stdout.strip() == vkey and "exists" in again.stderr
    assert _run("keys", "show", "--data-dir", str(tmp_path)).stdout.strip() == vkey


def test_key_errors_are_one_readable_line(tmp_path: Path) -> None:
    missing = _run("keys", "show", "--data-dir", str(tmp_path))
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: cannot read the log key")
    assert "Traceback" not in missing.stderr
    _run("keys", "init", "--data-dir", str(tmp_path))
    other = _run("keys", "show", "--data-dir", str(tmp_path), env={"TELEGATE_LOG_ORIGIN": "x/y"})
    assert other.returncode == 1 and "a log's origin never changes" in other.stderr
    (tmp_path / "keys" / "log.skey").chmod(0o644)
    loose = _run("keys", "show", "--data-dir", str(tmp_path))
    assert loose.returncode == 1 and "chmod 600" in loose.stderr


def test_export_and_verify_a_live_gateway(live_gateway: Any, tmp_path: Path) -> None:
    # Over HTTP while it runs, with the key pinned.
    vkey = _run(
        "keys",
        "show",
        "--data-dir",
        str(live_gateway.data_dir),
        env={"TELEGATE_LOG_ORIGIN": "live.example/telegate/log"},
    ).stdout.strip()
    over_http = _run("verify", "--quiet", "--vkey", vkey, live_gateway.url + "/ledger/")
    assert over_http.returncode == 0, over_http.stderr
    assert over_http.stdout.startswith("OK live.example/telegate/log size ")
    # Export reads without the writer lock, so it works while the gateway runs.
    out = tmp_path / "export"
    exp = _run(
        "ledger",
        "export",
        str(out),
        "--data-dir",
        str(live_gateway.data_dir),
        env={"TELEGATE_LOG_ORIGIN": "live.example/telegate/log"},
    )
    assert exp.returncode == 0, exp.stderr
    assert (out / "checkpoint").exists() and (out / "tile/entries/000.p/1").exists()
    ok = _run("verify", "--quiet", "--vkey", vkey, str(out))
    assert ok.returncode == 0, ok.stderr
    # A tampered export names the bad entry and exits non-zero.
    bundle = out / "tile/entries/000.p/1"
    data = bytearray(bundle.read_bytes())
    data[-2] ^= 1
    bundle.write_bytes(bytes(data))
    bad = _run("verify", "--quiet", "--vkey", vkey, str(out))
    assert bad.returncode == 1 and bad.stderr.startswith("FAIL entry 0:")


def test_second_gateway_on_the_same_data_is_refused(live_gateway: Any) -> None:
    second = _run(
        "serve",
        "--port",
        "1",
        "--data-dir",
        str(live_gateway.data_dir),
        env={"TELEGATE_LOG_ORIGIN": "live.example/telegate/log"},
    )
    assert second.returncode == 1
    assert "error: another process is writing" in second.stderr
    assert "Traceback" not in second.stderr


def test_verify_unreachable_url_is_an_error_not_a_trace() -> None:
    r = _run("verify", "--quiet", "--vkey", "a+00000000+AA==", "http://127.0.0.1:9/ledger/")
    assert r.returncode == 2 and r.stderr.startswith("error:")


def test_config_from_env_file_and_flags(tmp_path: Path) -> None:
    toml = tmp_path / "telegate.toml"
    toml.write_text('port = 9000\nlog_origin = "file.example/log"\nmax_body_size = 4096\n')
    env = {"TELEGATE_CONFIG": str(toml), "TELEGATE_PORT": "9100"}
    c = Config.load(env)
    assert (c.port, c.log_origin, c.max_body_size) == (9100, "file.example/log", 4096)
    assert Config.load(env, port=9200).port == 9200
    assert c.digest() != Config().digest()


@pytest.mark.parametrize(
    "env",
    [
        {"TELEGATE_PORT": "http"},
        {"TELEGATE_PORT": "0"},
        {"TELEGATE_MAX_BODY_SIZE": "10"},
        {"TELEGATE_LOG_ORIGIN": "has space"},
        {"TELEGATE_LEDGER_MAX_BATCH": "0"},
        {"TELEGATE_LOG_LEVEL": "LOUD"},
        {"TELEGATE_CONFIG": "/nonexistent.toml"},
    ],
)
def test_bad_config_is_refused(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        Config.load(env)


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b'log_origin = "gw.ex\xe5mple/log"\n', id="not-utf8"),
        pytest.param(b"port = inf\n", id="infinite-int"),
        pytest.param(b"port = nan\n", id="nan-int"),
        pytest.param(b"port = true\n", id="bool-for-int"),
        pytest.param(b'host = ["127.0.0.1"]\n', id="list-for-str"),
        pytest.param(b"host = { a = 1 }\n", id="table-for-str"),
    ],
)
def test_bad_values_in_file_are_config_errors(tmp_path: Path, content: bytes) -> None:
    """Found by fuzz/config.py: a file that is not UTF-8 or a TOML ``inf`` for an integer
    came out as a traceback, and a list or a boolean was coerced into a setting."""
    toml = tmp_path / "t.toml"
    toml.write_bytes(content)
    with pytest.raises(ConfigError):
        Config.load({"TELEGATE_CONFIG": str(toml)})


def test_unknown_setting_in_file(tmp_path: Path) -> None:
    toml = tmp_path / "t.toml"
    toml.write_text("prot = 1\n")
    with pytest.raises(ConfigError, match="unknown settings: prot"):
        Config.load({"TELEGATE_CONFIG": str(toml)})


def test_main_returns_error_code_for_bad_port(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "show", "--data-dir", "/nonexistent-telegate"]) == 1
    assert capsys.readouterr().err.startswith("error:")


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "10.1.2.3", "gw.internal", "2001:db8::1"])
def test_serving_beyond_loopback_needs_a_public_url(host: str) -> None:
    # Without it, token iss/aud and DPoP htu would follow whatever Host a client sends.
    with pytest.raises(ConfigError, match="TELEGATE_PUBLIC_URL"):
        Config(host=host).check_serving()
    Config(host=host, public_url="https://gw.example").check_serving()


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "localhost", "LOCALHOST"])
def test_serving_on_loopback_needs_no_public_url(host: str) -> None:
    Config(host=host).check_serving()


def test_serve_refuses_to_start_beyond_loopback_without_a_public_url(tmp_path: Path) -> None:
    env = {"TELEGATE_PUBLIC_URL": "", "TELEGATE_DATA_DIR": str(tmp_path / "d")}
    r = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--host", "0.0.0.0", "--port", "9"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**os.environ, **env},
    )
    assert r.returncode == 1, r.stderr
    (line,) = r.stderr.splitlines()
    assert line.startswith("error: ") and "TELEGATE_PUBLIC_URL" in line
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert not (tmp_path / "d").exists()  # refused before creating anything
