"""``make demo-two-orgs`` (``python -m gateway.demo --two-orgs``) runs briefly: two gateways
that witness each other, B's provider accepted at A, a call scheduled through A."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from gateway.client import Credentials
from gateway.federation import local_subject_id
from ledger.store import SQLiteStore
from tests.gateway.conftest import free_port


def _events(data: Path) -> list[dict[str, Any]]:
    store = SQLiteStore(data / "ledger.db", writer=False)
    try:
        return [json.loads(e) for e in store.read_entries(0, store.size())]
    finally:
        store.close()


def test_the_two_organization_demo(tmp_path: Path) -> None:
    root, a_port, b_port = tmp_path / "demo", free_port(), free_port()
    cmd = [sys.executable, "-m", "gateway.demo", "--two-orgs", "--data-dir", str(root)]
    cmd += ["--port", str(a_port), "--port-b", str(b_port), "--interval", "0.2"]
    out = subprocess.run([*cmd, "--duration", "2"], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    a_url, b_url = f"http://127.0.0.1:{a_port}", f"http://127.0.0.1:{b_port}"
    scenario = json.loads((root / "demo" / "scenario.json").read_text())
    ids, sid = scenario["ids"], scenario["session"]
    local = local_subject_id(b_url, ids["b-provider"])
    assert scenario["provider_at_a"] == local
    text = out.stdout
    assert f"/enroll?next=/call/{sid}#demo=" in text and "/enroll?next=/console#demo=" in text
    client = f"--credentials {root}/demo/b-provider.json --at {a_url}"
    assert f"python -m gateway.federation.client {client} POST /v1/sessions/{sid}/admit" in text
    for role in ids:
        assert Credentials.load(root / "demo" / f"{role}.json").sub == ids[role]

    a_events, b_events = _events(root / "a"), _events(root / "b")
    (accepted,) = [e for e in a_events if e["type"] == "federation.accepted"]
    assert accepted["subject"] == local and accepted["data"]["foreign_sub"] == ids["b-provider"]
    assert accepted["data"]["checkpoint"]["cosigned_by"] == ["hospital-a.localhost/witness"]
    (scheduled,) = [e for e in a_events if e["type"] == "session.scheduled"]
    assert (scheduled["actor"], scheduled["session"]) == (local, sid)
    assert any(e["type"] == "vitals.batch" for e in a_events)
    issued = [e for e in b_events if e["type"] == "attestation.issued" and "aud" in e["data"]]
    assert issued and issued[0]["data"]["aud"] == [b_url, a_url]
    assert not [e for e in a_events + b_events if e["type"] == "witness.alarm"]

    # Again on the same directory: the scenario is reused, nothing is seeded twice.
    again = subprocess.run([*cmd, "--duration", "0.5"], capture_output=True, text=True, timeout=180)
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads((root / "demo" / "scenario.json").read_text()) == scenario
    assert len([e for e in _events(root / "a") if e["type"] == "federation.accepted"]) == 1
