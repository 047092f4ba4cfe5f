"""Files replaced or created in place (export tiles and checkpoint, keys.json and key
files, secrets) reach the disk before their names do (ledger.atomic): each file is fsynced
before the rename or link that publishes it, and its directory after. A power cut cannot be
simulated in a test; the order of the real calls that decide what survives one can be
recorded, and that is what these tests check, on real files."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.auth.keys import KeyRing
from gateway.config import Config
from ledger import atomic
from ledger.export import export_log
from ledger.store import SQLiteStore
from tests.faults.conftest import ORIGIN, verify
from tests.faults.test_kill9 import grow


class Calls:
    """The fsync, rename and link calls made, in order, with the paths they were on."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.seen: list[tuple[str, str]] = []
        real_fsync, real_replace, real_link = os.fsync, os.replace, os.link

        def fsync(fd: int) -> None:
            self.seen.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
            real_fsync(fd)

        def replace(src: str, dst: str) -> None:
            self.seen.append(("rename", f"{src} -> {dst}"))
            real_replace(src, dst)

        def link(src: str, dst: str) -> None:
            self.seen.append(("link", f"{src} -> {dst}"))
            real_link(src, dst)

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", replace)
        monkeypatch.setattr(os, "link", link)

    def at(self, kind: str, path: str | Path) -> int:
        """Index of the first ``kind`` call on ``path`` (the target of a rename or link)."""
        for i, (k, p) in enumerate(self.seen):
            if k == kind and (p == str(path) or p.endswith(f" -> {path}")):
                return i
        raise AssertionError(f"no {kind} of {path}: {self.seen}")

    def published(self, path: Path) -> None:
        """``path`` was renamed or linked into place after an fsync of the file it came
        from, and its directory was fsynced after that."""
        i = next(
            (
                j
                for j, (k, p) in enumerate(self.seen)
                if k in ("rename", "link") and p.endswith(f" -> {path}")
            ),
            None,
        )
        assert i is not None, f"{path} was not published: {self.seen}"
        src = self.seen[i][1].split(" -> ")[0]
        synced = [j for j, (k, p) in enumerate(self.seen[:i]) if k == "fsync" and p == src]
        assert synced, f"{src} renamed to {path} without an fsync: {self.seen}"
        after = [j for j, (k, p) in enumerate(self.seen) if j > i and k == "fsync"]
        assert any(self.seen[j][1] == str(path.parent) for j in after), (path, self.seen)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[Calls]:
    yield Calls(monkeypatch)


def test_write_atomic_syncs_file_then_renames_then_syncs_dir(tmp_path: Path, calls: Calls) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")
    atomic.write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    calls.published(target)
    assert os.listdir(tmp_path) == ["f"]  # no temporary file left


def test_write_atomic_failure_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")

    def broken(src: str, dst: str) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError):
        atomic.write_atomic(target, b"new")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f"]


def test_create_exclusive_once_whole_and_synced(tmp_path: Path, calls: Calls) -> None:
    path = tmp_path / "secret"
    assert atomic.create_exclusive(path, b"first", 0o600)
    calls.published(path)
    assert not atomic.create_exclusive(path, b"second", 0o600)
    assert path.read_bytes() == b"first"
    assert path.stat().st_mode & 0o777 == 0o600
    assert os.listdir(tmp_path) == ["secret"]


def test_export_syncs_every_tile_and_directory_before_the_checkpoint(
    tmp_path: Path, calls: Calls
) -> None:
    data, out = tmp_path / "data", tmp_path / "export"
    grow(data, 600)  # more than two full tiles, and a partial one
    store = SQLiteStore(Config(data_dir=data, log_origin=ORIGIN).db_path, writer=False)
    try:
        export_log(store, out)
    finally:
        store.close()
    checkpoint = calls.at("rename", out / "checkpoint")
    files = [p for p in out.rglob("*") if p.is_file() and p.name != "checkpoint"]
    assert len(files) > 4
    for f in files:  # each tile and bundle: its own fsync before its rename
        rename = calls.at("rename", f)
        assert rename < checkpoint
        src = calls.seen[rename][1].split(" -> ")[0]
        assert any(k == "fsync" and p == src for k, p in calls.seen[:rename]), f
    # Every directory holding a tile, and each one above up to the export's parent, is
    # synced before the checkpoint names what is in them.
    dirs = {f.parent for f in files} | {out, out.parent}
    for f in files:
        dirs |= {p for p in f.parents if len(p.parts) > len(out.parent.parts)}
    for d in dirs:
        assert calls.at("fsync", d) < checkpoint, d
    calls.published(out / "checkpoint")
    (out / "vkey").write_text((data / "keys" / "log.vkey").read_text())
    verify(out)


def test_key_rotation_syncs_the_key_before_keys_json(tmp_path: Path, calls: Calls) -> None:
    ring = KeyRing.open(tmp_path / "signing", int(time.time()))
    key = ring.rotate(int(time.time()))
    pem = tmp_path / "signing" / f"{key.kid}.pem"
    calls.published(pem)
    calls.published(tmp_path / "signing" / "keys.json")
    # The new key is durable before the index that names it is published.
    assert calls.at("link", pem) < max(
        i for i, (k, p) in enumerate(calls.seen) if k == "rename" and p.endswith("keys.json")
    )
    assert pem.stat().st_mode & 0o777 == 0o600
