"""``make demo-two-orgs``: two organizations that witness each other and trust each other's
providers (``python -m gateway.demo --two-orgs``).

Hospital A (``--port``) and clinic B (``--port-b``) each run ``telegate serve``. Each hosts
a witness for the other's log and submits its own checkpoints to the other's; each trust
list names the other, with its signing keys pinned, and requires the other's checkpoints to
be cosigned by its own witness. Seeded through the real APIs: at A an admin, a patient with
a monitoring device, and an auditor; at B an admin and a provider. B's provider is accepted
at A by token exchange, A's patient consents to it by its id at A, and it schedules a call
with the patient through A. Then A's device posts vitals until stopped. Re-running on the
same directory reuses everything.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..auth.keys import KeyRing
from ..client import Credentials, Session, enroll
from ..demokit import NPI, browser_link, local_invite, post_vitals, wait_ready
from ..ledger_keys import init_log_key
from ..witness.keys import init_witness_key
from .client import FederatedSession

__all__ = ["run"]


@dataclass(frozen=True, slots=True)
class Org:
    key: str  # "a" or "b": its directory
    name: str
    data: Path
    url: str
    port: int

    @property
    def origin(self) -> str:
        return f"{self.name}.localhost/telegate/log"

    @property
    def witness(self) -> str:
        return f"{self.name}.localhost/witness"


def _keys(org: Org) -> tuple[str, str]:
    """Create the org's log, witness and signing keys if absent; its log and witness vkeys."""
    log = init_log_key(org.data / "keys", org.origin)[0].vkey
    witness = init_witness_key(org.data / "witness" / "witness.skey", org.witness)[0].vkey
    KeyRing.open(org.data / "keys" / "signing", int(time.time()))
    return log, witness


def _configure(me: Org, peer: Org, vkeys: dict[str, tuple[str, str]]) -> Path:
    """Write ``me``'s witness config, trust list and gateway config; the last one's path."""
    peer_log, peer_witness = vkeys[peer.key]
    (me.data / "witness.toml").write_text(
        f'name = "{me.witness}"\ndata_dir = "witness"\n\n'
        f'[[logs]]\norigin = "{peer.origin}"\nvkey = "{peer_log}"\n'
    )
    jwks = me.data / f"{peer.key}.jwks.json"
    ring = KeyRing.open(peer.data / "keys" / "signing", int(time.time()))
    jwks.write_text(json.dumps(ring.jwks(int(time.time())), indent=1))
    (me.data / "trust.toml").write_text(
        f'[[peers]]\nname = "{peer.name}"\nissuer = "{peer.url}"\nlog_vkey = "{peer_log}"\n'
        f'witnesses = ["{vkeys[me.key][1]}"]  # our own witness of its log\n'
        f'min_witnesses = 1\njwks_file = "{jwks.name}"\n'
    )
    config = me.data / "telegate.toml"
    config.write_text(
        f'log_origin = "{me.origin}"\npublic_url = "{me.url}"\n'
        f'witness_config = "{(me.data / "witness.toml").resolve()}"\n'
        f'trust_file = "{(me.data / "trust.toml").resolve()}"\n\n'
        f'[[witnesses]]\nurl = "{peer.url}/witness"\nvkey = "{peer_witness}"\n'
    )
    return config


def _serve(org: Org, config: Path, host: str) -> subprocess.Popen[bytes]:
    log = (org.data / "gateway.log").open("ab")
    cmd = [sys.executable, "-m", "gateway.cli", "serve", "--data-dir", str(org.data)]
    env = {**os.environ, "TELEGATE_CONFIG": str(config.resolve())}
    return subprocess.Popen(
        [*cmd, "--host", host, "--port", str(org.port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )


def seed(a: Org, b: Org, out: Path) -> dict[str, Any]:
    """Enroll everyone, accept B's provider at A, consent, schedule. Returns the scenario."""
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    creds: dict[str, Credentials] = {}
    for org in (a, b):
        creds[f"{org.key}-admin"] = enroll(org.url, local_invite(org.data, "admin"))
    a_adm, b_adm = Session(creds["a-admin"]), Session(creds["b-admin"])

    def invite(s: Session, role: str, **kw: Any) -> str:
        return str(s.post_json("/v1/invites", {"role": role, **kw})["invite"])

    creds["a-patient"] = enroll(a.url, invite(a_adm, "patient"))
    patient = creds["a-patient"].sub
    # The patient registers their own monitor (an admin may not: docs/compliance.md).
    a_pat = Session(creds["a-patient"])
    creds["a-device"] = enroll(
        a.url, invite(a_pat, "device", patient=patient), serial="DEMO-0002", model="monitor"
    )
    creds["a-auditor"] = enroll(a.url, invite(a_adm, "auditor"))
    creds["b-provider"] = enroll(b.url, invite(b_adm, "provider", npi=NPI))
    provider = FederatedSession(creds["b-provider"], a.url)
    local = provider.get_json("/v1/me")["sub"]  # the first exchange: A records B's receipt
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 30 * 86400))
    Session(creds["a-patient"]).post_json(
        "/v1/consents",
        {"grantee": local, "scopes": ["call", "vitals.read", "vitals.stream"], "until": until},
    )
    call = provider.post_json("/v1/sessions", {"patient": patient})
    for role, c in creds.items():
        (out / f"{role}.json").unlink(missing_ok=True)
        c.save(out / f"{role}.json")
    scenario = {
        "ids": {role: c.sub for role, c in creds.items()},
        "provider_at_a": local,
        "session": call["id"],
    }
    (out / "scenario.json").write_text(json.dumps(scenario, indent=1))
    return scenario


def _print(a: Org, b: Org, out: Path, scenario: dict[str, Any]) -> None:
    creds = {r: Credentials.load(out / f"{r}.json") for r in scenario["ids"]}
    sid, patient = scenario["session"], scenario["ids"]["a-patient"]
    fed = f"python -m gateway.federation.client --credentials {out}/b-provider.json --at {a.url}"
    print("\ntelegate two-organization demo is running:")
    for org in (a, b):
        vkey = creds[f"{org.key}-admin"].log_vkey
        print(f"  {org.name:<11} {org.url}  log vkey {vkey}  (log: {org.data}/gateway.log)")
    print(f"  A's patient {browser_link(a.url, creds['a-patient'], 'patient', '/me')}")
    print(f"  call        {browser_link(a.url, creds['a-patient'], 'patient', f'/call/{sid}')}")
    print(f"  A's auditor {browser_link(a.url, creds['a-auditor'], 'auditor', '/console')}")
    print(
        f"  B's provider {scenario['ids']['b-provider']} at B, {scenario['provider_at_a']} at A;"
        " from the command line, through A:"
    )
    print(f"    {fed} GET /v1/sessions/waiting")
    print(f"    {fed} POST /v1/sessions/{sid}/admit")
    print(f"    {fed} GET '/v1/patients/{patient}/vitals?limit=5'")
    print(
        f"  audit       telegate audit --credentials {out}/a-auditor.json "
        "--type federation.accepted"
    )
    print("The links carry a demo key in their #fragment: keep them to yourself. Ctrl-C stops.\n")
    sys.stdout.flush()


def run(args: argparse.Namespace) -> int:
    """Start both gateways, seed (once), print, post vitals; stop both on exit."""
    root: Path = args.data_dir
    port_b = args.port_b or args.port + 1
    a = Org("a", "hospital-a", root / "a", f"http://{args.host}:{args.port}", args.port)
    b = Org("b", "clinic-b", root / "b", f"http://{args.host}:{port_b}", port_b)
    vkeys = {org.key: _keys(org) for org in (a, b)}
    procs = [_serve(org, _configure(org, peer, vkeys), args.host) for org, peer in ((a, b), (b, a))]
    stop = False

    def _stop(*_: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    try:
        for org, proc in zip((a, b), procs, strict=True):
            wait_ready(org.url, proc)
        out = root / "demo"
        state = out / "scenario.json"
        scenario = json.loads(state.read_text()) if state.exists() else seed(a, b, out)
        _print(a, b, out, scenario)
        post_vitals(
            Credentials.load(out / "a-device.json"), args.interval, args.duration, lambda: stop
        )
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
