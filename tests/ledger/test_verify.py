"""Offline verification of whole logs (directory and CLI), receipts and checkpoint chains."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.errors import InvalidProof, VerificationFailed
from ledger.export import export_log
from ledger.log import Log
from ledger.note import Signer
from ledger.store import SQLiteStore
from ledger.verify import DirSource, verify_checkpoint_consistency, verify_log

SIZE = 256 * 256 + 300  # two tile levels, full and partial tiles on both


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Signer, Log]]:
    d = tmp_path_factory.mktemp("log")
    signer = Signer.generate("verify.example/log")
    log = Log(SQLiteStore(d / "log.db"), signer)
    log.start()
    for chunk in range(0, SIZE, 10_000):
        futs = [log.submit(f"entry {i}".encode()) for i in range(chunk, min(SIZE, chunk + 10_000))]
        for f in futs:
            f.result()
    export_log(log.store, d / "out")
    (d / "out" / "vkey").write_text(signer.vkey)
    yield d / "out", signer, log
    log.close()


@pytest.fixture
def copy(exported: tuple[Path, Signer, Log], tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(exported[0], dst)
    return dst


def _flip(path: Path, offset: int) -> None:
    b = bytearray(path.read_bytes())
    b[offset] ^= 0x01
    path.write_bytes(bytes(b))


@pytest.mark.parametrize("workers", [1, 2])
def test_whole_log_verifies(exported: tuple[Path, Signer, Log], workers: int) -> None:
    out, signer, _ = exported
    seen: list[int] = []
    cp = verify_log(
        DirSource(out), signer.verifier, progress=lambda d, t: seen.append(d), workers=workers
    )
    assert cp.size == SIZE
    assert seen[-1] == SIZE


@pytest.mark.parametrize(
    ("target", "offset", "where"),
    [
        ("tile/entries/005", 40, "entry 1283"),
        ("tile/entries/257.p/44", 2, "entry 65792"),
        ("tile/0/007", 32 * 3, "tile/0/007"),
        ("tile/0/257.p/44", 0, "tile/0/257.p/44"),
        ("tile/1/000", 32 * 200, "tile/1/000"),
        ("tile/1/001.p/1", 5, "tile/1/001.p/1"),
        ("checkpoint", 30, "checkpoint"),
    ],
)
def test_tampering_names_the_first_bad_object(
    exported: tuple[Path, Signer, Log], copy: Path, target: str, offset: int, where: str
) -> None:
    _, signer, _ = exported
    _flip(copy / target, offset)
    with pytest.raises(VerificationFailed) as e:
        verify_log(DirSource(copy), signer.verifier)
    assert e.value.where == where


def test_worker_processes_name_the_same_first_bad_object(
    exported: tuple[Path, Signer, Log], copy: Path
) -> None:
    _, signer, _ = exported
    _flip(copy / "tile/entries/100", 3)
    _flip(copy / "tile/entries/200", 3)
    _flip(copy / "tile/0/150", 3)
    for workers in (1, 2):
        with pytest.raises(VerificationFailed) as e:
            verify_log(DirSource(copy), signer.verifier, workers=workers)
        assert e.value.where == "tile/0/150"
    (copy / "tile/0/150").unlink()
    shutil.copy(exported[0] / "tile/0/150", copy / "tile/0/150")
    with pytest.raises(VerificationFailed) as e:
        verify_log(DirSource(copy), signer.verifier, workers=2)
    assert e.value.where == "entry 25600"


def test_missing_tile_and_wrong_key(exported: tuple[Path, Signer, Log], copy: Path) -> None:
    _, signer, _ = exported
    (copy / "tile/0/003").unlink()
    with pytest.raises(VerificationFailed) as e:
        verify_log(DirSource(copy), signer.verifier)
    assert e.value.where == "tile/0/003"
    with pytest.raises(VerificationFailed) as e:
        verify_log(DirSource(copy), Signer.generate("verify.example/log").verifier)
    assert e.value.where == "checkpoint"


def test_checkpoint_consistency_and_fork_detection(tmp_path: Path) -> None:
    signer = Signer.generate("fork.example/log")
    a = Log(SQLiteStore(tmp_path / "a.db"), signer)
    b = Log(SQLiteStore(tmp_path / "b.db"), signer)
    a.start()
    b.start()
    try:
        for i in range(10):
            a.append_sync(f"e{i}".encode())
            b.append_sync(f"e{i}".encode())
        old = a.checkpoint()
        a.append_sync(b"honest")
        b.append_sync(b"forked")
        verify_checkpoint_consistency(
            old, a.checkpoint(), a.consistency_proof(10, 11), signer.verifier
        )
        # Same key, two histories: the fork's checkpoint is not consistent with the honest one.
        with pytest.raises(InvalidProof, match="not consistent"):
            verify_checkpoint_consistency(
                a.checkpoint(), b.checkpoint(), b.consistency_proof(11, 11), signer.verifier
            )
        with pytest.raises(InvalidProof):
            verify_checkpoint_consistency(
                old, b.checkpoint(), a.consistency_proof(10, 11), signer.verifier
            )
    finally:
        a.close()
        b.close()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ledger", "verify", "--quiet", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_cli_verify(exported: tuple[Path, Signer, Log], copy: Path) -> None:
    out, signer, _ = exported
    ok = _cli("--vkey", signer.vkey, str(out))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"OK verify.example/log size {SIZE} ")
    _flip(copy / "tile/entries/010", 7)
    bad = _cli("--vkey", signer.vkey, str(copy))
    assert bad.returncode == 1
    assert "FAIL entry 2560" in bad.stderr
    nokey = _cli("--vkey", "garbage", str(out))
    assert nokey.returncode == 2 and nokey.stderr.startswith("error:")
