"""What both demos (``make demo``, ``make demo-two-orgs``) are made of: waiting for a
gateway, a local invite, the browser link carrying a demo key, and the simulated device
posting signed vitals. Each demo imports this; neither imports the other's helpers."""

from __future__ import annotations

import base64
import json
import random
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt

from .auth.enroll import hash_code, new_code
from .auth.jwk import thumbprint
from .auth.store import IdentityStore, Invite
from .client import ClientError, Credentials, Session
from .db import Database

__all__ = [
    "NPI",
    "Monitor",
    "browser_link",
    "device_batches",
    "local_invite",
    "post_vitals",
    "simulate_device",
    "wait_ready",
]

NPI = "1234567893"  # a valid test NPI (Luhn with the 80840 prefix)


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


def local_invite(data_dir: Path, role: str, database_url: str | None = None) -> str:
    # The demos run the embedded default; the tests also seed a gateway on PostgreSQL.
    db = Database(data_dir, database_url)
    try:
        store = IdentityStore(db.open("identity"))
        code, now = new_code(), int(time.time())
        store.create_invite(hash_code(code), Invite(role, "cli:local", now, now + 600, {}))
        store.close()
    finally:
        db.close()
    return code


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


def simulate_device(
    creds: Credentials, state: Path, args: Any, stopped: Callable[[], bool]
) -> None:
    """The demo's monitor as the device simulator runs it (gateway/devicekit/simulate.py):
    the seeded device's credentials copied into ``state/device-000`` (once), a batch every
    ``args.interval`` seconds for ``args.duration`` seconds (0: until ``stopped()``),
    progress on stderr, the summary on stdout."""
    import asyncio

    from .devicekit.simulate import MAX_DURATION, Provisioned, open_devices, run

    home = state / "device-000"
    if not (home / "device.json").exists():
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        creds.save(home / "device.json")

    async def main() -> None:
        (device,) = await open_devices(creds.server, [Provisioned(home)], seed=1)
        stop = asyncio.Event()

        async def watch() -> None:
            while not stopped():  # noqa: ASYNC110 - a flag a signal handler sets
                await asyncio.sleep(0.2)
            stop.set()

        watcher = asyncio.create_task(watch())
        try:
            summary = await run(
                [device],
                ["hypertension"],
                rate=1 / args.interval,
                duration=args.duration or MAX_DURATION,
                drain=10.0,
                seed=1,
                progress=sys.stderr,
                stopped=stop,
            )
        finally:
            watcher.cancel()
            await device.close()
        print(f"device: stopping\n{summary.text()}", flush=True)

    asyncio.run(main())
