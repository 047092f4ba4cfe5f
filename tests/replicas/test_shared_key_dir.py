"""Replicas share one key dir and may start together: each key and secret the gateway keeps
there (the log key, the attestation signing key, ``turn.secret``, ``vitals-master.key``,
``dpop-nonce.key``) must come out the same for all, and whole. A replica that read another's
half-written vitals master key would seal readings that no other replica can open; one that
kept a signing key of its own would issue tokens that no replica accepts."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from gateway.app import _secret
from gateway.auth.keys import KeyRing
from gateway.cli import _init_key_dir
from gateway.config import Config
from gateway.errors import ConfigError
from gateway.ledger_keys import load_log_key

T = TypeVar("T")


def race(fn: Callable[[int], T], n: int) -> list[T | BaseException]:
    """``fn(0)`` .. ``fn(n - 1)`` in ``n`` threads let go at the same moment: what each
    returned or raised."""
    barrier = threading.Barrier(n)
    got: list[T | BaseException] = [RuntimeError("did not run")] * n

    def start(i: int) -> None:
        barrier.wait()
        try:
            got[i] = fn(i)
        except BaseException as e:
            got[i] = e

    threads = [threading.Thread(target=start, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return got


def test_replicas_creating_a_secret_at_once_all_get_the_first_one_whole(tmp_path: Path) -> None:
    for trial in range(20):
        path = tmp_path / f"keys{trial}" / "vitals-master.key"
        got = race(lambda i, path=path: _secret(path, lambda: bytes([i + 1]) * 32), 8)
        assert not [g for g in got if isinstance(g, BaseException)], got
        assert len(set(got)) == 1, f"trial {trial}: {len(set(got))} different secrets"
        assert got[0] == path.read_bytes() and len(got[0]) == 32
        assert path.stat().st_mode & 0o777 == 0o600
        assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left


def test_an_empty_secret_file_is_refused_not_used(tmp_path: Path) -> None:
    # What a reader racing a writer that created the file but had not written it yet
    # found: it must never become the key.
    path = tmp_path / "vitals-master.key"
    path.touch(mode=0o600)
    with pytest.raises(ConfigError, match="empty"):
        _secret(path)


def serve_start(config: Config) -> tuple[str, str]:
    """What ``telegate serve`` does before its app opens the key ring, then the app's own
    ``KeyRing.open``: (the signing key it signs with, the log vkey)."""
    _init_key_dir(config)
    ring = KeyRing.open(config.key_dir / "signing", int(time.time()))
    return ring.current.kid, load_log_key(config.key_dir, config.log_origin).vkey


def test_replicas_starting_together_sign_with_one_key(tmp_path: Path) -> None:
    for trial in range(10):
        config = Config(data_dir=tmp_path / f"d{trial}", log_origin="replicas.example/log")
        got = race(lambda _, config=config: serve_start(config), 6)
        assert len(set(got)) == 1, got  # one signing key and one log key, no exception
        kid = got[0][0]  # type: ignore[index]
        on_disk = json.loads((config.key_dir / "signing" / "keys.json").read_text())
        assert [e["kid"] for e in on_disk] == [kid]  # the one keys.json names
