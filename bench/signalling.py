"""Benchmark of telegate's call signalling relay against a raw aiohttp WebSocket relay.

Not a test: it measures and prints tables (system | metric | value | ratio to telegate),
then checks the targets of the signalling issue and prints PASS/MISS with the margin.

    python -m bench.signalling --quick        # N = 100 sessions, < 1 min
    python -m bench.signalling                # N = 1,000 sessions (2,000 websockets), < 5 min
    python -m bench.signalling --sessions 300 --json bench/out/signalling.json

Two server processes are started (multiprocessing spawn): a real gateway (``create_app``
served by an AppRunner on 127.0.0.1 with a fresh data directory) and a raw aiohttp relay
(two sockets per room, text forwarded as is: no auth, no JSON parsing, no ledger). This
process is the client of both: it sets up N calls on the gateway over HTTP, opens 2N
websockets to each server in turn and sends ``candidate`` messages from every patient
socket to its provider socket. Progress goes to stderr, results to stdout. A watchdog
stops the run if it overruns.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import gc
import json
import logging
import multiprocessing as mp
import os
import platform
import random
import resource
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

if not __package__:
    # Run as a script (python bench/signalling.py): this file's directory would shadow the
    # ``ledger`` package, so look modules up from the repository root instead.
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    sys.path.insert(0, os.path.dirname(_here))

from bench.auth import _Client
from bench.ledger import Results, Table, fmt, pct, print_summary, progress

LOG_ORIGIN = "bench.example/telegate/log"
NPI = "1234567893"
TARGET_P99_MS = 10.0  # relay p99 at 1,000 sessions
TARGET_KIB = 50.0  # memory per idle session (two sockets)
SOCKET_CAP = 40.0  # messages/s per socket in the flat-out run (Hub.rate is 50)
SETUP_CONCURRENCY = 32  # concurrent HTTP requests / websocket handshakes during setup

now = time.perf_counter


# -- tables ---------------------------------------------------------------------------------
class SigTable(Table):
    """bench.ledger's table, with KiB, µs and core units."""

    def format_value(self, value: float | None, unit: str) -> str:
        if value is not None and value == value:  # not NaN
            if unit == "KiB":
                return f"{value:,.1f} KiB"
            if unit == "us":
                return f"{value:,.1f} µs"
            if unit == "core":
                return f"{value:.2f} core"
        return fmt(value, unit)


# -- the servers (separate processes: their RSS is theirs alone) --------------------------
def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _rss_kib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return float(line.split()[1])
    return float("nan")


def _echo_app() -> Any:
    """The peer: a room of two sockets; each text frame goes to the other one unchanged."""
    from aiohttp import WSMsgType, web

    rooms: dict[str, dict[str, web.WebSocketResponse]] = {}

    async def relay(request: web.Request) -> web.WebSocketResponse:
        room_id = request.match_info["room"]
        party = request.query.get("party", "patient")
        other = "provider" if party == "patient" else "patient"
        ws = web.WebSocketResponse(max_msg_size=64 * 1024, heartbeat=30)
        await ws.prepare(request)
        room = rooms.setdefault(room_id, {})
        room[party] = ws
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    peer = room.get(other)
                    if peer is not None and not peer.closed:
                        await peer.send_str(msg.data)
        finally:
            if room.get(party) is ws:
                del room[party]
            if not room:
                rooms.pop(room_id, None)
        return ws

    app = web.Application()
    app.router.add_get("/ws/{room}", relay)
    return app


def _server_main(kind: str, data_dir: str, conn: Connection) -> None:
    """Child process: serve ``kind`` on 127.0.0.1 until the pipe says stop."""
    logging.basicConfig(level=logging.ERROR)
    logging.disable(logging.WARNING)  # 2,000 sockets closing at the end are not news
    raise_nofile()
    asyncio.run(_serve(kind, data_dir, conn))


async def _serve(kind: str, data_dir: str, conn: Connection) -> None:
    from aiohttp import web

    if kind == "gateway":
        from gateway.app import create_app
        from gateway.config import Config as GatewayConfig

        app = create_app(
            GatewayConfig(
                data_dir=Path(data_dir),
                log_origin=LOG_ORIGIN,
                log_level="ERROR",
                rate_exempt_loopback=True,  # one client: the request limits stay out of it
                # One patient and one provider hold every socket of the run.
                max_websockets=10_000,
                max_websockets_per_subject=1000,
            )
        )
    else:
        app = _echo_app()
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, backlog=4096).start()
    pauses: list[float] = []  # the server's garbage-collection pauses, ms
    gc_start = [0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            gc_start[0] = time.perf_counter()
        else:
            pauses.append((time.perf_counter() - gc_start[0]) * 1e3)

    gc.callbacks.append(on_gc)
    conn.send({"port": runner.addresses[0][1], "pid": os.getpid()})
    try:
        while True:
            try:
                cmd = await asyncio.to_thread(conn.recv)
            except (EOFError, OSError):
                break
            if cmd != "stat":
                break
            seen = (len(pauses), max(pauses, default=0.0), sum(pauses))
            gc.collect()
            pauses.clear()  # not this forced collection
            t = os.times()
            conn.send({"rss_kib": _rss_kib(), "cpu": t.user + t.system, "gc": seen})
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(runner.cleanup(), 15)


class Server:
    def __init__(self, kind: str, data_dir: Path) -> None:
        ctx = mp.get_context("spawn")
        self.kind = kind
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=_server_main, args=(kind, str(data_dir), child), name=f"bench-{kind}"
        )
        self.proc.daemon = True
        self.proc.start()
        child.close()
        if not self.conn.poll(60):
            raise RuntimeError(f"the {kind} server did not start within 60 s")
        hello = self.conn.recv()
        self.port, self.pid = hello["port"], hello["pid"]
        self.base = f"http://127.0.0.1:{self.port}"

    async def stat(self) -> dict[str, float]:
        def ask() -> dict[str, float]:
            self.conn.send("stat")
            if not self.conn.poll(30):
                raise TimeoutError(f"the {self.kind} server gave no answer")
            out: dict[str, float] = self.conn.recv()
            return out

        return await asyncio.to_thread(ask)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.proc.join(20)
        self.kill()

    def kill(self) -> None:
        if self.proc.is_alive() and self.proc.pid is not None:
            with contextlib.suppress(Exception):
                os.kill(self.proc.pid, 9)
            self.proc.join(5)


# -- the client side ------------------------------------------------------------------------
def candidate(seq: int, t_ns: int) -> str:
    """A trickle-ICE candidate message (~200 bytes) whose last token is the send time."""
    return json.dumps(
        {
            "type": "candidate",
            "candidate": f"candidate:{seq % 997} 1 udp 2122260223 192.168.{seq % 250}.7 "
            f"{50000 + seq % 10000} typ host generation 0 ufrag Bnch network-id 1 ts {t_ns}",
            "sdpMid": "0",
            "sdpMLineIndex": 0,
        }
    )


@dataclass
class Room:
    """One call: the patient socket sends, the provider socket receives."""

    pat: Any
    prov: Any
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Tally:
    recording: bool = False
    lat_ms: list[float] = field(default_factory=list)
    received: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    first_error: str | None = None


async def _reader(ws: Any, room: Room, tally: Tally, measure: bool) -> None:
    from aiohttp import WSMsgType

    async for msg in ws:
        if msg.type != WSMsgType.TEXT:
            continue
        t = time.perf_counter_ns()
        try:
            d = json.loads(msg.data)
        except ValueError:
            tally.kinds["bad json"] += 1
            continue
        kind = d.get("type")
        if measure and kind == "candidate":
            if tally.recording:
                sent = int(d["candidate"].rsplit(" ", 1)[1])
                tally.lat_ms.append((t - sent) / 1e6)
                tally.received += 1
            room.arrived.set()
        else:
            tally.kinds[str(kind)] += 1
            if kind == "error" and tally.first_error is None:
                tally.first_error = str(d.get("error"))


class Fleet:
    """2N client websockets to one server, with a reader task on each."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.rooms: list[Room] = []
        self.tally = Tally()
        self.tasks: list[asyncio.Task[None]] = []
        self.connect_s = 0.0

    def add(self, pat: Any, prov: Any) -> None:
        room = Room(pat, prov)
        self.rooms.append(room)
        self.tasks.append(asyncio.create_task(_reader(pat, room, self.tally, False)))
        self.tasks.append(asyncio.create_task(_reader(prov, room, self.tally, True)))

    async def close(self) -> None:
        async def one(ws: Any) -> None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 5)

        sem = asyncio.Semaphore(200)

        async def guarded(ws: Any) -> None:
            async with sem:
                await one(ws)

        await asyncio.gather(*(guarded(w) for r in self.rooms for w in (r.pat, r.prov)))
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def bounded(items: Sequence[Any], fn: Callable[[Any], Awaitable[Any]], n: int) -> list[Any]:
    sem = asyncio.Semaphore(n)

    async def one(x: Any) -> Any:
        async with sem:
            return await fn(x)

    return list(await asyncio.gather(*(one(x) for x in items)))


async def connect_ws(ws_session: Any, url: str, hello: bool) -> Any:
    ws = await ws_session.ws_connect(url, max_msg_size=64 * 1024, autoping=True)
    if hello:
        first = await ws.receive_json(timeout=30)
        if first.get("type") != "hello":
            raise RuntimeError(f"expected hello, got {first}")
    return ws


async def setup_gateway(
    cfg: Config, srv: Server, tmp: Path, http: Any, ws_session: Any, res: Results
) -> Fleet:
    from tests.gateway.idclient import admin, call, get_token, invite_and_enroll

    m = res.metrics
    c = _Client(http, srv.base)
    progress("gateway: enrolling an admin, one provider and one patient; consent to calls")
    adm, adm_t = await admin(c, tmp / "data")
    prov = await invite_and_enroll(c, adm, adm_t, "provider", npi=NPI)
    pat = await invite_and_enroll(c, adm, adm_t, "patient")
    prov_t, pat_t = await get_token(c, prov), await get_token(c, pat)
    until = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    r = await call(
        c,
        "POST",
        "/v1/consents",
        pat,
        pat_t,
        json={"grantee": prov.sub, "scopes": ["call"], "until": until},
    )
    if r.status != 201:
        raise RuntimeError(f"consent: HTTP {r.status}: {await r.text()}")

    async def expect(resp: Any, status: int, what: str) -> Any:
        body = await resp.json()
        if resp.status != status:
            raise RuntimeError(f"{what}: HTTP {resp.status}: {body}")
        return body

    n = cfg.sessions
    progress(f"gateway: scheduling {n:,} sessions (POST /v1/sessions)")
    t0 = now()

    async def schedule(_: int) -> str:
        r = await call(c, "POST", "/v1/sessions", prov, prov_t, json={"patient": pat.sub})
        return str((await expect(r, 201, "schedule"))["id"])

    sids = await bounded(range(n), schedule, SETUP_CONCURRENCY)
    m["gw_schedule_rate"] = n / (now() - t0)

    async def ticket_ws(sid: str, holder: Any, token: str) -> Any:
        r = await call(c, "POST", f"/v1/sessions/{sid}/ticket", holder, token)
        body = await expect(r, 200, "ticket")
        return await connect_ws(ws_session, srv.base + body["ws"], hello=True)

    # Tickets live 60 s: each one is fetched right before its socket connects.
    base = await srv.stat()
    progress(f"gateway: {n:,} patient sockets (ticket + connect: each session -> waiting)")
    t0 = now()
    pats = await bounded(sids, lambda s: ticket_ws(s, pat, pat_t), SETUP_CONCURRENCY)
    progress(f"gateway: {n:,} provider sockets")
    provs = await bounded(sids, lambda s: ticket_ws(s, prov, prov_t), SETUP_CONCURRENCY)
    fleet = Fleet("telegate")
    fleet.connect_s = now() - t0
    for a, b in zip(pats, provs, strict=True):
        fleet.add(a, b)
    await asyncio.sleep(1.0)
    waiting = await srv.stat()
    progress(f"gateway: admitting {n:,} sessions (POST /v1/sessions/{{id}}/admit)")
    t0 = now()

    async def admit(sid: str) -> None:
        r = await call(c, "POST", f"/v1/sessions/{sid}/admit", prov, prov_t)
        await expect(r, 200, "admit")

    await bounded(sids, admit, SETUP_CONCURRENCY)
    m["gw_admit_rate"] = n / (now() - t0)
    await asyncio.sleep(1.0)
    admitted = await srv.stat()
    m["gw_rss_base_kib"] = base["rss_kib"]
    m["gw_kib_per_waiting"] = (waiting["rss_kib"] - base["rss_kib"]) / n
    m["gw_kib_per_admitted"] = (admitted["rss_kib"] - base["rss_kib"]) / n
    m["gw_connect_rate"] = 2 * n / fleet.connect_s
    got = fleet.tally.kinds["admitted"]
    if got < 2 * n:
        await asyncio.sleep(2.0)
        got = fleet.tally.kinds["admitted"]
    if got < 2 * n:
        progress(f"gateway: warning: only {got:,} of {2 * n:,} sockets saw 'admitted'")
    return fleet


async def setup_echo(cfg: Config, srv: Server, ws_session: Any, res: Results) -> Fleet:
    n = cfg.sessions
    base = await srv.stat()
    progress(f"raw relay: connecting {2 * n:,} sockets")
    t0 = now()
    url = srv.base + "/ws/{}?party={}"
    pats = await bounded(
        range(n), lambda i: connect_ws(ws_session, url.format(i, "patient"), False), 64
    )
    provs = await bounded(
        range(n), lambda i: connect_ws(ws_session, url.format(i, "provider"), False), 64
    )
    fleet = Fleet("raw aiohttp relay")
    fleet.connect_s = now() - t0
    for a, b in zip(pats, provs, strict=True):
        fleet.add(a, b)
    await asyncio.sleep(1.0)
    idle = await srv.stat()
    res.metrics["raw_rss_base_kib"] = base["rss_kib"]
    res.metrics["raw_kib_per_idle"] = (idle["rss_kib"] - base["rss_kib"]) / n
    res.metrics["raw_connect_rate"] = 2 * n / fleet.connect_s
    return fleet


# -- the load ------------------------------------------------------------------------------
async def run_load(
    fleet: Fleet, srv: Server, mode: str, seconds: float, per_session: float
) -> dict[str, Any]:
    """``open``: every patient socket sends at ``per_session`` msg/s on a fixed schedule
    (random phase), whatever the replies do. ``closed``: every session keeps one message in
    flight (send, wait for it to arrive, send the next), at most SOCKET_CAP msg/s."""
    tally = fleet.tally
    tally.lat_ms, tally.received = [], 0
    errors0 = tally.kinds["error"]
    sent = 0
    lag_ms: list[float] = []
    stat0, cpu0 = await srv.stat(), time.process_time()
    t_start = now() + 0.2
    t_end = t_start + seconds
    tally.recording = True

    async def open_loop(room: Room, seq0: int) -> None:
        nonlocal sent
        period = 1.0 / per_session
        k = 0
        t_first = t_start + random.random() * period
        while True:
            due = t_first + k * period
            if due >= t_end:
                return
            delay = due - now()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                lag_ms.append(-delay * 1e3)
            await room.pat.send_str(candidate(seq0 + k, time.perf_counter_ns()))
            sent += 1
            k += 1

    async def closed_loop(room: Room, seq0: int) -> None:
        nonlocal sent
        gap = 1.0 / SOCKET_CAP
        k = 0
        delay = t_start - now()
        if delay > 0:
            await asyncio.sleep(delay + random.random() * gap)
        while now() < t_end:
            t0 = now()
            room.arrived.clear()
            await room.pat.send_str(candidate(seq0 + k, time.perf_counter_ns()))
            sent += 1
            k += 1
            try:
                await asyncio.wait_for(room.arrived.wait(), max(0.01, t_end - now() + 2.0))
            except TimeoutError:
                return
            rest = gap - (now() - t0)
            if rest > 0:
                await asyncio.sleep(rest)

    fn = open_loop if mode == "open" else closed_loop
    tasks = [asyncio.create_task(fn(r, i * 100_000)) for i, r in enumerate(fleet.rooms)]
    await asyncio.gather(*tasks)
    # Let the messages in flight arrive (they count, but not towards the rate's window).
    received_at_end = tally.received
    for _ in range(40):
        if tally.received >= sent:
            break
        await asyncio.sleep(0.05)
    tally.recording = False
    elapsed = max(now(), t_end) - t_start
    stat1, cpu1 = await srv.stat(), time.process_time()
    lat = sorted(tally.lat_ms)
    lag_ms.sort()
    server_cpu = stat1["cpu"] - stat0["cpu"]
    return {
        "mode": mode,
        "sent": sent,
        "received": tally.received,
        "lost": sent - tally.received,
        "rate": received_at_end / seconds,
        "p50": pct(lat, 0.5),
        "p99": pct(lat, 0.99),
        "p999": pct(lat, 0.999),
        "max": lat[-1] if lat else float("nan"),
        "errors": tally.kinds["error"] - errors0,
        "first_error": tally.first_error,
        "server_gc_count": stat1["gc"][0],
        "server_gc_max_ms": stat1["gc"][1],
        "server_gc_total_ms": stat1["gc"][2],
        "server_core": server_cpu / elapsed,
        "server_us_per_msg": server_cpu / max(1, tally.received) * 1e6,
        "client_core": (cpu1 - cpu0) / elapsed,
        "late_sends": len(lag_ms),
        "lag_p99": pct(lag_ms, 0.99) if lag_ms else 0.0,
    }


async def bench_system(
    cfg: Config, fleet: Fleet, srv: Server, key: str, res: Results
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    rate = cfg.per_session * cfg.sessions
    progress(
        f"{fleet.name}: open loop, {cfg.per_session:g} msg/s per session "
        f"({rate:,.0f} msg/s offered) for {cfg.seconds:g}s"
    )
    out["open"] = await run_load(fleet, srv, "open", cfg.seconds, cfg.per_session)
    await asyncio.sleep(1.1)  # a fresh rate-limit window for every socket
    progress(
        f"{fleet.name}: flat out (one message in flight per session, <= {SOCKET_CAP:g}/s "
        f"per socket) for {cfg.seconds:g}s"
    )
    out["closed"] = await run_load(fleet, srv, "closed", cfg.seconds, cfg.per_session)
    for mode, r in out.items():
        for k, v in r.items():
            if isinstance(v, int | float):
                res.metrics[f"{key}_{mode}_{k}"] = v
        progress(
            f"{fleet.name} {mode}: {r['rate']:,.0f} msg/s, p50 {r['p50']:.2f} ms, "
            f"p99 {r['p99']:.2f} ms, lost {r['lost']}, errors {r['errors']}"
        )
    return out


# -- report ---------------------------------------------------------------------------------
def report(
    cfg: Config, gw: dict[str, dict[str, Any]], raw: dict[str, dict[str, Any]], res: Results
) -> None:
    m = res.metrics
    n = cfg.sessions
    t = SigTable(f"Signalling relay: {n:,} sessions ({2 * n:,} websockets) on loopback")
    systems = (("telegate /v1/sessions/{id}/ws", gw, True), ("raw aiohttp relay", raw, False))
    offered = cfg.per_session * n
    for mode, label in (
        ("open", f"{offered:,.0f} msg/s offered ({cfg.per_session:g}/s per session)"),
        ("closed", f"flat out (1 in flight per session, <= {SOCKET_CAP:g}/s)"),
    ):
        for name, r, base in systems:
            x = r[mode]
            t.add(
                name,
                f"messages/s, {label}",
                x["rate"],
                "/s",
                key=f"{mode}_rate",
                base=base,
                note=f"({x['received']:,} received of {x['sent']:,} sent; server "
                f"{x['server_core']:.2f} core, client {x['client_core']:.2f} core)",
            )
            t.add(name, "  relay latency p50", x["p50"], "ms", key=f"{mode}_p50", base=base)
            t.add(
                name,
                "  relay latency p99",
                x["p99"],
                "ms",
                key=f"{mode}_p99",
                base=base,
                note=f"(p99.9 {x['p999']:.2f} ms, max {x['max']:.1f} ms; server GC: "
                f"{x['server_gc_count']} pauses, longest {x['server_gc_max_ms']:.1f} ms)",
            )
            t.add(
                name,
                "  server CPU per message",
                x["server_us_per_msg"],
                "us",
                key=f"{mode}_cpu",
                base=base,
            )
    t.notes += [
        "latency = receive time at the provider socket - send time at the patient socket, "
        "both read with perf_counter_ns in this client process (the send time travels in "
        "the candidate string, which both servers pass through); it includes the client's "
        "own event-loop delays, equally for both systems.",
        f"open loop: every patient socket sends on a fixed schedule with a random phase for "
        f"{cfg.seconds:g}s; messages/s counts arrivals within that window. Flat out: each "
        f"session sends its next message when the previous one has arrived, capped at "
        f"{SOCKET_CAP:g}/s per socket (the gateway's Hub allows 50/s per socket).",
        "the gateway parses each message, reads the session's state from sessions.db (a "
        "thread hop) and forwards the allowed fields as JSON; candidates are not written to "
        "the ledger. The raw relay forwards the frame's text unchanged.",
        "the client (this process, 2N sockets) shares the machine's CPUs with the server "
        f"under test ({os.cpu_count()} CPUs here); when the client's core reaches ~1.0 it is "
        "the limit, not the server.",
    ]
    for name, r, _ in systems:
        for mode in ("open", "closed"):
            if r[mode]["errors"] or r[mode]["lost"]:
                t.notes.append(
                    f"{name} {mode}: {r[mode]['errors']} error replies "
                    f"(first: {r[mode]['first_error']}), {r[mode]['lost']} messages lost"
                )
    res.emit(t)

    mt = SigTable(f"Memory and setup: {n:,} idle sessions")
    mt.add(
        "telegate, waiting room",
        "RSS per session (2 sockets)",
        m["gw_kib_per_waiting"],
        "KiB",
        key="kib",
        note=f"(gateway process RSS before sockets {m['gw_rss_base_kib'] / 1024:,.0f} MiB)",
    )
    mt.add(
        "telegate, admitted",
        "RSS per session (2 sockets)",
        m["gw_kib_per_admitted"],
        "KiB",
        key="kib",
        base=True,
    )
    mt.add(
        "raw aiohttp relay",
        "RSS per room (2 sockets)",
        m["raw_kib_per_idle"],
        "KiB",
        key="kib",
        note=f"(relay process RSS before sockets {m['raw_rss_base_kib'] / 1024:,.0f} MiB)",
    )
    mt.add(
        "telegate",
        "websockets opened/s (ticket + upgrade)",
        m["gw_connect_rate"],
        "/s",
        key="conn",
        base=True,
    )
    mt.add(
        "raw aiohttp relay",
        "websockets opened/s (upgrade)",
        m["raw_connect_rate"],
        "/s",
        key="conn",
    )
    mt.add(
        "telegate",
        "sessions scheduled/s (POST /v1/sessions)",
        m["gw_schedule_rate"],
        "/s",
        note=f"({SETUP_CONCURRENCY} concurrent requests)",
    )
    mt.add("telegate", "sessions admitted/s (POST .../admit)", m["gw_admit_rate"], "/s")
    mt.notes += [
        "each server runs in its own process (multiprocessing spawn); RSS is VmRSS from "
        "/proc/self/status read inside it after gc.collect(), before the sockets and 1 s "
        "after they are open (and again after admission), divided by N. It includes "
        "allocator slack and whatever caches grew meanwhile (sessions.db pages, ledger "
        "events of the waiting/admitted moves), so it is an upper bound for the sockets.",
        "one provider and one patient hold all N sessions (sessions are independent rooms in "
        "the hub); each socket gets its own single-use ticket just before it connects.",
    ]
    res.emit(mt)


def summarize(cfg: Config, res: Results) -> None:
    m = res.metrics
    lines: list[tuple[str, str, str]] = []
    n = cfg.sessions
    at = f"{n:,} sessions" + (" (--quick; the target is stated at 1,000)" if n < 1000 else "")
    p99 = m.get("gw_open_p99")
    if p99 is not None:
        ok = p99 < TARGET_P99_MS
        lines.append(
            (
                "PASS" if ok else "MISS",
                f"relay p99 < {TARGET_P99_MS:g} ms at 1,000 sessions",
                f"{p99:.2f} ms at {at}, {cfg.per_session * n:,.0f} msg/s offered "
                f"({'margin' if ok else 'over by'} {abs(TARGET_P99_MS - p99):.2f} ms, "
                f"{p99 / TARGET_P99_MS:.0%} of the target); raw relay {m['raw_open_p99']:.2f} ms",
            )
        )
        cp = m["gw_closed_p99"]
        lines.append(
            (
                "INFO",
                "  relay p99 flat out",
                f"{cp:.2f} ms at {m['gw_closed_rate']:,.0f} msg/s "
                f"({'under' if cp < TARGET_P99_MS else 'over'} the {TARGET_P99_MS:g} ms target); "
                f"raw relay {m['raw_closed_p99']:.2f} ms at {m['raw_closed_rate']:,.0f} msg/s",
            )
        )
    kib = m.get("gw_kib_per_admitted")
    if kib is not None:
        ok = kib < TARGET_KIB
        lines.append(
            (
                "PASS" if ok else "MISS",
                f"memory per idle session < {TARGET_KIB:g} KiB",
                f"{kib:.1f} KiB admitted, {m['gw_kib_per_waiting']:.1f} KiB waiting "
                f"({'margin' if ok else 'over by'} {abs(TARGET_KIB - kib):.1f} KiB); raw relay "
                f"{m['raw_kib_per_idle']:.1f} KiB per room",
            )
        )
    if "gw_closed_rate" in m and "raw_closed_rate" in m:
        g, r = m["gw_closed_rate"], m["raw_closed_rate"]
        lines.append(
            (
                "INFO",
                "messages/s vs the raw aiohttp relay (the limit)",
                f"telegate {g:,.0f}/s = {g / r:.0%} of raw {r:,.0f}/s flat out; server CPU per "
                f"message {m['gw_closed_server_us_per_msg']:.0f} µs vs "
                f"{m['raw_closed_server_us_per_msg']:.0f} µs",
            )
        )
        gu, ru = m["gw_closed_server_us_per_msg"], m["raw_closed_server_us_per_msg"]
        lines.append(
            (
                "INFO",
                "  relay capacity per server core (1 / CPU per message)",
                f"telegate {1e6 / gu:,.0f} msg/s per core = {ru / gu:.0%} of the raw relay's "
                f"{1e6 / ru:,.0f}; flat-out server load: telegate "
                f"{m['gw_closed_server_core']:.2f} core, raw {m['raw_closed_server_core']:.2f} "
                f"core, client {m['gw_closed_client_core']:.2f}/"
                f"{m['raw_closed_client_core']:.2f} core",
            )
        )
    note = "(--quick: N = 100 sessions and short runs; run without --quick for the target)"
    rows = [{"status": s, "target": tg, "detail": d} for s, tg, d in lines]
    print_summary(res, rows, note if cfg.quick else None)


# -- driver ---------------------------------------------------------------------------------
@dataclass
class Config:
    quick: bool
    sessions: int
    per_session: float
    seconds: float
    hard_limit: float
    json: str | None
    tmpdir: str | None


def parse_args(argv: Sequence[str] | None = None) -> Config:
    ap = argparse.ArgumentParser(
        prog="python -m bench.signalling",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    ap.add_argument("--quick", action="store_true", help="N = 100 sessions, < 1 minute")
    ap.add_argument("--sessions", type=int, help="concurrent sessions (default 1,000; quick 100)")
    ap.add_argument(
        "--rate",
        type=float,
        default=2.0,
        help="open-loop messages/s per session (default 2; must stay under 50)",
    )
    ap.add_argument("--seconds", type=float, help="length of each load run (default 10; quick 5)")
    ap.add_argument("--json", metavar="FILE", help="also write all results as JSON")
    ap.add_argument("--tmpdir", help="where to create the gateway's data directory")
    a = ap.parse_args(argv)
    q = a.quick
    n = a.sessions or (100 if q else 1000)
    if not 1 <= n <= 5000:
        ap.error("--sessions must be 1..5000")
    if not 0 < a.rate < 45:
        ap.error("--rate must be above 0 and under 45 (the gateway allows 50/s per socket)")
    return Config(
        quick=q,
        sessions=n,
        per_session=a.rate,
        seconds=a.seconds or (5.0 if q else 10.0),
        hard_limit=(55.0 if q else 290.0) * max(1.0, n / (100 if q else 1000)),
        json=a.json,
        tmpdir=a.tmpdir,
    )


def _load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def watchdog(cfg: Config, res: Results, tmp: Path, kill: Callable[[], None]) -> threading.Timer:
    def fire() -> None:
        print(f"\nWATCHDOG: run exceeded {cfg.hard_limit:g}s; stopping.", file=sys.stderr)
        with contextlib.suppress(Exception):
            res.dump(cfg.json, complete=False)
        kill()
        shutil.rmtree(tmp, ignore_errors=True)
        sys.stdout.flush()
        os._exit(3)

    timer = threading.Timer(cfg.hard_limit, fire)
    timer.daemon = True
    timer.start()
    return timer


async def amain(cfg: Config, res: Results, tmp: Path, servers: dict[str, Server]) -> None:
    import aiohttp

    gw_srv, raw_srv = servers["gateway"], servers["raw"]
    print(
        f"gateway at {gw_srv.base} (pid {gw_srv.pid}), raw relay at {raw_srv.base} "
        f"(pid {raw_srv.pid}); data in {tmp / 'data'}",
        flush=True,
    )
    timeout = aiohttp.ClientTimeout(total=60)
    gw: dict[str, dict[str, Any]] = {}
    raw: dict[str, dict[str, Any]] = {}
    async with (
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=SETUP_CONCURRENCY * 2), timeout=timeout
        ) as http,
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, force_close=True),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=30),
        ) as ws_session,
    ):
        try:
            fleet = await setup_gateway(cfg, gw_srv, tmp, http, ws_session, res)
            try:
                gw = await bench_system(cfg, fleet, gw_srv, "gw", res)
            finally:
                progress("gateway: closing the sockets")
                await fleet.close()
        except Exception as e:
            traceback.print_exc()
            res.errors["telegate"] = f"{type(e).__name__}: {e}"
        try:
            fleet = await setup_echo(cfg, raw_srv, ws_session, res)
            try:
                raw = await bench_system(cfg, fleet, raw_srv, "raw", res)
            finally:
                progress("raw relay: closing the sockets")
                await fleet.close()
        except Exception as e:
            traceback.print_exc()
            res.errors["raw"] = f"{type(e).__name__}: {e}"
    if gw and raw:
        report(cfg, gw, raw, res)
    summarize(cfg, res)


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_args(argv)
    nofile = raise_nofile()
    res = Results(args=dict(vars(cfg)))
    import aiohttp

    res.meta = {
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "nofile": nofile,
        "loadavg_at_start": os.getloadavg(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    mode = "quick" if cfg.quick else "full"
    print(
        f"telegate signalling benchmark ({mode}): N = {cfg.sessions:,} sessions, python "
        f"{res.meta['python']}, aiohttp {aiohttp.__version__}, {os.cpu_count()} CPUs, "
        f"{res.meta['platform']}, RLIMIT_NOFILE {nofile:,}, load average {_load()}\n"
        "ratio = value / telegate's value for the same metric (rates: >1 is faster than "
        "telegate; latency, CPU and memory: >1 costs more)",
        flush=True,
    )
    if nofile < 4 * cfg.sessions + 200:
        print(f"warning: RLIMIT_NOFILE {nofile} may be too low for {2 * cfg.sessions} sockets")
    tmp = Path(tempfile.mkdtemp(prefix="telegate-bench-signalling-", dir=cfg.tmpdir))
    servers: dict[str, Server] = {}

    def kill_all() -> None:
        for s in servers.values():
            s.kill()

    timer = watchdog(cfg, res, tmp, kill_all)
    try:
        progress("starting the gateway and the raw relay (two processes)")
        servers["gateway"] = Server("gateway", tmp / "data")
        servers["raw"] = Server("raw", tmp / "raw")
        asyncio.run(amain(cfg, res, tmp, servers))
        res.meta["elapsed_s"] = now() - _START
        res.meta["loadavg_at_end"] = os.getloadavg()
        print(f"\n(total {res.meta['elapsed_s']:.0f}s; load average at the end {_load()})")
        res.dump(cfg.json, complete=True)
    finally:
        for s in servers.values():
            s.close()
        timer.cancel()
        shutil.rmtree(tmp, ignore_errors=True)
    progress("done")
    return 1 if res.errors else 0


_START = now()

if __name__ == "__main__":
    raise SystemExit(main())
