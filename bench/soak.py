"""Soak: mixed traffic at a fixed offered load against a real ``telegate serve`` on loopback.

Not a test: it runs for ``--minutes`` (default 30), prints a table per minute (throughput,
p50/p99 per operation, the gateway's RSS and open file descriptors, errors by kind) and at
the end the issue's targets marked PASS or MISS:

- no 5xx other than deliberate shedding (a 503 whose problem type says so);
- RSS growth under 5 % from the end of minute 5 to the end;
- each operation's p99 in the last minute within 20 % of minute 5's;
- ``telegate ledger export`` + ``telegate verify`` of the log at the end accept it, and
  every acknowledged receipt is in it (its leaf hash at its index of the verified tiles).

    python -m bench.soak                       # 30 minutes
    python -m bench.soak --minutes 10 --json bench/out/soak.json

The traffic (all rates configurable): enrollments (an admin's invite, then its redemption),
token requests (every enrolled party in turn, which also keeps their tokens fresh),
consents granted and revoked, calls (scheduled by the patient, two signalling WebSockets,
the waiting room, admission, offer/answer with DTLS fingerprints, trickled candidates,
end), vitals batches from ``--devices`` simulated devices (500), and audit queries. Every
operation is started on a fixed schedule (open loop: a slow answer does not slow the
offered load, and latency counts from the scheduled time). The clients come from the
tests and the other benchmarks: ``tests.gateway.idclient`` (holder keys, client
assertions, DPoP), ``tests.gateway.vitals.world`` (signed vitals batches),
``bench.vitals.readings``, ``tests.gateway.test_sessions.sdp``, the gateway process of
``tests.faults.conftest``. :func:`soak` is what tests/soak runs for two minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if not __package__:
    # Run as a script (python bench/soak.py): look modules up from the repository root.
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    sys.path.insert(0, os.path.dirname(_here))

import aiohttp

from bench.auth import _Client
from bench.ledger import pct, print_summary, progress
from bench.vitals import readings
from gateway.errors import OVERLOADED_TYPE
from gateway.limits.memtrace import DIR_ENV, ENV, FRAMES_ENV
from ledger.log import Receipt
from ledger.note import Verifier
from ledger.tiles import split_hashes, tiles_for_size
from tests.faults.conftest import Gateway, cli
from tests.gateway.idclient import Holder, admin, call, invite_and_enroll, token_response
from tests.gateway.test_sessions import FP_PAT, FP_PROV, sdp
from tests.gateway.vitals.world import DEVICE, NPI, batch, iso, sign

#: The problem type of a deliberate 503 (load shed before latency collapses, gateway/limits):
#: counted apart, not a failure. Any other 503 (``unavailable``: a store down) is an outage.
SHED_TYPE = OVERLOADED_TYPE


def deliberate(status: int, body: Any) -> bool:
    """Whether an answer (its status and parsed JSON body) is load shed on purpose: a 503
    of the ``overloaded`` problem type, which the "no 5xx" target does not count."""
    return status == 503 and isinstance(body, dict) and body.get("type") == SHED_TYPE


REQUEST_TIMEOUT = 30.0  # no answer in this long is a hang, counted as an error
WS_TIMEOUT = 15.0
FD_SLACK = 32  # open descriptors the gateway may hold above the warm-up count at the end


@dataclass
class Settings:
    minutes: float = 30.0
    devices: int = 500
    patients: int = 50
    providers: int = 10
    vitals_interval: float = 10.0  # seconds between two batches of one device
    readings: int = 5  # readings per batch
    token_rate: float = 5.0  # token requests/s
    enroll_rate: float = 0.5  # enrollments/s (invite + redemption)
    consent_rate: float = 1.0  # grants/s; as many revocations
    call_rate: float = 0.2  # calls started/s
    call_candidates: int = 8  # candidates each way, one a second
    audit_rate: float = 0.5  # audit queries/s
    warmup_minute: int = 5  # the reference minute of the RSS and p99 targets
    inflight_max: int = 400  # operations of one kind in flight before a start is skipped
    tmpdir: str | None = None
    json: str | None = None
    #: Server-side tracemalloc (gateway/limits/memtrace.py): a baseline at the end of minute
    #: ``tracemalloc_at`` (default: the warm-up minute), the growth since it at the end.
    tracemalloc: bool = False
    tracemalloc_at: int = 0
    tracemalloc_out: str = "bench/out/tracemalloc.txt"
    tracemalloc_frames: int = 1


# -- measurements -----------------------------------------------------------------------------
@dataclass
class Minute:
    lat: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter[str] = field(default_factory=Counter)
    rss_kib: int = 0
    anon_kib: int = 0  # of the RSS, anonymous memory (the heaps: Python's, SQLite's caches)
    fds: int = 0
    clients: int = 0  # of fds, established client connections
    ledger_size: int = 0


class Recorder:
    """Every answer, by minute of the run and operation; the acknowledged receipts."""

    def __init__(self, t0: float, log: Verifier) -> None:
        self.t0 = t0
        self.log = log
        self.minutes: dict[int, Minute] = defaultdict(Minute)
        self.acks: list[tuple[int, bytes]] = []
        self.fivexx: Counter[str] = Counter()  # every 5xx not a deliberate shed, by kind
        self.shed = 0
        #: Every answer or failure: (operation, started, seconds taken, "ok" or its kind).
        self.answers: list[tuple[str, float, float, str]] = []

    def minute(self, t: float) -> Minute:
        return self.minutes[int((t - self.t0) // 60)]

    def ok(self, op: str, started: float) -> None:
        t = time.monotonic()
        self.minute(t).lat[op].append((t - started) * 1000)
        self.answers.append((op, started, t - started, "ok"))

    def error(self, op: str, kind: str, started: float | None = None) -> None:
        t = time.monotonic()
        self.minute(t).errors[f"{op}: {kind}"] += 1
        self.answers.append((op, t if started is None else started, t - (started or t), kind))

    def receipt(self, op: str, doc: Any) -> None:
        try:
            r = Receipt.from_json(doc)
            r.verify(self.log)  # offline: the checkpoint's signature and the inclusion proof
        except Exception as e:
            self.error(op, f"bad receipt ({type(e).__name__})")
            return
        self.acks.append((r.index, r.leaf_hash))


class Failed(Exception):
    """An operation's answer was not the one expected (already recorded)."""


class Traffic:
    """The parties, their tokens, and one coroutine per operation."""

    def __init__(
        self,
        s: Settings,
        http: aiohttp.ClientSession,
        base: str,
        rec: Recorder,
        client: _Client | None = None,
    ) -> None:
        self.s, self.http, self.rec = s, http, rec
        #: What DPoP proofs name (``make_url``); another client for a gateway behind a
        #: public URL of its own (tests/faults/test_restarts.py).
        self.c = client or _Client(http, base)
        self.base = base
        self.tokens: dict[str, str] = {}
        self.adm: Holder
        self.providers: list[Holder] = []
        self.auditors: list[Holder] = []
        self.patients: list[Holder] = []
        self.devices: list[Holder] = []
        self.consents: list[tuple[Holder, str, float]] = []  # (patient, id, granted at)
        self.enrolled = 0
        self.calls_done = 0
        self.relayed = 0
        self._turn: Any = None
        self.rng = random.Random(16)

    def tok(self, h: Holder) -> str:
        return self.tokens[h.sub]

    # -- one request, recorded -------------------------------------------------------------
    async def req(
        self, op: str, method: str, path: str, who: Holder, want: int, started: float, **kw: Any
    ) -> Any:
        """``method path`` as ``who`` (DPoP), recorded under ``op``: its JSON body if the
        status is ``want`` (and its receipt kept), else Failed."""
        try:
            resp = await call(self.c, method, path, who, self.tok(who), **kw)
            try:
                raw = await resp.read()
            finally:
                resp.release()
        except (TimeoutError, aiohttp.ClientError) as e:
            self.rec.error(op, type(e).__name__, started)
            raise Failed from e
        return self.answer(op, resp, raw, want, started)

    def answer(self, op: str, resp: aiohttp.ClientResponse, raw: bytes, want: int, t: float) -> Any:
        body: Any = None
        with contextlib.suppress(ValueError):
            body = json.loads(raw) if raw else None
        if resp.status != want:
            ptype = body.get("type", "") if isinstance(body, dict) else ""
            kind = f"{resp.status} {ptype.rsplit('/', 1)[-1]}".strip()
            if resp.status == 503 and "Retry-After" not in resp.headers:
                kind += " without Retry-After"
            self.rec.error(op, kind, t)
            if resp.status >= 500:
                if deliberate(resp.status, body):
                    self.rec.shed += 1
                else:
                    self.rec.fivexx[f"{op}: {kind}"] += 1
            raise Failed(kind)
        self.rec.ok(op, t)
        if isinstance(body, dict):
            for k in ("receipt", "query_receipt"):
                if isinstance(body.get(k), dict):
                    self.rec.receipt(op, body[k])
        return body

    async def new_token(self, h: Holder, op: str, started: float) -> None:
        try:
            resp = await token_response(self.c, h)  # type: ignore[arg-type]
            try:
                raw = await resp.read()
            finally:
                resp.release()
        except (TimeoutError, aiohttp.ClientError) as e:
            self.rec.error(op, type(e).__name__)
            raise Failed from e
        body = self.answer(op, resp, raw, 200, started)
        self.tokens[h.sub] = body["access_token"]

    # -- set-up -------------------------------------------------------------------------------
    async def setup(self, data_dir: Path) -> None:
        s, c = self.s, self.c
        self.adm, adm_t = await admin(c, data_dir)  # type: ignore[arg-type]
        self.tokens[self.adm.sub] = adm_t

        async def enroll(role: str, **extra: Any) -> Holder:
            return await invite_and_enroll(c, self.adm, adm_t, role, **extra)  # type: ignore[arg-type]

        progress(f"setup: {s.providers} providers, 2 auditors, {s.patients} patients")
        self.providers = await bounded(range(s.providers), lambda _: enroll("provider", npi=NPI))
        self.auditors = await bounded(range(2), lambda _: enroll("auditor"))
        self.patients = await bounded(range(s.patients), lambda _: enroll("patient"))
        t = time.monotonic()
        await bounded(self.patients, lambda h: self.new_token(h, "setup", t))
        progress(f"setup: {s.devices} devices, each registered by its patient")

        async def device(i: int) -> Holder:
            pat = self.patients[i % len(self.patients)]
            return await invite_and_enroll(
                c,  # type: ignore[arg-type]
                pat,
                self.tok(pat),
                "device",
                holder=Holder(),
                enroll_extra=DEVICE,
                patient=pat.sub,
            )

        self.devices = await bounded(range(s.devices), device)
        progress("setup: tokens for every party")
        others = self.providers + self.auditors + self.devices
        await bounded(others, lambda h: self.new_token(h, "setup", t))
        everyone = [self.adm, *self.patients, *others]
        self._turn = itertools.cycle(everyone)
        self.rec.minutes.clear()  # set-up answers are not the soak's

    # -- the operations -----------------------------------------------------------------------
    async def op_token(self, k: int, t: float) -> None:
        await self.new_token(next(self._turn), "token", t)

    async def op_vitals(self, k: int, t: float) -> None:
        dev = self.devices[k % len(self.devices)]
        jws = sign(dev, batch(readings(self.s.readings, time.time(), k)))
        hdr = {"Content-Type": "application/jose"}
        await self.req("vitals", "POST", "/v1/vitals", dev, 201, t, data=jws, headers=hdr)

    async def op_enroll(self, k: int, t: float) -> None:
        body = await self.req(
            "enroll.invite", "POST", "/v1/invites", self.adm, 201, t, json={"role": "patient"}
        )
        h, t2 = Holder(), time.monotonic()
        try:
            async with self.http.post(
                self.base + "/v1/enroll", json={"invite": body["invite"], "jwk": h.jwk}
            ) as resp:
                raw = await resp.read()
        except (TimeoutError, aiohttp.ClientError) as e:
            self.rec.error("enroll.redeem", type(e).__name__)
            raise Failed from e
        self.answer("enroll.redeem", resp, raw, 201, t2)
        self.enrolled += 1

    async def op_consent(self, k: int, t: float) -> None:
        pat = self.patients[k % len(self.patients)]
        prov = self.rng.choice(self.providers)
        doc = {
            "grantee": prov.sub,
            "scopes": ["call", "vitals.read"],
            "until": iso(time.time() + 3600),
        }
        body = await self.req("consent.grant", "POST", "/v1/consents", pat, 201, t, json=doc)
        self.consents.append((pat, body["id"], time.monotonic()))

    async def op_revoke(self, k: int, t: float) -> None:
        # The oldest grant, once a minute old: grants and revocations keep pace.
        if not self.consents or time.monotonic() - self.consents[0][2] < 60:
            return
        pat, cid, _ = self.consents.pop(0)
        await self.req("consent.revoke", "DELETE", f"/v1/consents/{cid}", pat, 200, t)

    async def op_audit(self, k: int, t: float) -> None:
        aud = self.auditors[k % len(self.auditors)]
        pat = self.rng.choice(self.patients)
        await self.req("audit", "GET", f"/v1/audit/events?subject={pat.sub}&limit=50", aud, 200, t)

    async def op_call(self, k: int, t: float) -> None:
        pat = self.patients[k % len(self.patients)]
        prov = self.providers[k % len(self.providers)]
        body = await self.req(
            "call.create", "POST", "/v1/sessions", pat, 201, t, json={"provider": prov.sub}
        )
        sid = body["id"]
        sockets: list[aiohttp.ClientWebSocketResponse] = []
        try:
            prov_ws = await self.socket(sid, prov, sockets)
            pat_ws = await self.socket(sid, pat, sockets)
            await self.expect("ws.waiting", prov_ws, "waiting")
            t2 = time.monotonic()
            await self.req("call.admit", "POST", f"/v1/sessions/{sid}/admit", prov, 200, t2)
            await self.expect("ws.admitted", prov_ws, "admitted")
            await self.expect("ws.admitted", pat_ws, "admitted")
            await self.relay(pat_ws, prov_ws, {"type": "offer", "sdp": sdp(FP_PAT)})
            await self.relay(prov_ws, pat_ws, {"type": "answer", "sdp": sdp(FP_PROV)})
            for n in range(self.s.call_candidates):
                await asyncio.sleep(1)
                cand = {
                    "type": "candidate",
                    "candidate": f"candidate:{n} 1 udp 1 10.0.0.{n} 9 typ host",
                }
                cand |= {"sdpMid": "0", "sdpMLineIndex": 0}
                await self.relay(pat_ws, prov_ws, cand)
                await self.relay(prov_ws, pat_ws, cand)
            t3 = time.monotonic()
            await self.req("call.end", "POST", f"/v1/sessions/{sid}/end", pat, 200, t3)
            await self.expect("ws.bye", prov_ws, "bye")
            self.calls_done += 1
        finally:
            for ws in sockets:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), 5)

    async def socket(
        self, sid: str, who: Holder, into: list[aiohttp.ClientWebSocketResponse]
    ) -> aiohttp.ClientWebSocketResponse:
        t = time.monotonic()
        body = await self.req("call.ticket", "POST", f"/v1/sessions/{sid}/ticket", who, 200, t)
        t = time.monotonic()
        try:
            ws = await self.http.ws_connect(
                f"{self.base}/v1/sessions/{sid}/ws?ticket={body['ticket']}",
                timeout=aiohttp.ClientWSTimeout(ws_close=5),
            )
        except (TimeoutError, aiohttp.ClientError) as e:
            self.rec.error("ws.connect", type(e).__name__)
            raise Failed from e
        into.append(ws)
        await self.expect("ws.connect", ws, "hello", t)
        return ws

    async def expect(
        self, op: str, ws: aiohttp.ClientWebSocketResponse, kind: str, t: float | None = None
    ) -> dict[str, Any]:
        started = time.monotonic() if t is None else t
        try:
            msg = await ws.receive_json(timeout=WS_TIMEOUT)
        except (TimeoutError, TypeError, ValueError, aiohttp.ClientError) as e:
            self.rec.error(op, f"no {kind} ({type(e).__name__})")
            raise Failed from e
        if isinstance(msg, dict) and msg.get("type") == "bye" and kind != "bye":
            # The gateway ended the call (the patient revoked the provider's consent
            # meanwhile, say): the mix makes that happen; counted by its reason.
            self.rec.error(op, f"call ended by {msg.get('from')}: {msg.get('reason')}")
            raise Failed
        if not isinstance(msg, dict) or msg.get("type") != kind:
            got = msg.get("type") if isinstance(msg, dict) else "?"
            detail = msg.get("error", "") if isinstance(msg, dict) else ""
            self.rec.error(op, f"{got} instead of {kind} {detail}".strip())
            raise Failed
        if t is not None or op == "ws.relay":
            # Timed from a send or a connect; a notice the gateway pushes (waiting,
            # admitted, bye) has no start of its own here, and is only checked.
            self.rec.ok(op, started)
        return msg

    async def relay(
        self,
        a: aiohttp.ClientWebSocketResponse,
        b: aiohttp.ClientWebSocketResponse,
        msg: dict[str, Any],
    ) -> None:
        t = time.monotonic()
        try:
            await a.send_json(msg)
        except (ConnectionError, aiohttp.ClientError) as e:  # closed by the gateway
            self.rec.error("ws.relay", f"send: {type(e).__name__}")
            raise Failed from e
        await self.expect("ws.relay", b, msg["type"], t)
        self.relayed += 1


async def bounded(items: Any, fn: Callable[[Any], Awaitable[Any]], n: int = 8) -> list[Any]:
    sem = asyncio.Semaphore(n)

    async def one(x: Any) -> Any:
        async with sem:
            return await fn(x)

    return list(await asyncio.gather(*(one(x) for x in items)))


# -- the open loop ------------------------------------------------------------------------------
class Schedule:
    """Each operation started at fixed intervals until ``stop``, each in its own task."""

    def __init__(self, s: Settings, rec: Recorder) -> None:
        self.s, self.rec = s, rec
        self.tasks: set[asyncio.Task[None]] = set()
        self.inflight: Counter[str] = Counter()
        self.stopping = False

    async def every(
        self, name: str, rate: float, fn: Callable[[int, float], Awaitable[None]]
    ) -> None:
        if rate <= 0:
            return
        start = time.monotonic()
        for k in itertools.count():
            at = start + k / rate
            delay = at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if self.stopping:
                return
            if self.inflight[name] >= self.s.inflight_max:
                self.rec.error(name, "skipped: client backlog")
                continue
            self.inflight[name] += 1
            task = asyncio.create_task(self._one(name, fn, k, at))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _one(
        self, name: str, fn: Callable[[int, float], Awaitable[None]], k: int, at: float
    ) -> None:
        try:
            await fn(k, at)
        except Failed:
            pass
        except Exception as e:
            self.rec.error(name, f"client {type(e).__name__}: {e}"[:120])
        finally:
            self.inflight[name] -= 1


def anon_kib(pid: int) -> int:
    """The process's anonymous resident memory (KiB): RSS less mapped files and shared
    memory; what a heap that grows (Python's, SQLite's page caches, glibc's arenas) adds."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0


def proc_sample(pid: int, port: int) -> tuple[int, int, int]:
    """The process's resident set (KiB), open file descriptors, and how many of those are
    established client connections to ``port`` (their number follows the load: with more
    requests in flight the client opens more; a connection the gateway failed to close is
    not established but CLOSE_WAIT, and stays counted as a descriptor)."""
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    links = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            links.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
    sockets = {int(x[8:-1]) for x in links if x.startswith("socket:[")}
    clients = 0
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/net/{table}") as f:
            next(f)
            for line in f:
                col = line.split()
                local_port = int(col[1].rsplit(":", 1)[1], 16)
                if local_port == port and col[3] == "01" and int(col[9]) in sockets:
                    clients += 1
    return rss, len(links), clients


@dataclass
class Outcome:
    """What :func:`soak` measured; ``targets`` as (status, target, detail)."""

    minutes: list[dict[str, Any]]
    fivexx: dict[str, int]
    shed: int
    acks: int
    missing: int
    verified: bool
    verify_output: str
    fds_warm: int
    fds_end: int
    rss_warm: int
    rss_end: int
    counts: dict[str, int]
    targets: list[dict[str, str]] = field(default_factory=list)


def report_minute(i: int, m: Minute) -> None:
    ops = sorted(m.lat)
    w = max([len(o) for o in ops] + [14])
    rss = f"RSS {m.rss_kib / 1024:,.1f} MiB (anonymous {m.anon_kib / 1024:,.1f})"
    fds = f"{m.fds} fds ({m.clients} client connections)"
    print(f"\n== minute {i + 1}: {rss}, {fds}, log size {m.ledger_size:,} ==")
    print(f"{'operation':<{w}} | {'answers':>7} | {'per s':>7} | {'p50 ms':>8} | {'p99 ms':>8}")
    print("-" * (w + 45))
    for op in ops:
        xs = sorted(m.lat[op])
        p50, p99 = pct(xs, 0.5), pct(xs, 0.99)
        print(f"{op:<{w}} | {len(xs):>7,} | {len(xs) / 60:>7.2f} | {p50:>8.2f} | {p99:>8.2f}")
    for kind, n in sorted(m.errors.items()):
        print(f"  error {kind}: {n}")
    sys.stdout.flush()


async def ledger_size(http: aiohttp.ClientSession, base: str) -> int:
    with contextlib.suppress(Exception):
        async with http.get(base + "/readyz") as r:
            return int((await r.json())["ledger_size"])
    return 0


async def soak(s: Settings, tmp: Path) -> Outcome:
    """Start ``telegate serve`` in ``tmp``, set up the parties, run the traffic for
    ``s.minutes``, then export and verify the log. The gateway is stopped on return."""
    data = tmp / "data"
    env = {ENV: "1", DIR_ENV: str(tmp / "tracemalloc"), FRAMES_ENV: str(s.tracemalloc_frames)}
    env = env if s.tracemalloc else {}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # for the gateway process only (tests.faults.conftest.spawn)
    try:
        gw = Gateway(data, tmp)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    try:
        return await _soak(s, tmp, gw)
    finally:
        gw.stop()


def keep_report(path: Path, out: Path) -> str:
    """Copy the report at ``path`` (in the soak's temporary directory) to ``out``."""
    text = path.read_text()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return text


async def memory_report(pid: int, tmp: Path, n: int) -> Path:
    """Ask the gateway (SIGUSR2) for its ``n``-th tracemalloc report and wait for it."""
    path = tmp / "tracemalloc" / f"tracemalloc-{n}.txt"
    os.kill(pid, signal.SIGUSR2)
    for _ in range(1200):  # a snapshot of a large heap takes a while; at most 2 minutes
        await asyncio.sleep(0.1)
        if path.exists() and path.read_text().endswith("\n"):
            return path
    raise RuntimeError(f"no tracemalloc report at {path}")


async def _soak(s: Settings, tmp: Path, gw: Gateway) -> Outcome:
    assert gw.proc is not None
    data = gw.data_dir
    pid = gw.proc.pid
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
        async with http.get(gw.url + "/ledger/vkey") as r:
            vkey = (await r.text()).strip()
        rec = Recorder(time.monotonic(), Verifier.from_vkey(vkey))
        traffic = Traffic(s, http, gw.url, rec)
        await traffic.setup(data)
        rss0, fds0, _ = proc_sample(pid, gw.port)
        progress(
            f"set up; gateway RSS {rss0 / 1024:.1f} MiB, {fds0} fds; load for {s.minutes:g} min"
        )
        rec.t0 = time.monotonic()
        sched = Schedule(s, rec)
        loops = [
            sched.every("vitals", s.devices / s.vitals_interval, traffic.op_vitals),
            sched.every("token", s.token_rate, traffic.op_token),
            sched.every("enroll", s.enroll_rate, traffic.op_enroll),
            sched.every("consent", s.consent_rate, traffic.op_consent),
            sched.every("revoke", s.consent_rate, traffic.op_revoke),
            sched.every("call", s.call_rate, traffic.op_call),
            sched.every("audit", s.audit_rate, traffic.op_audit),
        ]
        runners = [asyncio.create_task(x) for x in loops]
        total = max(1, round(s.minutes * 60))
        n_minutes = (total + 59) // 60
        trace_at = min(s.tracemalloc_at or s.warmup_minute, n_minutes - 1)
        for i in range(n_minutes):
            end = rec.t0 + min(total, (i + 1) * 60)
            await asyncio.sleep(max(0.0, end - time.monotonic()))
            m = rec.minutes[i]
            m.rss_kib, m.fds, m.clients = proc_sample(pid, gw.port)
            m.anon_kib = anon_kib(pid)
            m.ledger_size = await ledger_size(http, gw.url)
            report_minute(i, m)
            if s.tracemalloc and i + 1 in (trace_at, n_minutes):
                n = 1 if i + 1 == trace_at else 2
                path = await memory_report(pid, tmp, n)
                progress(f"tracemalloc report {n} (minute {i + 1}): {path}")
                if n == 2:
                    text = await asyncio.to_thread(keep_report, path, Path(s.tracemalloc_out))
                    print(f"\n== tracemalloc: growth from minute {trace_at} to {i + 1} ==")
                    print("\n".join(text.splitlines()[:25]))
                    progress(f"whole report in {s.tracemalloc_out}")
        sched.stopping = True
        await asyncio.gather(*runners)
        progress(f"load stopped; waiting for {len(sched.tasks)} operations in flight")
        if sched.tasks:
            await asyncio.wait(list(sched.tasks), timeout=REQUEST_TIMEOUT + 30)
    progress("telegate ledger export + telegate verify")
    verified, missing, output = check_log(rec.acks, tmp, vkey, ("--data-dir", str(data)), cli)
    last = rec.minutes[n_minutes - 1]
    ref = rec.minutes[min(s.warmup_minute, n_minutes) - 1]
    warm = rec.minutes[0]
    errors = Counter[str]()
    for m in rec.minutes.values():
        errors.update(m.errors)
    res = Outcome(
        minutes=[
            {
                "minute": i + 1,
                "rss_kib": m.rss_kib,
                "anon_kib": m.anon_kib,
                "fds": m.fds,
                "client_connections": m.clients,
                "ledger_size": m.ledger_size,
                "ops": {
                    op: {
                        "n": len(xs),
                        "p50_ms": pct(sorted(xs), 0.5),
                        "p99_ms": pct(sorted(xs), 0.99),
                    }
                    for op, xs in sorted(m.lat.items())
                },
                "errors": dict(m.errors),
            }
            for i, m in sorted(rec.minutes.items())
            if i < n_minutes
        ],
        fivexx=dict(rec.fivexx),
        shed=rec.shed,
        acks=len(rec.acks),
        missing=missing,
        verified=verified,
        verify_output=output,
        fds_warm=warm.fds - warm.clients,
        fds_end=last.fds - last.clients,
        rss_warm=ref.rss_kib,
        rss_end=last.rss_kib,
        counts={
            "enrolled": traffic.enrolled,
            "calls": traffic.calls_done,
            "relayed": traffic.relayed,
            "errors": sum(errors.values()),
        },
    )
    res.targets = targets(s, res, ref, last, n_minutes)
    return res


def check_log(
    acks: Sequence[tuple[int, bytes]],
    tmp: Path,
    vkey: str,
    where: Sequence[str],
    run: Callable[..., Any],
) -> tuple[bool, int, str]:
    """Everything acknowledged is in a log that verifies: ``telegate ledger export`` (of the
    store ``where`` names, while the gateway still serves) into ``tmp/export``, ``telegate
    verify`` of that directory against ``vkey``, each receipt's leaf hash looked up at its
    index in the verified level-0 tiles. ``run(*args, check=, timeout=)`` runs the CLI (a
    CompletedProcess). Returns (verified, receipts missing, the verifier's output)."""
    out, vkey_file = tmp / "export", tmp / "log.vkey"
    vkey_file.write_text(vkey + "\n")
    run("ledger", "export", str(out), *where, check=True, timeout=600)
    v = run("verify", "--vkey", str(vkey_file), "--quiet", str(out), check=False, timeout=600)
    if v.returncode != 0:
        return False, len(acks), (v.stdout + v.stderr)[-2000:]
    size = int((out / "checkpoint").read_text().splitlines()[1])
    leaves: list[bytes] = []
    for tile in tiles_for_size(size, 0):
        leaves += split_hashes((out / tile.path).read_bytes(), tile.width)
    missing = sum(1 for i, h in acks if i >= size or leaves[i] != h)
    return True, missing, (v.stdout + v.stderr)[-2000:]


def targets(s: Settings, res: Outcome, ref: Minute, last: Minute, n: int) -> list[dict[str, str]]:
    def line(ok: bool, target: str, detail: str) -> dict[str, str]:
        return {"status": "PASS" if ok else "MISS", "target": target, "detail": detail}

    refname = f"minute {min(s.warmup_minute, n)}"
    kinds = ", ".join(f"{k} x{v}" for k, v in res.fivexx.items())
    out = [
        line(
            not res.fivexx,
            "no 5xx other than deliberate shedding",
            f"{sum(res.fivexx.values())} ({kinds or 'none'}); shed {res.shed}",
        )
    ]
    growth = (res.rss_end - res.rss_warm) / res.rss_warm if res.rss_warm else float("nan")
    out.append(
        line(
            growth < 0.05,
            f"RSS growth < 5% after {refname}",
            f"{growth:+.1%} ({res.rss_warm / 1024:,.1f} -> {res.rss_end / 1024:,.1f} MiB)",
        )
    )
    worst, parts = 0.0, []
    for op in sorted(set(ref.lat) & set(last.lat)):
        a, b = pct(sorted(ref.lat[op]), 0.99), pct(sorted(last.lat[op]), 0.99)
        r = b / a if a else float("nan")
        worst = max(worst, r)
        parts.append(f"{op} {a:.1f}->{b:.1f} ms ({r:.2f}x)")
    out.append(
        line(
            bool(parts) and worst <= 1.2,
            f"p99 in the last minute within 20% of {refname}'s, every operation",
            f"worst {worst:.2f}x; " + "; ".join(parts),
        )
    )
    out.append(
        line(
            res.verified and res.missing == 0 and res.acks > 0,
            "telegate verify accepts the log, every acknowledged receipt in it",
            f"verify {'OK' if res.verified else 'FAILED'}; {res.acks:,} receipts,"
            f" {res.missing} missing",
        )
    )
    out.append(
        line(
            res.fds_end <= res.fds_warm + FD_SLACK,
            f"open fds (client connections apart) at the end <= after minute 1 + {FD_SLACK}",
            f"{res.fds_warm} -> {res.fds_end}",
        )
    )
    return out


# -- command line ---------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None = None) -> Settings:
    d = Settings()
    p = argparse.ArgumentParser(prog="bench.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=d.minutes, help="length of the load (30)")
    p.add_argument("--devices", type=int, default=d.devices)
    p.add_argument("--patients", type=int, default=d.patients)
    p.add_argument("--providers", type=int, default=d.providers)
    p.add_argument(
        "--vitals-interval",
        type=float,
        default=d.vitals_interval,
        help="seconds between two batches of one device (10)",
    )
    p.add_argument("--readings", type=int, default=d.readings, help="readings per batch (5)")
    p.add_argument("--token-rate", type=float, default=d.token_rate)
    p.add_argument("--enroll-rate", type=float, default=d.enroll_rate)
    p.add_argument("--consent-rate", type=float, default=d.consent_rate)
    p.add_argument("--call-rate", type=float, default=d.call_rate)
    p.add_argument("--call-candidates", type=int, default=d.call_candidates)
    p.add_argument("--audit-rate", type=float, default=d.audit_rate)
    p.add_argument(
        "--warmup-minute",
        type=int,
        default=d.warmup_minute,
        help="the reference minute of the RSS and p99 targets (5)",
    )
    p.add_argument(
        "--tracemalloc",
        action="store_true",
        help="trace the gateway's allocations: a baseline at --tracemalloc-at, the growth "
        "since it at the end (written to --tracemalloc-out)",
    )
    p.add_argument(
        "--tracemalloc-at",
        type=int,
        default=d.tracemalloc_at,
        help="the minute whose end is the baseline (default: --warmup-minute)",
    )
    p.add_argument("--tracemalloc-out", default=d.tracemalloc_out)
    p.add_argument(
        "--tracemalloc-frames",
        type=int,
        default=d.tracemalloc_frames,
        help="frames kept per allocation (1; more slow the gateway several times over)",
    )
    p.add_argument("--tmpdir", default=None, help="where to put the data directory")
    p.add_argument("--json", default=None, help="also write every minute's figures as JSON")
    a = p.parse_args(argv)
    return Settings(**{k: v for k, v in vars(a).items() if k in Settings.__dataclass_fields__})


def offered(s: Settings) -> str:
    return (
        f"vitals {s.devices / s.vitals_interval:g}/s ({s.devices} devices, {s.readings} readings"
        f" a batch), tokens {s.token_rate:g}/s, enrollments {s.enroll_rate:g}/s, consents"
        f" {s.consent_rate:g}/s granted and as many revoked, calls {s.call_rate:g}/s"
        f" ({s.call_candidates} candidates each way, 1/s), audit queries {s.audit_rate:g}/s"
    )


def main(argv: Sequence[str] | None = None) -> int:
    s = parse_args(argv)
    print(f"# soak: {s.minutes:g} minutes; offered: {offered(s)}")
    print(f"# load average at the start: {os.getloadavg()} ({os.cpu_count()} CPUs)")
    with tempfile.TemporaryDirectory(prefix="telegate-soak-", dir=s.tmpdir) as tmp:
        res = asyncio.run(soak(s, Path(tmp)))
    print(f"\n# {res.counts}; load average at the end: {os.getloadavg()}")
    if not res.verified:
        print(res.verify_output)
    print_summary(_Summary(), res.targets, None)  # type: ignore[arg-type]
    if s.json:
        Path(s.json).parent.mkdir(parents=True, exist_ok=True)
        Path(s.json).write_text(json.dumps({"settings": asdict(s), **asdict(res)}, indent=1))
    return 0


class _Summary:
    """What bench.ledger.print_summary keeps the lines in."""

    def __init__(self) -> None:
        self.summary: list[dict[str, str]] = []
        self.errors: dict[str, str] = {}


if __name__ == "__main__":
    raise SystemExit(main())
