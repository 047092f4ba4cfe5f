"""``make demo``: a gateway on embedded SQLite with a seeded scenario and a simulated device.

Starts ``telegate serve`` on a data directory, enrolls an admin, a provider, a patient, the
patient's monitoring device and an auditor through the real API, has the patient consent
to calls and vitals, schedules a call, then runs the device simulator
(``telegate device simulate``, gateway/devicekit/simulate.py) as the patient's monitor: a
hypertension profile's series, signed batches through its offline queue and
``POST /v1/vitals``, until stopped. Prints the links to open
as patient, provider and auditor. Re-running on the same directory reuses the scenario.

The browser links carry the seeded identity's private key in the URL *fragment*
(``/enroll#demo=...``), which browsers never send to a server; the enrollment page imports
it as a non-extractable WebCrypto key. That shortcut exists for the demo only: real users
enroll from an invite link with a key their browser generates.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .client import Credentials, Session, enroll
from .demokit import NPI, browser_link, local_invite, simulate_device, wait_ready
from .supply.demo import seed_chain

# browser_link stays importable from here, where the scenario it links to is seeded.
__all__ = ["browser_link", "main", "seed"]

ROLES = ("admin", "provider", "patient", "device", "auditor")


def seed(server: str, data_dir: Path, database_url: str | None = None) -> dict[str, Any]:
    """Enroll everyone through the API, grant consent, schedule a call. Returns the
    scenario (ids, session, credential file paths). ``database_url``: the gateway's, when
    it is not the embedded one in ``data_dir``."""
    out = data_dir / "demo"
    out.mkdir(mode=0o700, exist_ok=True)
    admin = enroll(server, local_invite(data_dir, "admin", database_url))
    adm = Session(admin)
    creds = {"admin": admin}

    def invite(role: str, **kw: Any) -> str:
        return str(adm.post_json("/v1/invites", {"role": role, **kw})["invite"])

    # Made-up names, so the pages show people: the provider's comes with the invite, the
    # patient says theirs at enrollment.
    creds["provider"] = enroll(server, invite("provider", npi=NPI, display_name="Dr Jane Demo"))
    creds["patient"] = enroll(server, invite("patient"), display_name="Alex Demo")
    # The patient registers their own monitor: a device reports into the patient's record,
    # so only the patient, or a provider holding their `devices` consent, may invite one.
    own = Session(creds["patient"]).post_json(
        "/v1/invites", {"role": "device", "patient": creds["patient"].sub}
    )
    # Its unit's custody is on the ledger first (gateway/supply/demo.py): it enrolls with a
    # UDI the supply chain shows genuine.
    udi, parties = seed_chain(adm, server)
    creds["device"] = enroll(
        server, str(own["invite"]), serial="DEMO-0001", model="telegate demo monitor", udi=udi
    )
    creds["auditor"] = enroll(server, invite("auditor", display_name="Ann Demo Auditor"))
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 30 * 86400))
    provider = creds["provider"].sub
    consent = Session(creds["patient"]).post_json(
        "/v1/consents",
        {"grantee": provider, "scopes": ["call", "vitals.read", "vitals.stream"], "until": until},
    )
    call = Session(creds["provider"]).post_json("/v1/sessions", {"patient": creds["patient"].sub})
    for role, c in [*creds.items(), *parties.items()]:
        path = out / f"{role}.json"
        path.unlink(missing_ok=True)
        c.save(path)
    scenario = {
        "ids": {role: c.sub for role, c in creds.items()},
        "consent": consent["id"],
        "session": call["id"],
        "supply": {"udi": udi, **{kind: c.sub for kind, c in parties.items()}},
    }
    (out / "scenario.json").write_text(json.dumps(scenario, indent=1))
    return scenario


def _serve(data_dir: Path, host: str, port: int) -> subprocess.Popen[bytes]:
    """``telegate serve`` in a child process, its JSON log in ``<data_dir>/gateway.log``."""
    base = [sys.executable, "-m", "gateway.cli"]
    subprocess.run([*base, "keys", "init", "--data-dir", str(data_dir)], check=True)
    log = (data_dir / "gateway.log").open("ab")
    cmd = [*base, "serve", "--data-dir", str(data_dir), "--host", host, "--port", str(port)]
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gateway.demo", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data-dir", type=Path, help="default: demo-data (demo-two-orgs with --two-orgs)"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8443)
    p.add_argument("--interval", type=float, default=2.0, help="seconds between device batches")
    p.add_argument(
        "--duration",
        type=float,
        default=0,
        help="stop after this many seconds (0: run until Ctrl-C)",
    )
    p.add_argument(
        "--two-orgs",
        action="store_true",
        help="two organizations witnessing and trusting each other (docs/federation.md)",
    )
    p.add_argument("--port-b", type=int, help="with --two-orgs: the second one's port (port+1)")
    args = p.parse_args(argv)
    if args.two_orgs:
        # Imported only when asked for: it pulls in the federation stack. It shares the
        # helpers of demokit with this module, and imports nothing from here.
        from .federation.demo import run

        args.data_dir = args.data_dir or Path("demo-two-orgs")
        return run(args)
    args.data_dir = args.data_dir or Path("demo-data")
    server = f"http://{args.host}:{args.port}"
    args.data_dir.mkdir(parents=True, exist_ok=True)
    proc = _serve(args.data_dir, args.host, args.port)
    stop = False

    def _stop(*_: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    try:
        wait_ready(server, proc)
        state = args.data_dir / "demo" / "scenario.json"
        scenario = json.loads(state.read_text()) if state.exists() else seed(server, args.data_dir)
        creds = {r: Credentials.load(args.data_dir / "demo" / f"{r}.json") for r in ROLES}
        sid = scenario["session"]
        print("\ntelegate demo is running:", server, f"(log: {args.data_dir}/gateway.log)")
        print(f"  patient   {browser_link(server, creds['patient'], 'patient', '/me')}")
        print(f"  provider  {browser_link(server, creds['provider'], 'provider', f'/call/{sid}')}")
        print(f"  auditor   {browser_link(server, creds['auditor'], 'auditor', '/console')}")
        print(f"  call      {server}/call/{sid}  (patient and provider)")
        print(f"  log vkey  {creds['admin'].log_vkey}")
        audit = f"--credentials {args.data_dir}/demo/auditor.json"
        print(f"  CLI       telegate audit {audit} --subject {scenario['ids']['patient']}")
        print(
            "The links carry a demo key in their #fragment: keep them to yourself. Ctrl-C stops.\n",
            flush=True,
        )
        simulate_device(creds["device"], args.data_dir / "demo" / "sim", args, lambda: stop)
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    raise SystemExit(main())
