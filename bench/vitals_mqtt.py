"""Section ``mqtt`` of bench/vitals.py: readings over MQTT vs over HTTP on one gateway.

A private mosquitto (free loopback port, its own config, no persistence, killed at the
end) is started before the gateway, whose ``TELEGATE_MQTT_URL`` points at it. The
devices' side runs in this process: a few publishing devices (aiomqtt, MQTT 5, each batch
with its correlation data, its receipt awaited on the device's receipts topic) and, to
reach the number of connected devices asked for, lightweight raw MQTT 5 clients (a socket
each: CONNECT, SUBSCRIBE to their receipts, then idle with keep-alive off), all to the
broker, none to the gateway. HTTP rows use bench.auth's load generator process on the same
gateway, back to back with the MQTT rows, so the two transports see the same conditions.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import secrets
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.mqtt.broker import Broker

__all__ = ["bench_mqtt", "start_broker", "summary_lines"]

now = time.perf_counter
PUBLISHERS = 10  # publishing devices: the "10 connected" of the memory comparison
MQTT_POOL_RPS = {1: 3000, 100: 200}  # pre-signed batches per second of row


def start_broker(workdir: Path) -> Broker:
    """The tests' private mosquitto (tests/mqtt/broker.py) with no connection limit, no
    in-flight limit and error-only logging, this process's file limit raised for 1,000
    device sockets (the broker inherits it). Raises RuntimeError without mosquitto."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not os.path.exists(binary):
        raise RuntimeError("mosquitto is not installed (apt install mosquitto)")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 65_536) if hard != resource.RLIM_INFINITY else 65_536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    workdir.mkdir(parents=True, exist_ok=True)
    extra = (
        "max_connections -1\nmax_inflight_messages 0\nmax_queued_messages 100000\nlog_type error"
    )
    broker = Broker(binary, workdir, extra)
    broker.start()
    return broker


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# -- raw idle devices ---------------------------------------------------------------------
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, byte = n >> 7, n & 0x7F
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(s: str) -> bytes:
    b = s.encode()
    return len(b).to_bytes(2, "big") + b


async def _read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = (await reader.readexactly(1))[0]
    n, shift = 0, 0
    while True:
        b = (await reader.readexactly(1))[0]
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    return head, await reader.readexactly(n)


class IdleDevice:
    """One MQTT 5 connection, as a device between two measurements: subscribed to its
    receipts, keep-alive off (the broker never pings it out)."""

    writer: asyncio.StreamWriter

    async def connect(self, port: int, device: str) -> None:
        reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        body = b"\x00\x04MQTT\x05\x02\x00\x00" + b"\x00" + _utf8(f"idle-{secrets.token_hex(6)}")
        self.writer.write(b"\x10" + _varint(len(body)) + body)
        head, rest = await _read_packet(reader)
        if head != 0x20 or rest[1] != 0:
            raise RuntimeError(f"CONNACK refused: {rest!r}")
        topic = f"telegate/v1/devices/{device}/receipts"
        sub = b"\x00\x01" + b"\x00" + _utf8(topic) + b"\x01"
        self.writer.write(b"\x82" + _varint(len(sub)) + sub)
        head, _ = await _read_packet(reader)
        if head != 0x90:
            raise RuntimeError("no SUBACK")
        self._reader = reader

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.write(b"\xe0\x00")  # DISCONNECT
            self.writer.close()


# -- publishing devices -------------------------------------------------------------------
class Publisher:
    """One enrolled device's aiomqtt connection: publishes signed batches (QoS 1) with
    correlation data and waits for each receipt on its receipts topic."""

    def __init__(self, port: int, device: str) -> None:
        self.port, self.device = port, device
        self.waiting: dict[bytes, tuple[float, asyncio.Future[int]]] = {}
        self.latencies: list[float] = []

    async def start(self, stack: contextlib.AsyncExitStack) -> None:
        import aiomqtt

        self.client = await stack.enter_async_context(
            aiomqtt.Client(
                "127.0.0.1",
                self.port,
                identifier=f"pub-{secrets.token_hex(6)}",
                protocol=aiomqtt.ProtocolVersion.V5,
                max_inflight_messages=64,
                max_queued_outgoing_messages=0,
            )
        )
        await self.client.subscribe(f"telegate/v1/devices/{self.device}/receipts", qos=1)
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for m in self.client.messages:
            props = m.properties
            corr = bytes(getattr(props, "CorrelationData", b"") or b"")
            got = self.waiting.pop(corr, None)
            if got is None:
                continue
            t0, fut = got
            self.latencies.append(now() - t0)
            users = dict(getattr(props, "UserProperty", None) or [])
            if not fut.done():
                fut.set_result(int(users.get("status", "0")))

    async def ask(self, payload: bytes) -> int:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        corr = secrets.token_bytes(8)
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.CorrelationData = corr
        props.ContentType = "application/jose"
        self.waiting[corr] = (now(), fut)
        await self.client.publish(
            f"telegate/v1/devices/{self.device}/vitals", payload, qos=1, properties=props
        )
        return await asyncio.wait_for(fut, 60)

    async def stop(self) -> None:
        self.reader.cancel()
        with contextlib.suppress(BaseException):
            await self.reader


async def mqtt_row(
    pubs: Sequence[Publisher], pools: Sequence[list[bytes]], window: int, seconds: float, gw: Any
) -> dict[str, Any]:
    """A closed loop: ``window`` batches in flight per publisher for ``seconds``; the
    receipts' statuses, rate, latency and the gateway's CPU over the row."""
    from bench.vitals import proc_cpu

    for p in pubs:
        p.latencies = []
    statuses: dict[int, int] = {}
    u0, s0 = proc_cpu(gw.pid)
    t0 = now()
    deadline = t0 + seconds

    async def worker(p: Publisher, pool: list[bytes]) -> None:
        while now() < deadline and pool:
            st = await p.ask(pool.pop())
            statuses[st] = statuses.get(st, 0) + 1

    await asyncio.gather(*(worker(p, pools[i]) for i, p in enumerate(pubs) for _ in range(window)))
    elapsed = now() - t0
    u1, s1 = proc_cpu(gw.pid)
    n = sum(statuses.values())
    lat = sorted(x for p in pubs for x in p.latencies)
    if statuses.get(201, 0) != n:
        raise RuntimeError(f"MQTT answers: {statuses}")
    cpu = (u1 - u0) + (s1 - s0)
    return {
        "rps": n / elapsed,
        "n": n,
        "cpu_us": cpu / n * 1e6,
        "server_core": cpu / elapsed,
        "p50": lat[len(lat) // 2] * 1e3,
        "p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3,
        # A row that used up its pre-signed batches ended early (its rate is still right).
        "short": float(any(not pool for pool in pools)),
    }


def _pools(fleet: Any, idx: Sequence[int], b: int, n: int, tag: str) -> list[list[bytes]]:
    from bench.vitals import readings
    from tests.gateway.vitals.world import batch, sign

    t = time.time()
    pools: list[list[bytes]] = [[] for _ in idx]
    for i in range(n):
        k = i % len(idx)
        dev = fleet.devices[idx[k]]
        pools[k].append(sign(dev, batch(readings(b, t, i), f"{tag}-{i}")).encode())
    return pools


async def bench_mqtt(cfg: Any, gw: Any, broker: Broker, lg: Any, fleet: Any, res: Any) -> None:
    from bench.auth import AuthTable
    from bench.ledger import progress
    from bench.vitals import make_requests, refresh_tokens, run_row

    m = res.metrics
    seconds = cfg.seconds
    idx = list(range(min(PUBLISHERS, len(fleet.devices))))
    window = max(1, cfg.concurrency // len(idx))  # as many in flight as HTTP's posters
    idle: list[IdleDevice] = []
    async with contextlib.AsyncExitStack() as stack:
        pubs = [Publisher(broker.port, fleet.devices[i].sub) for i in idx]
        for p in pubs:
            await p.start(stack)
            stack.push_async_callback(p.stop)
        # Phase 1: 10 devices connected. A warm-up row, then the row the memory is read at.
        progress(f"mqtt: {len(pubs)} devices connected; warm-up and batch 1 row")
        warm = _pools(fleet, idx, 1, 200, "mw")
        w = await mqtt_row(pubs, warm, window, 1.0, gw)
        progress(f"mqtt: warm-up: {w['n']:,} batches")
        pools = _pools(fleet, idx, 1, int(MQTT_POOL_RPS[1] * seconds), "m10")
        r10 = await mqtt_row(pubs, pools, window, seconds, gw)
        m["mqtt_rss_10"] = rss_mib(gw.pid)
        m["mqtt10_rps_1"] = r10["rps"]
        progress(
            f"mqtt: 10 devices, batch 1: {r10['n']:,} batches, "
            f"server CPU {r10['cpu_us']:,.0f} µs per batch"
        )
        # Phase 2: up to the connected devices asked for, the rest idle raw clients.
        total = cfg.mqtt_devices
        progress(f"mqtt: connecting {total - len(pubs)} more devices (raw MQTT 5 clients)")
        t0 = now()
        for start in range(0, total - len(pubs), 100):
            group = [IdleDevice() for _ in range(min(100, total - len(pubs) - start))]
            await asyncio.gather(
                *(d.connect(broker.port, f"dev:{secrets.token_hex(16)}") for d in group)
            )
            idle += group
        m["mqtt_connect_s"] = now() - t0
        m["mqtt_connected"] = len(pubs) + len(idle)
        try:
            for b in (1, 100):
                progress(f"mqtt: batch {b}: signing (untimed), then MQTT and HTTP rows")
                pools = _pools(fleet, idx, b, int(MQTT_POOL_RPS[b] * seconds), f"m{b}")
                r = await mqtt_row(pubs, pools, window, seconds, gw)
                if b == 1:
                    m["mqtt_rss_1000"] = rss_mib(gw.pid)
                await refresh_tokens(fleet, gw, gw.session, force=False)
                url = gw.base + "/v1/vitals"
                from bench.vitals import POOL_RPS

                reqs, _ = make_requests(
                    fleet, url, b, int(POOL_RPS[b] * seconds) + cfg.concurrency, f"h{b}"
                )
                h = await run_row(lg, gw, url, reqs, cfg.concurrency, seconds)
                for k, v in r.items():
                    m[f"mqtt_{k}_{b}"] = v
                for k in ("rps", "cpu_us", "server_core", "p50", "p99"):
                    m[f"http_{k}_{b}"] = h[k]
                progress(
                    f"mqtt: batch {b}: MQTT {r['rps'] * b:,.0f} readings/s "
                    f"({b * 1e6 / r['cpu_us']:,.0f} per server CPU-s), HTTP "
                    f"{h['rps'] * b:,.0f}/s ({b * 1e6 / h['cpu_us']:,.0f} per CPU-s)"
                )
        finally:
            for d in idle:
                d.close()
    t = AuthTable(
        f"6. Readings over MQTT vs HTTP on one gateway: {m['mqtt_connected']:,} devices "
        f"connected to the broker ({len(idx)} publishing, {window} batches in flight each), "
        f"HTTP with {cfg.concurrency} posters"
    )
    for b in (1, 100):
        for name, system in (("http", "HTTP POST /v1/vitals"), ("mqtt", "MQTT publish")):
            base = name == "http"
            t.add(
                system,
                f"readings/s, batch {b}",
                m[f"{name}_rps_{b}"] * b,
                "/s",
                key=f"q{b}",
                base=base,
                note=f"(server {m[f'{name}_server_core_{b}']:.2f} core; p50 "
                f"{m[f'{name}_p50_{b}']:.1f} ms, p99 {m[f'{name}_p99_{b}']:.1f} ms)",
            )
            t.add(
                system,
                "  readings per server CPU-second",
                b * 1e6 / m[f"{name}_cpu_us_{b}"],
                "/s",
                key=f"k{b}",
                base=base,
                note=f"(server CPU {m[f'{name}_cpu_us_{b}']:,.0f} µs per batch)",
            )
    t.add("gateway", f"RSS, {len(idx)} devices connected", m["mqtt_rss_10"], "MiB")
    t.add("gateway", f"RSS, {m['mqtt_connected']:,} connected", m["mqtt_rss_1000"], "MiB")
    t.notes += [
        "MQTT latency: from the device's publish to its receipt (device -> broker -> gateway "
        "-> durable -> answer -> broker -> device), closed loop; HTTP's: request to response.",
        f"the {m['mqtt_connected'] - len(idx):,} other devices are raw MQTT 5 connections to "
        f"the broker (connected in {m['mqtt_connect_s']:.1f} s), subscribed to their receipts "
        "and idle; the gateway holds one connection to the broker whatever their number.",
        "server CPU: the `telegate serve` process (all threads, /proc) over each row.",
    ]
    res.emit(t)


def summary_lines(m: dict[str, Any], status: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if "mqtt_cpu_us_1" not in m or "mqtt_cpu_us_100" not in m:
        return out

    def per_core(name: str, b: int) -> float:
        return float(b * 1e6 / m[f"{name}_cpu_us_{b}"])

    q1, h1 = per_core("mqtt", 1), per_core("http", 1)
    out.append(
        {
            "target": "MQTT >= 2x HTTP readings/s per server core at batch 1",
            "status": status(q1 >= 2 * h1),
            "detail": f"{q1:,.0f} vs {h1:,.0f} readings per server CPU-second = {q1 / h1:.2f}x"
            f" (measured {m['mqtt_rps_1']:,.0f} vs {m['http_rps_1']:,.0f} readings/s)",
        }
    )
    q100, h100 = per_core("mqtt", 100), per_core("http", 100)
    out.append(
        {
            "target": "MQTT within 10% of HTTP at batch 100 (per server core)",
            "status": status(q100 >= 0.9 * h100),
            "detail": f"{q100:,.0f} vs {h100:,.0f} readings per server CPU-second = "
            f"{q100 / h100:.2f}x (measured {m['mqtt_rps_100'] * 100:,.0f} vs "
            f"{m['http_rps_100'] * 100:,.0f} readings/s)",
        }
    )
    a, b = m["mqtt_rss_10"], m["mqtt_rss_1000"]
    out.append(
        {
            "target": "gateway memory does not grow with connected devices",
            "status": status(b <= a * 1.05 + 2),
            "detail": f"RSS {a:.1f} MiB with {PUBLISHERS} devices connected, {b:.1f} MiB with "
            f"{m['mqtt_connected']:,} ({b - a:+.1f} MiB)",
        }
    )
    out.append(
        {
            "target": "  (info) broker-to-receipt latency",
            "status": status(None),
            "detail": f"batch 1: p50 {m['mqtt_p50_1']:.1f} ms, p99 {m['mqtt_p99_1']:.1f} ms; "
            f"batch 100: p50 {m['mqtt_p50_100']:.1f} ms, p99 {m['mqtt_p99_100']:.1f} ms",
        }
    )
    return out
