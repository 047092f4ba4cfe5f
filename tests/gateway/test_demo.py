"""`make demo` seeds a scenario through the real API and a simulated device posts vitals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from gateway.client import Credentials
from ledger.store import SQLiteStore
from tests.gateway.conftest import free_port


def test_the_demo_seeds_everyone_and_the_device_posts_signed_vitals(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    port = free_port()
    cmd = [sys.executable, "-m", "gateway.demo", "--data-dir", str(data), "--port", str(port)]
    out = subprocess.run(
        [*cmd, "--interval", "0.2", "--duration", "2"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    for role, page in (("patient", "/me"), ("provider", "/call/"), ("auditor", "/console")):
        line = next(x for x in text.splitlines() if x.strip().startswith(role))
        assert f"/enroll?next={page}" in line and "#demo=" in line
    scenario = json.loads((data / "demo" / "scenario.json").read_text())
    for role in ("admin", "provider", "patient", "device", "auditor"):
        creds = Credentials.load(data / "demo" / f"{role}.json")  # 0600, loadable
        assert creds.sub == scenario["ids"][role]
    store = SQLiteStore(data / "ledger.db")
    try:
        events = [json.loads(e) for e in store.read_entries(0, store.size())]
    finally:
        store.close()
    kinds = [e["type"] for e in events]
    assert kinds.count("identity.enrolled") == 7  # and a manufacturer and a distributor
    # The device's unit was commissioned, shipped and received before it enrolled with it.
    steps = [e["data"]["biz_step"] for e in events if e["type"] == "supply.event"]
    assert steps == ["commissioning", "shipping", "receiving"]
    device = next(
        e
        for e in events
        if e["type"] == "identity.enrolled" and e["actor"] == scenario["ids"]["device"]
    )
    assert "udi_commitment" in device["data"] and scenario["supply"]["udi"].endswith("DEMO-0001")
    assert "consent.granted" in kinds and "session.scheduled" in kinds
    batches = [e for e in events if e["type"] == "vitals.batch"]
    assert batches and all(e["subject"] == scenario["ids"]["patient"] for e in batches)
    assert all(e["actor"] == scenario["ids"]["device"] for e in batches)
    # A second run on the same directory reuses the scenario instead of seeding again.
    again = subprocess.run([*cmd, "--duration", "0.5"], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads((data / "demo" / "scenario.json").read_text()) == scenario


def test_the_two_demos_do_not_import_each_other() -> None:
    # Both build on gateway.demokit. The federation demo used to import the single-org one,
    # which imports it back for --two-orgs: a cycle. Now each loads without the other.
    def loaded(module: str, other: str) -> str:
        code = f"import sys, {module}; print({other!r} in sys.modules)"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    assert loaded("gateway.federation.demo", "gateway.demo") == "False"
    assert loaded("gateway.demo", "gateway.federation.demo") == "False"
