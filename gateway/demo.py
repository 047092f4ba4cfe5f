"""``make demo``: a gateway on embedded SQLite with a seeded scenario and a simulated device.

Starts ``telegate serve`` on a data directory, enrolls an admin, a provider, a patient, the
patient's monitoring device and an auditor through the real API, has the patient consent
to calls and vitals, schedules a call, then posts realistic vitals every few seconds as the
device (signed batches through ``POST /v1/vitals``) until stopped. Prints the links to open
as patient, provider and auditor. Re-running on the same directory reuses the scenario.

The browser links carry the seeded identity's private key in the URL *fragment*
(``/enroll#demo=...``), which browsers never send to a server; the enrollment page imports
it as a non-extractable WebCrypto key. That shortcut exists for the demo only: real users
enroll from an invite link with a key their browser generates.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import jwt

from .auth.enroll import hash_code, new_code
from .auth.jwk import thumbprint
from .auth.store import IdentityStore, Invite
from .client import ClientError, Credentials, Session, enroll

__all__ = ["browser_link", "local_invite", "main", "post_vitals", "seed", "wait_ready"]

NPI = "1234567893"  # a valid test NPI (Luhn with the 80840 prefix)
ROLES = ("admin", "provider", "patient", "device", "auditor")


def _b64u(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def wait_ready(server: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the gateway exited with {proc.returncode}; see its log above")
        try:
            with urllib.request.urlopen(f"{server}/readyz", timeout=2) as r:  # noqa: S310
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the gateway did not become ready in time")


def local_invite(data_dir: Path, role: str) -> str:
    store = IdentityStore(data_dir / "identity.db")
    try:
        code, now = new_code(), int(time.time())
        store.create_invite(hash_code(code), Invite(role, "cli:local", now, now + 600, {}))
    finally:
        store.close()
    return code


def seed(server: str, data_dir: Path) -> dict[str, Any]:
    """Enroll everyone through the API, grant consent, schedule a call. Returns the
    scenario (ids, session, credential file paths)."""
    out = data_dir / "demo"
    out.mkdir(mode=0o700, exist_ok=True)
    admin = enroll(server, local_invite(data_dir, "admin"))
    adm = Session(admin)
    creds = {"admin": admin}

    def invite(role: str, **kw: Any) -> str:
        return str(adm.post_json("/v1/invites", {"role": role, **kw})["invite"])

    # Made-up names, so the pages show people: the provider's comes with the invite, the
    # patient says theirs at enrollment.
    creds["provider"] = enroll(server, invite("provider", npi=NPI, display_name="Dr Jane Demo"))
    creds["patient"] = enroll(server, invite("patient"), display_name="Alex Demo")
    creds["device"] = enroll(
        server,
        invite("device", patient=creds["patient"].sub),
        serial="DEMO-0001",
        model="telegate demo monitor",
    )
    creds["auditor"] = enroll(server, invite("auditor", display_name="Ann Demo Auditor"))
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 30 * 86400))
    provider = creds["provider"].sub
    consent = Session(creds["patient"]).post_json(
        "/v1/consents",
        {"grantee": provider, "scopes": ["call", "vitals.read", "vitals.stream"], "until": until},
    )
    call = Session(creds["provider"]).post_json("/v1/sessions", {"patient": creds["patient"].sub})
    for role, c in creds.items():
        path = out / f"{role}.json"
        path.unlink(missing_ok=True)
        c.save(path)
    scenario = {
        "ids": {role: c.sub for role, c in creds.items()},
        "consent": consent["id"],
        "session": call["id"],
    }
    (out / "scenario.json").write_text(json.dumps(scenario, indent=1))
    return scenario


def browser_link(server: str, creds: Credentials, role: str, then: str) -> str:
    """A demo link: the seeded identity's key in the fragment, never sent to the server."""
    blob = {"sub": creds.sub, "role": role, "d": _b64u(creds.seed), "x": creds.jwk["x"]}
    fragment = _b64u(json.dumps(blob, separators=(",", ":")).encode())
    return f"{server}/enroll?next={then}#demo={fragment}"


class Monitor:
    """A patient's vital signs drifting plausibly: what a home monitor would report."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.hr, self.spo2, self.sys, self.dia, self.temp, self.rr = (
            72.0,
            97.5,
            121.0,
            79.0,
            36.8,
            15.0,
        )
        self.tick = 0

    def _walk(self, v: float, step: float, lo: float, hi: float, home: float) -> float:
        v += self.rng.uniform(-step, step) + (home - v) * 0.1
        return min(hi, max(lo, v))

    def readings(self, now: float) -> list[dict[str, Any]]:
        t = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
        self.tick += 1
        self.hr = self._walk(self.hr, 3, 55, 110, 72)
        self.spo2 = self._walk(self.spo2, 0.6, 93, 100, 97.5)
        out: list[dict[str, Any]] = [
            {"code": "8867-4", "unit": "/min", "value": round(self.hr), "time": t},
            {"code": "59408-5", "unit": "%", "value": round(self.spo2, 1), "time": t},
        ]
        if self.tick % 5 == 1:
            self.sys = self._walk(self.sys, 5, 100, 150, 121)
            self.dia = self._walk(self.dia, 3, 60, 95, 79)
            self.rr = self._walk(self.rr, 1, 10, 24, 15)
            out.append(
                {
                    "code": "85354-9",
                    "time": t,
                    "components": [
                        {"code": "8480-6", "unit": "mm[Hg]", "value": round(self.sys)},
                        {
                            "code": "8462-4",
                            "unit": "mm[Hg]",
                            "value": round(min(self.dia, self.sys - 20)),
                        },
                    ],
                }
            )
            out.append({"code": "9279-1", "unit": "/min", "value": round(self.rr), "time": t})
        if self.tick % 15 == 1:
            self.temp = self._walk(self.temp, 0.1, 36.1, 37.6, 36.8)
            out.append({"code": "8310-5", "unit": "Cel", "value": round(self.temp, 1), "time": t})
        return out


def device_batches(creds: Credentials, seed_value: int | None = None) -> Iterator[str]:
    """Signed batches (compact JWS) as the device makes them, one per call to next()."""
    monitor = Monitor(random.Random(seed_value))  # noqa: S311 - simulated readings, not secrets
    kid = thumbprint(creds.jwk)
    while True:
        payload = {
            "batch_id": f"demo-{secrets.token_hex(6)}",
            "readings": monitor.readings(time.time()),
        }
        yield jwt.api_jws.PyJWS().encode(
            json.dumps(payload).encode(),
            creds.key,
            algorithm="EdDSA",
            headers={"typ": "vitals+json", "kid": kid},
        )


def post_vitals(
    creds: Credentials, interval: float, duration: float, stopped: Callable[[], bool]
) -> None:
    """Post a signed batch every ``interval`` seconds as the device, until ``stopped()`` or
    (``duration`` > 0) that many seconds have passed."""
    device = Session(creds)
    started, sent, readings = time.monotonic(), 0, 0
    for jws in device_batches(creds):
        if stopped() or (duration and time.monotonic() - started >= duration):
            break
        try:
            out = device.request("POST", "/v1/vitals", jws.encode(), "application/jose")
            sent, readings = sent + 1, readings + int(out["count"])
        except ClientError as e:
            print(f"device: {e}", file=sys.stderr)
        if sent % 10 == 1:
            print(f"device: {sent} batches, {readings} readings posted", flush=True)
        time.sleep(interval)
    print(f"device: {sent} batches, {readings} readings posted; stopping", flush=True)


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
        # Imported here: the two-organization demo builds on this module's helpers.
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
        post_vitals(creds["device"], args.interval, args.duration, lambda: stop)
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
