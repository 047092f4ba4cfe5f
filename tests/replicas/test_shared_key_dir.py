"""Replicas share one key dir and may start together: each secret the gateway keeps there
(``turn.secret``, ``vitals-master.key``, ``dpop-nonce.key``) must come out the same for all,
and whole. A replica that read another's half-written vitals master key would seal
readings that no other replica can open."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from gateway.app import _secret
from gateway.errors import ConfigError


def race(path: Path, n: int) -> list[bytes | BaseException]:
    """``n`` threads reading (creating) the secret at ``path`` at the same moment."""
    barrier = threading.Barrier(n)
    got: list[bytes | BaseException] = [b""] * n

    def start(i: int) -> None:
        barrier.wait()
        try:
            got[i] = _secret(path, lambda: bytes([i + 1]) * 32)
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
        got = race(path, 8)
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
