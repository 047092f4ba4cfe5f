"""The atheris harnesses of ``fuzz/``: each property holds on every committed corpus input
(seeds and the inputs of crashes fixed since), and each harness really fuzzes, for a
moment, from its corpus. ``make fuzz`` runs them for longer."""

from __future__ import annotations

import base64
import importlib
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import ROOT

FUZZ = ROOT / "fuzz"
CORPUS = FUZZ / "corpus"
HARNESSES = sorted(
    p.stem for p in FUZZ.glob("*.py") if not p.stem.startswith("_") and p.stem != "seeds"
)


def harness(name: str) -> ModuleType:
    return importlib.import_module(f"fuzz.{name}")


def corpus(name: str) -> list[Path]:
    return sorted(p for p in (CORPUS / name).iterdir() if p.is_file())


def test_every_harness_has_a_corpus_and_every_corpus_a_harness() -> None:
    assert len(HARNESSES) >= 15
    assert sorted(p.name for p in CORPUS.iterdir() if p.is_dir()) == HARNESSES


def test_the_seed_corpus_is_what_seeds_py_writes() -> None:
    """The seeds are signed with fixed keys: regenerating them changes nothing, so the
    corpus stays reviewable and its signatures stay valid."""
    from fuzz.seeds import seeds

    for name, files in seeds().items():
        for file, data in files.items():
            assert (CORPUS / name / file).read_bytes() == data, f"{name}/{file}"


@pytest.mark.parametrize("name", HARNESSES)
def test_the_property_holds_on_every_corpus_input(name: str) -> None:
    check = harness(name).check
    inputs = corpus(name)
    assert any(p.name.startswith("seed-") for p in inputs)
    for path in inputs:
        check(path.read_bytes())


@pytest.mark.parametrize("name", HARNESSES)
def test_the_harness_fuzzes_from_its_corpus(name: str, tmp_path: Path) -> None:
    # New inputs go to tmp_path (the first directory), never into the committed corpus;
    # -runs bounds a fast harness, -max_total_time a slow one.
    r = subprocess.run(
        [
            sys.executable,
            str(FUZZ / f"{name}.py"),
            "-runs=500",
            "-max_total_time=2",
            f"-artifact_prefix={tmp_path}/",
            str(tmp_path),
            str(CORPUS / name),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Done" in r.stderr and "INITED" in r.stderr


def test_a_broken_property_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The harnesses can fail: with the lax base64 decoder the note parser had before, the
    round trip of the crash input found by fuzz/note.py breaks again."""
    import ledger.note

    monkeypatch.setattr(ledger.note, "_b64decode", lambda s: base64.b64decode(s, validate=True))
    with pytest.raises(AssertionError):
        harness("note").check((CORPUS / "note" / "crash-excess-padding").read_bytes())
