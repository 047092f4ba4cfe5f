"""Every RFC 6962 vector in tests/vectors/rfc6962 (transparency-dev/merkle testdata)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from ledger.errors import InvalidProof
from ledger.merkle import verify_consistency, verify_inclusion
from tests.conftest import VECTORS

RFC6962 = VECTORS / "rfc6962"


def _load(kind: str) -> list[Any]:
    files = sorted((RFC6962 / kind).rglob("*.json"))
    assert files, f"no vectors under {RFC6962 / kind}"
    return [pytest.param(json.loads(f.read_text()), id=str(f.relative_to(RFC6962))) for f in files]


def _b(s: str | None) -> bytes:
    return base64.b64decode(s) if s else b""


def _proof(v: dict[str, Any]) -> list[bytes]:
    return [_b(p) for p in v["proof"] or []]


@pytest.mark.parametrize("v", _load("inclusion"))
def test_inclusion_vector(v: dict[str, Any]) -> None:
    args = (v["leafIdx"], v["treeSize"], _b(v["leafHash"]), _proof(v), _b(v["root"]))
    if v["wantErr"]:
        with pytest.raises(InvalidProof):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("v", _load("consistency"))
def test_consistency_vector(v: dict[str, Any]) -> None:
    args = (v["size1"], v["size2"], _b(v["root1"]), _b(v["root2"]), _proof(v))
    if v["wantErr"]:
        with pytest.raises(InvalidProof):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def test_vector_counts() -> None:
    # Guard against a silently emptied vector directory.
    assert len(list((RFC6962 / "inclusion").rglob("*.json"))) > 50
    assert len(list((RFC6962 / "consistency").rglob("*.json"))) > 50


def test_vectors_are_inside_the_repository() -> None:
    # A fresh clone has nothing beside it: the vectors live in the repository itself.
    repo = Path(__file__).resolve().parents[2]
    assert repo / "tests" / "vectors" == VECTORS and VECTORS.is_relative_to(repo)
    assert (VECTORS / "README.md").is_file()
    assert (RFC6962 / "LICENSE-Apache-2.0").is_file()
