"""``telegate device simulate``: N simulated monitoring devices, each a real
:class:`Device` (its key, its offline queue on disk) reporting plausible series
(physiology.py) over HTTP or MQTT, with optional offline windows that exercise the queue.

Each device lives in ``<state-dir>/device-NNN/``: enrolled there from an invite the first
time (``--invite``, or a provisioning file), reused on later runs. Progress goes to stderr
once a second; the summary (batches sent, acknowledged, still queued, rejected) to stdout.
``--seed`` makes the random part of the series (noise, SpO2 dips) and the backoff jitter
the same from run to run; the time-of-day shapes follow the clock.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import ssl
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from .device import CREDENTIALS, Device
from .physiology import PROFILES, Patient
from .queue import QueueFull
from .transport import MqttTransport, Offline, Transport

__all__ = [
    "Outage",
    "Outaged",
    "Provisioned",
    "Summary",
    "add_arguments",
    "command",
    "open_devices",
    "parse_outage",
    "run",
]

#: Bounds on what one run may ask for.
MAX_DEVICES = 5000
MAX_RATE = 50.0  # batches per second per device
MAX_DURATION = 7 * 86_400.0


@dataclass(frozen=True, slots=True)
class Outage:
    """The devices are offline from ``start`` seconds into the run, for ``length`` s."""

    start: float
    length: float

    def covers(self, elapsed: float) -> bool:
        return self.start <= elapsed < self.start + self.length


def parse_outage(text: str) -> Outage:
    """``START+LENGTH`` in seconds, e.g. ``5+10``. Raises ValueError."""
    start, sep, length = text.partition("+")
    try:
        o = Outage(float(start), float(length))
    except ValueError:
        o = None
    if not sep or o is None or o.start < 0 or not 0 < o.length <= MAX_DURATION:
        raise ValueError(f"an outage is START+LENGTH in seconds (e.g. 5+10), not {text!r}")
    return o


class Outaged:
    """A transport that is unreachable during the outages (as a device out of coverage):
    ``send`` raises Offline without trying; otherwise the wrapped transport's answer."""

    def __init__(self, inner: Transport, outages: Sequence[Outage], started: float) -> None:
        self.inner = inner
        self.outages = tuple(outages)
        self.started = started

    @property
    def server_time(self) -> tuple[float, float] | None:
        return self.inner.server_time

    @server_time.setter
    def server_time(self, value: tuple[float, float] | None) -> None:
        self.inner.server_time = value

    def offline(self) -> bool:
        elapsed = time.monotonic() - self.started
        return any(o.covers(elapsed) for o in self.outages)

    async def send(self, jws: str) -> tuple[int, dict[str, Any]]:
        if self.offline():
            raise Offline("simulated outage")
        return await self.inner.send(jws)

    async def close(self) -> None:
        await self.inner.close()


@dataclass
class Summary:
    """What a run did, over every device."""

    devices: int = 0
    sent: int = 0  # batches measured and queued
    readings: int = 0
    acknowledged: int = 0  # delivered: the gateway answered with a receipt
    rejected: int = 0  # refused for good (in each device's rejected table)
    queued: int = 0  # still waiting when the run ended
    dropped: int = 0  # not queued: the queue was full
    seconds: float = 0.0
    per_device: dict[str, int] = field(default_factory=dict)

    def text(self) -> str:
        rate = self.acknowledged / self.seconds if self.seconds else 0.0
        return "\n".join(
            [
                f"devices       {self.devices}",
                f"sent          {self.sent} batches ({self.readings} readings)",
                f"acknowledged  {self.acknowledged} ({rate:.1f} batches/s)",
                f"queued        {self.queued}",
                f"rejected      {self.rejected}",
                *([f"dropped       {self.dropped} (queue full)"] if self.dropped else []),
                f"seconds       {self.seconds:.1f}",
            ]
        )

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "per_device"}


@dataclass(frozen=True, slots=True)
class Provisioned:
    """One device to simulate: its directory, and the invite to enroll it with when the
    directory holds no credentials yet."""

    home: Path
    invite: str | None = None
    profile: str | None = None
    serial: str | None = None
    model: str = "telegate simulated monitor"


def provisioning(path: Path) -> list[dict[str, Any]]:
    """A provisioning file: JSON ``{"devices": [{"invite": "...", "profile": "copd",
    "serial": "...", "model": "..."}, ...]}`` (or the list alone). Raises ValueError."""
    data = json.loads(path.read_text())
    devices = data.get("devices") if isinstance(data, dict) else data
    if not isinstance(devices, list) or not all(isinstance(d, dict) for d in devices):
        raise ValueError(f"{path}: a provisioning file is {{'devices': [{{'invite': ...}}]}}")
    for d in devices:
        if set(d) - {"invite", "profile", "serial", "model"}:
            raise ValueError(f"{path}: a device has invite, profile, serial, model")
        if not all(isinstance(v, str) and 0 < len(v) <= 256 for v in d.values()):
            raise ValueError(f"{path}: invite, profile, serial and model are short strings")
        if d.get("profile") is not None and d["profile"] not in PROFILES:
            raise ValueError(f"{path}: profile is one of {', '.join(PROFILES)}")
    return devices


async def open_devices(
    server: str,
    wanted: Sequence[Provisioned],
    *,
    transport: str = "http",
    mqtt_url: str | None = None,
    seed: int | None = None,
) -> list[Device]:
    """Each device, enrolled from its invite the first time; with its transport."""
    rng = random.Random(seed)  # noqa: S311 - backoff jitter, not a secret
    out: list[Device] = []
    tls: ssl.SSLContext | None = None
    settings = None
    if transport == "mqtt":
        from ..mqtt.settings import parse_mqtt_url

        if mqtt_url is None:
            raise ValueError("--transport mqtt needs --mqtt-url")
        settings = parse_mqtt_url(mqtt_url)
        if settings.tls:
            tls = ssl.create_default_context(cafile=str(settings.ca) if settings.ca else None)
            if settings.cert is not None and settings.key is not None:
                tls.load_cert_chain(settings.cert, settings.key)
    kw: dict[str, Any] = {"backoff_base": 0.25, "backoff_max": 2.0, "rng": rng.random}
    for i, p in enumerate(wanted):
        if not (p.home / CREDENTIALS).exists():
            if p.invite is None:
                raise ValueError(f"{p.home} holds no device and no invite is left for it")
            serial = p.serial or f"SIM-{i:05d}"
            dev = await asyncio.to_thread(
                Device.enroll, p.home, server, p.invite, serial=serial, model=p.model
            )
            await dev.close()
        dev = Device.open(p.home, **kw)
        if settings is not None:
            await dev.transport.close()
            dev.transport = MqttTransport(
                dev.id,
                settings.host,
                settings.port,
                username=settings.username,
                password=settings.password,
                tls_context=tls,
            )
        out.append(dev)
    return out


async def run(
    devices: Sequence[Device],
    profiles: Sequence[str],
    *,
    rate: float = 1.0,
    duration: float = 10.0,
    outages: Sequence[Outage] = (),
    drain: float = 30.0,
    seed: int | None = None,
    progress: TextIO | None = None,
    stopped: asyncio.Event | None = None,
) -> Summary:
    """Drive ``devices`` for ``duration`` seconds (or until ``stopped`` is set), each
    measuring ``rate`` batches a second from a patient of its profile; then give their
    queues up to ``drain`` seconds to empty (after the last outage). The devices stay
    open (the caller closes them)."""
    if not 0 < rate <= MAX_RATE or not 0 < duration <= MAX_DURATION:
        raise ValueError(f"rate is 0..{MAX_RATE}/s, duration 0..{MAX_DURATION:.0f} s")
    started = time.monotonic()
    summary = Summary(devices=len(devices))
    stop = asyncio.Event()
    rng = random.Random(seed)  # noqa: S311 - simulated readings, not secrets
    patients = [
        Patient(PROFILES[prof], random.Random(rng.getrandbits(64)), time.time())  # noqa: S311
        for prof in profiles
    ]
    wrapped = []
    for dev in devices:
        if outages:
            dev.transport = Outaged(dev.transport, outages, started)
        wrapped.append(dev)

    async def measure(i: int, dev: Device, kick: asyncio.Event) -> None:
        # Devices start spread over one period, not in step.
        next_at = started + (i / max(1, len(devices))) / rate
        while True:
            delay = next_at - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
            if stop.is_set():
                return
            readings = patients[i].readings(dev.local_now())
            try:
                dev.record(readings)
            except QueueFull:
                summary.dropped += 1
            else:
                summary.sent += 1
                summary.readings += len(readings)
            kick.set()
            next_at += 1 / rate

    async def deliver(dev: Device, kick: asyncio.Event, until: list[float]) -> None:
        while True:
            kick.clear()
            done = await dev.flush()
            summary.acknowledged += done.delivered
            summary.per_device[dev.id] = summary.per_device.get(dev.id, 0) + done.delivered
            if stop.is_set() and (done.waiting == 0 or time.monotonic() > until[0]):
                return
            wait = 1.0 if done.retry_in is None else max(0.01, done.retry_in)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(kick.wait(), min(wait, 2.0))

    async def report() -> None:
        while True:
            await asyncio.sleep(1.0)
            if progress is None:
                continue
            elapsed = time.monotonic() - started
            queued = sum(len(d.queue) for d in devices)
            off = any(o.covers(elapsed) for o in outages)
            print(
                f"[{elapsed:6.1f}s] sent {summary.sent}  acknowledged {summary.acknowledged}"
                f"  queued {queued}{'  (offline)' if off else ''}",
                file=progress,
                flush=True,
            )

    kicks = [asyncio.Event() for _ in devices]
    last_outage = max((o.start + o.length for o in outages), default=0.0)
    until = [started + max(duration, last_outage) + drain]
    if stopped is not None:
        # Stopped early: the drain counts from then, not from the planned end.
        async def early() -> None:
            await stopped.wait()
            until[0] = min(until[0], time.monotonic() + drain)

        watcher = asyncio.create_task(early())
    reporter = asyncio.create_task(report())
    measuring = [asyncio.create_task(measure(i, d, kicks[i])) for i, d in enumerate(wrapped)]
    delivering = [asyncio.create_task(deliver(d, kicks[i], until)) for i, d in enumerate(wrapped)]
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for((stopped or asyncio.Event()).wait(), duration)
        stop.set()
        for k in kicks:
            k.set()
        await asyncio.gather(*measuring)
        await asyncio.gather(*delivering)
    finally:
        stop.set()
        extra = [watcher] if stopped is not None else []
        for t in [*measuring, *delivering, reporter, *extra]:
            t.cancel()
        await asyncio.gather(*measuring, *delivering, reporter, *extra, return_exceptions=True)
    summary.seconds = time.monotonic() - started
    summary.queued = sum(len(d.queue) for d in devices)
    summary.rejected = sum(len(d.queue.rejected()) for d in devices)
    return summary


# -- the command line --------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", required=True, help="gateway URL (enrollment, HTTP transport)")
    p.add_argument("--state-dir", type=Path, required=True, help="the devices' directories")
    p.add_argument("--devices", type=int, help="how many (default: one per invite, or 1)")
    p.add_argument("--invite", action="append", default=[], help="a device invite (repeat)")
    p.add_argument("--provision", type=Path, help="a provisioning file (JSON, see docs)")
    p.add_argument("--profile", choices=[*PROFILES, "mixed"], default="mixed")
    p.add_argument("--rate", type=float, default=0.5, help="batches per second per device")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of measuring")
    p.add_argument("--transport", choices=["http", "mqtt"], default="http")
    p.add_argument("--mqtt-url", help="the broker, e.g. mqtt://127.0.0.1:1883")
    p.add_argument(
        "--outage",
        action="append",
        default=[],
        type=parse_outage,
        metavar="START+LENGTH",
        help="offline from START s for LENGTH s (repeat); batches wait in the queue",
    )
    p.add_argument("--drain", type=float, default=30.0, help="seconds to empty the queues")
    p.add_argument("--seed", type=int, help="the same random draws (noise, dips) every run")
    p.add_argument("--json", action="store_true", help="the summary as JSON")


def plan(args: argparse.Namespace) -> tuple[list[Provisioned], list[str]]:
    """The devices to run and their profiles, from the arguments."""
    entries: list[dict[str, Any]] = [{"invite": c} for c in args.invite]
    if args.provision is not None:
        entries += provisioning(args.provision)
    n = args.devices if args.devices is not None else max(1, len(entries))
    if not 1 <= n <= MAX_DEVICES:
        raise ValueError(f"--devices is 1..{MAX_DEVICES}")
    names = list(PROFILES)
    wanted, profiles = [], []
    for i in range(n):
        e = entries[i] if i < len(entries) else {}
        prof = e.get("profile") or (
            names[i % len(names)] if args.profile == "mixed" else args.profile
        )
        wanted.append(
            Provisioned(
                args.state_dir / f"device-{i:03d}",
                e.get("invite"),
                prof,
                e.get("serial"),
                e.get("model") or "telegate simulated monitor",
            )
        )
        profiles.append(prof)
    return wanted, profiles


async def _main(args: argparse.Namespace) -> int:
    wanted, profiles = plan(args)
    args.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    devices = await open_devices(
        args.server, wanted, transport=args.transport, mqtt_url=args.mqtt_url, seed=args.seed
    )
    try:
        print(
            f"simulating {len(devices)} device(s) over {args.transport} for {args.duration:g} s",
            file=sys.stderr,
            flush=True,
        )
        summary = await run(
            devices,
            profiles,
            rate=args.rate,
            duration=args.duration,
            outages=args.outage,
            drain=args.drain,
            seed=args.seed,
            progress=sys.stderr,
        )
    finally:
        for d in devices:
            await d.close()
    print(json.dumps(summary.to_json()) if args.json else summary.text(), flush=True)
    return 0 if summary.queued == 0 and summary.rejected == 0 else 2


def command(args: argparse.Namespace) -> int:
    """``telegate device simulate``: 0 when every batch was acknowledged, 2 when some are
    still queued or were rejected."""
    try:
        return asyncio.run(_main(args))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
