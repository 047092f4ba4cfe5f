"""`telegate enroll` and `telegate audit` against a live gateway: every proof verified with
the pinned key, and a forked or tampered answer refused with a clear message."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.audit.check import AuditCheckFailed, check_page
from ledger.log import Log
from ledger.note import Signer, Verifier
from ledger.store import SQLiteStore

ENV = {"TELEGATE_LOG_ORIGIN": "live.example/telegate/log"}


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **ENV},
    )


def _auditor(gw: Any, tmp_path: Path) -> Path:
    inv = _cli("invite", "auditor", "--data-dir", str(gw.data_dir))
    assert inv.returncode == 0, inv.stderr
    creds = tmp_path / "auditor.json"
    en = _cli("enroll", "--server", gw.url, "--invite", inv.stdout.strip(), "--out", str(creds))
    assert en.returncode == 0, en.stderr
    assert creds.stat().st_mode & 0o777 == 0o600
    return creds


def test_audit_verifies_and_remembers_the_checkpoint(live_gateway: Any, tmp_path: Path) -> None:
    creds = _auditor(live_gateway, tmp_path)
    first = _cli("audit", "--credentials", str(creds), "--format", "csv")
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[0] == "index,time,type,actor,subject,session"
    assert "gateway.started" in first.stdout and "identity.enrolled" in first.stdout
    assert first.stderr.startswith("verified ")
    seen = creds.with_suffix(".seen")
    assert seen.exists()
    fhir = _cli("audit", "--credentials", str(creds), "--format", "fhir")
    assert fhir.returncode == 0, fhir.stderr
    from fhir.resources.R4B.bundle import Bundle

    assert Bundle.model_validate_json(fhir.stdout).entry
    # Again: the new checkpoint must be consistent with the remembered one.
    again = _cli("audit", "--credentials", str(creds), "--type", "audit.query")
    assert again.returncode == 0, again.stderr
    assert "audit.query" in again.stdout


def test_a_forked_log_is_refused(live_gateway: Any, tmp_path: Path) -> None:
    creds = _auditor(live_gateway, tmp_path)
    # A second history under the same log key (an operator with the key could do this).
    signer = Signer.from_skey((live_gateway.data_dir / "keys" / "log.skey").read_text())
    fork = Log(SQLiteStore(tmp_path / "fork.db"), signer)
    fork.start()
    for i in range(2):
        fork.append_sync(f"forged history {i}".encode())
    creds.with_suffix(".seen").write_bytes(fork.checkpoint())
    fork.close()
    r = _cli("audit", "--credentials", str(creds))
    assert r.returncode == 1
    assert r.stderr.startswith("error: checkpoint") and "fork" in r.stderr
    assert "Traceback" not in r.stderr


def test_wrong_pinned_key_is_refused(live_gateway: Any, tmp_path: Path) -> None:
    creds = _auditor(live_gateway, tmp_path)
    other = Signer.generate("live.example/telegate/log").vkey
    r = _cli("audit", "--credentials", str(creds), "--vkey", other)
    assert r.returncode == 1 and "checkpoint does not verify" in r.stderr


@pytest.fixture
def served_page(tmp_path: Path) -> tuple[dict[str, Any], Verifier]:
    import base64

    import rfc8785

    from ledger.merkle import inclusion_proofs_for

    signer = Signer.generate("t.example/log")
    log = Log(SQLiteStore(tmp_path / "l.db"), signer)
    log.start()
    events = [
        {
            "v": 1,
            "type": "audit.query",
            "actor": f"aud:{i}",
            "time": "2026-01-01T00:00:00.000Z",
            "data": {},
        }
        for i in range(5)
    ]
    for ev in events:
        log.append_sync(rfc8785.dumps(ev))
    proofs = inclusion_proofs_for([1, 3], 5, log.store.read_nodes)
    from ledger.merkle import leaf_hash

    rows = [
        {
            "index": i,
            "event": events[i],
            "leaf_hash": base64.b64encode(leaf_hash(rfc8785.dumps(events[i]))).decode(),
            "inclusion_proof": [base64.b64encode(h).decode() for h in p],
        }
        for i, p in zip([1, 3], proofs, strict=True)
    ]
    page = {"checkpoint": log.checkpoint().decode(), "size": 5, "rows": rows, "next": None}
    log.close()
    return page, signer.verifier


def test_check_page_accepts_an_honest_page(served_page: tuple[dict[str, Any], Verifier]) -> None:
    page, vkey = served_page
    assert check_page(page, vkey).size == 5


@pytest.mark.parametrize("tamper", ["event", "proof", "index", "size", "checkpoint"])
def test_check_page_refuses_a_tampered_answer(
    served_page: tuple[dict[str, Any], Verifier], tamper: str
) -> None:
    page, vkey = served_page
    bad = copy.deepcopy(page)
    row = bad["rows"][0]
    if tamper == "event":
        row["event"]["actor"] = "aud:someone-else"
    elif tamper == "proof":
        row["inclusion_proof"][0] = row["inclusion_proof"][1]
    elif tamper == "index":
        row["index"] = 2
    elif tamper == "size":
        bad["size"] = 6
    else:
        bad["checkpoint"] = bad["checkpoint"].replace("\n5\n", "\n6\n")
    with pytest.raises(AuditCheckFailed):
        check_page(bad, vkey)


def test_check_page_reads_the_old_spelling_of_the_proof(
    served_page: tuple[dict[str, Any], Verifier],
) -> None:
    """A page saved from a gateway before 0.2.0 named the path ``proof``
    (docs/api-changes.md): it still checks, and a tampered one still fails."""
    page, vkey = served_page
    old = copy.deepcopy(page)
    for row in old["rows"]:
        row["proof"] = row.pop("inclusion_proof")
    assert check_page(old, vkey).size == 5
    old["rows"][0]["proof"][0] = old["rows"][0]["proof"][1]
    with pytest.raises(AuditCheckFailed):
        check_page(old, vkey)


def test_invite_codes_never_look_like_options() -> None:
    from gateway.auth.enroll import new_code

    codes = [new_code() for _ in range(2000)]
    assert not any(c.startswith("-") for c in codes)
    assert len(set(codes)) == len(codes)
