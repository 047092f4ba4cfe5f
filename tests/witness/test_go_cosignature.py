"""The witness's answers checked by an independent implementation: Go's
``golang.org/x/mod/sumdb/note`` parses the cosigned note and verifies the log signature, and
``gocosig/`` verifies the tlog-cosignature/v1 line as the C2SP text defines it.

Needs ``go`` and Debian's golang-golang-x-mod-dev, like tests/interop: skipped when they are
missing, except under CI (``CI=true``), where their absence fails the run.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from ledger.checkpoint import CosignatureSigner
from ledger.note import Signer
from tests.conftest import need
from tests.interop.test_go_interop import DEBIAN_PACKAGES, X_MOD_SUMDB, go_env

from .conftest import T0, WITNESS_NAME, Clock, History

pytestmark = pytest.mark.interop

GOCOSIG_SRC = Path(__file__).resolve().parent / "gocosig"


@pytest.fixture(scope="module")
def gocosig(tmp_path_factory: pytest.TempPathFactory) -> Path:
    go = shutil.which("go") or ("/usr/bin/go" if Path("/usr/bin/go").exists() else None)
    need(
        go is not None, f"Go interop tests need the go toolchain: apt-get install {DEBIAN_PACKAGES}"
    )
    need((X_MOD_SUMDB / "note").is_dir(), f"need golang.org/x/mod/sumdb/note: {DEBIAN_PACKAGES}")
    assert go is not None
    out = tmp_path_factory.mktemp("gocosig")
    res = subprocess.run(
        [go, "build", "-o", str(out / "gocosig"), "."],
        cwd=GOCOSIG_SRC,
        env=go_env(out / "gocache"),
        capture_output=True,
        timeout=600,
    )
    if res.returncode != 0:
        pytest.fail(f"building gocosig failed:\n{res.stderr.decode()}", pytrace=False)
    return out / "gocosig"


def go_open(exe: Path, log_vkey: str, witness_vkey: str, note: bytes) -> Any:
    res = subprocess.run(
        [str(exe), log_vkey, witness_vkey], input=note, capture_output=True, timeout=60
    )
    if res.returncode != 0:
        return res.stderr.decode()
    return json.loads(res.stdout)


async def test_go_verifies_the_cosignature(
    gocosig: Path, client: TestClient[Any, Any], history: History, clock: Clock
) -> None:
    async with client.get("/") as r:
        vkey = next(ln[5:] for ln in (await r.text()).splitlines() if ln.startswith("vkey "))
    seen = 0
    for size in (10, 11, 300):
        history.grow(size - len(history.leaves))
        clock.now = T0 + size
        async with client.post("/add-checkpoint", data=history.body(seen)) as r:
            assert r.status == 200
            lines = await r.read()
        seen = size
        cosigned = history.checkpoint() + lines
        out = go_open(gocosig, history.signer.vkey, vkey, cosigned)
        assert out == {
            "text": cosigned.split(b"\n\n")[0].decode() + "\n",
            "signers": [history.origin, WITNESS_NAME],
            "timestamp": T0 + size,
        }
        # Go rejects a tampered cosignature, and ignores the line under another witness key.
        bad = go_open(gocosig, history.signer.vkey, vkey, flip_last_signature(cosigned))
        assert "invalid signature" in bad
        other = CosignatureSigner(Signer.generate(WITNESS_NAME)).vkey
        out = go_open(gocosig, history.signer.vkey, other, cosigned)
        assert out["signers"] == [history.origin]


def flip_last_signature(note: bytes) -> bytes:
    """Change one bit of the last signature line (the cosignature), keeping it base64."""
    head, _, last = note[:-1].rpartition(b" ")
    raw = bytearray(base64.b64decode(last))
    raw[-1] ^= 1
    return head + b" " + base64.b64encode(bytes(raw)) + b"\n"
