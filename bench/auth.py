"""Benchmark of telegate's authentication: DPoP-bound tokens against raw PyJWT.

Not a test: it measures and prints tables (system | metric | value | ratio to telegate),
then checks the targets of the identity issue and prints PASS/MISS with the margin.

    python -m bench.auth --quick              # ~1 min (what `make bench` runs)
    python -m bench.auth                      # full run, < 5 min
    python -m bench.auth --sections verify --json bench/out/auth.json
    python -m bench.auth --sections issue --database-url postgresql://postgres@127.0.0.1/test

One run starts a real gateway (``create_app``) on 127.0.0.1 with a fresh data directory.
With ``--database-url``, section 3 also runs a second gateway whose stores (identity, the
ledger, ...) are in a fresh schema of that PostgreSQL database, and sets its server CPU per
token beside the SQLite gateway's (target: at most 15% more).
Section 1 calls its ``Authority`` directly, beside raw PyJWT; sections 2 and 3 drive it
over loopback HTTP from a load-generator process. Progress goes to stderr, results to
stdout. A watchdog stops the run if it overruns.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import multiprocessing as mp
import os
import platform
import re
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

if not __package__:
    # Run as a script (python bench/auth.py): this file's directory would shadow the
    # ``ledger`` package, so look modules up from the repository root instead.
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    sys.path.insert(0, os.path.dirname(_here))

from bench.ledger import Results, Table, fmt, pct, print_summary, progress, status

LOG_ORIGIN = "bench.example/telegate/log"
CONCURRENCY = (1, 10, 50)
TARGET_RATIO = 0.60  # verified requests / raw PyJWT decodes, on one core
PG_CPU_TARGET = 1.15  # server CPU per token, PostgreSQL gateway / SQLite gateway
HOLDERS = 8  # enrolled clients that take turns at the token endpoint
LIVE_JTIS = 100_000  # client-assertion ids kept by the store after minutes of issuance

now = time.perf_counter


# -- tables ---------------------------------------------------------------------------------
class AuthTable(Table):
    """bench.ledger's table, with a few more units (µs, cores, plain decimals)."""

    def format_value(self, value: float | None, unit: str) -> str:
        return _fmt(value, unit)


def _fmt(v: float | None, unit: str) -> str:
    if v is not None and v == v:  # not NaN
        if unit == "us":
            return f"{v:,.1f} µs"
        if unit == "core":
            return f"{v:.2f} core"
        if unit == "avg":
            return f"{v:,.2f}"
    return fmt(v, unit)


def _med(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


# -- the load generator (a separate process: the gateway keeps its own core) -----------------
@dataclass
class Job:
    method: str
    url: str
    requests: list[tuple[dict[str, str], bytes | None]]  # headers, body
    concurrency: int
    warmup: int  # the first ``warmup`` requests open the connections and are not timed
    timeout: float  # stop sending after this long
    #: Several servers (replicas): request i goes to ``urls[i % len(urls)]`` instead of ``url``.
    urls: tuple[str, ...] = ()


def _loadgen_main(conn: Connection) -> None:
    """Child process: run jobs until the pipe closes."""
    logging.disable(logging.CRITICAL)
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        try:
            out = asyncio.run(_run_job(job))
        except Exception as e:
            out = {"error": f"{type(e).__name__}: {e}"}
        try:
            conn.send(out)
        except (BrokenPipeError, OSError):
            return


async def _run_job(job: Job) -> dict[str, Any]:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=job.concurrency, limit_per_host=job.concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    lat: list[float] = []
    status: Counter[str] = Counter()
    first_error: list[str] = []
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        urls = job.urls or (job.url,)

        async def one(i: int, headers: dict[str, str], body: bytes | None, timed: bool) -> None:
            t, url = now(), urls[i % len(urls)]
            try:
                async with session.request(job.method, url, headers=headers, data=body) as r:
                    payload = await r.read()
                    code = r.status
            except (aiohttp.ClientError, TimeoutError) as e:
                status[type(e).__name__] += 1
                if not first_error:
                    first_error.append(f"{type(e).__name__}: {e}")
                return
            if timed:
                lat.append(now() - t)
                status[str(code)] += 1
            if code >= 400 and not first_error:
                first_error.append(f"HTTP {code}: {payload[:400].decode(errors='replace')}")

        reqs = enumerate(job.requests)
        warm = [next(reqs) for _ in range(min(job.warmup, len(job.requests)))]
        await asyncio.gather(*(one(i, h, b, False) for i, (h, b) in warm))
        deadline = now() + job.timeout
        cpu0, t0 = time.process_time(), now()

        async def worker() -> None:
            for i, (h, b) in reqs:  # one iterator shared by all workers
                if now() > deadline:
                    break
                await one(i, h, b, True)

        await asyncio.gather(*(worker() for _ in range(job.concurrency)))
        elapsed, cpu = now() - t0, time.process_time() - cpu0
    lat.sort()
    return {
        "n": len(lat),
        "elapsed": elapsed,
        "client_cpu": cpu,
        "status": dict(status),
        "p50": pct(lat, 0.5),
        "p99": pct(lat, 0.99),
        "first_error": first_error[0] if first_error else None,
        "warm": len(warm),
    }


class LoadGen:
    def __init__(self) -> None:
        ctx = mp.get_context("spawn")  # the parent has threads (the ledger writer)
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_loadgen_main, args=(child,), name="bench-loadgen")
        self.proc.daemon = True
        self.proc.start()
        child.close()

    async def run(self, job: Job) -> dict[str, Any]:
        """Run ``job`` in the child while this event loop keeps serving; with the parent's
        CPU time over the same stretch (the gateway: handlers, ledger writer, threads)."""
        await asyncio.to_thread(self.conn.send, job)
        t0, times0 = now(), os.times()
        limit = job.timeout + 120

        def recv() -> Any:
            if not self.conn.poll(limit):
                raise TimeoutError(f"load generator gave no answer within {limit:.0f}s")
            return self.conn.recv()

        out: dict[str, Any] = await asyncio.to_thread(recv)
        times1 = os.times()
        user, system = times1.user - times0.user, times1.system - times0.system
        out["server_cpu"] = user + system
        out["server_sys"] = system / (user + system) if user + system else float("nan")
        out["wall"] = now() - t0
        # What was sent, warm-up included: a row that hit its time limit sent fewer than
        # it was given (CPU per request divides by this).
        out["sent"] = out.get("warm", 0) + sum(out.get("status", {}).values())
        if "error" in out:
            raise RuntimeError(f"load generator failed: {out['error']}")
        return out

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)

    def kill(self) -> None:
        with contextlib.suppress(Exception):
            if self.proc.pid is not None:
                os.kill(self.proc.pid, 9)


# -- the gateway under test -------------------------------------------------------------------
class _Client:
    """The slice of aiohttp's TestClient that tests.gateway.idclient uses."""

    def __init__(self, session: Any, base: str) -> None:
        self.session, self.base = session, base

    def make_url(self, path: str) -> Any:
        from yarl import URL

        return URL(self.base + path)

    async def request(self, method: str, path: str, **kw: Any) -> Any:
        return await self.session.request(method, self.base + path, **kw)

    async def get(self, path: str, **kw: Any) -> Any:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, **kw: Any) -> Any:
        return await self.request("POST", path, **kw)


class Gateway:
    """create_app(Config(...)) served by an AppRunner on 127.0.0.1, plus enrolled clients."""

    def __init__(self, data_dir: Path, access_log: bool, database_url: str | None = None) -> None:
        self.data_dir = data_dir
        self.database_url = database_url
        self.access_log = access_log
        self._devnull: Any = None
        if access_log:
            # What `telegate serve` does (JSON lines at INFO), written to /dev/null.
            from gateway.observability import JSONFormatter

            self._devnull = open(os.devnull, "w")  # noqa: SIM115 (closed in stop)
            handler = logging.StreamHandler(self._devnull)
            handler.setFormatter(JSONFormatter())
            acc = logging.getLogger("telegate.access")
            acc.handlers[:] = [handler]
            acc.setLevel(logging.INFO)
            acc.propagate = False

    async def start(self) -> None:
        import aiohttp
        from aiohttp import web

        from gateway.app import create_app
        from gateway.appkeys import AUTHORITY
        from gateway.config import Config as GatewayConfig
        from tests.gateway.idclient import Holder, enroll, get_token, local_invite

        self.config = GatewayConfig(
            data_dir=self.data_dir,
            log_origin=LOG_ORIGIN,
            database_url=self.database_url,
            rate_exempt_loopback=True,  # one load generator: the request limits stay out of it
        )
        if self.database_url:
            from gateway.db import Database

            db = Database.from_config(self.config)  # what `telegate db upgrade` does
            try:
                await asyncio.to_thread(db.upgrade)
            finally:
                db.close()
        self.app = create_app(self.config)
        self.runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.base = f"http://127.0.0.1:{port}"
        self.authority = self.app[AUTHORITY]
        self.session = aiohttp.ClientSession()
        self.client = _Client(self.session, self.base)
        # Admin bootstrap through a local invite, as `telegate` does on first start; then
        # more clients (admins again: every role goes through the same token endpoint).
        self.holder = Holder()
        await enroll(self.client, local_invite(self.config), self.holder)
        self.token = await get_token(self.client, self.holder)
        self.holders = [self.holder]
        for _ in range(HOLDERS - 1):
            h = Holder()
            await enroll(self.client, local_invite(self.config), h)
            self.holders.append(h)

    async def fresh_token(self) -> str:
        from tests.gateway.idclient import get_token

        self.token = await get_token(self.client, self.holder)
        return self.token

    async def metrics(self) -> dict[str, float]:
        async with self.session.get(self.base + "/metrics") as r:
            text = await r.text()
        out: dict[str, float] = {}
        for m in re.finditer(r"^([a-z_]+)(\{[^}]*\})? ([0-9.eE+-]+)$", text, re.M):
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
        return out

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.session.close()
        with contextlib.suppress(Exception):
            await self.runner.cleanup()
        if self._devnull is not None:
            self._devnull.close()


# -- section 1: verification in process --------------------------------------------------------
def _timed(fn: Callable[[int], Any], n: int) -> float:
    """Calls/s of ``fn(i)`` for i in range(n), single thread."""
    t0 = now()
    for i in range(n):
        fn(i)
    return n / (now() - t0)


def _split(jws: str) -> tuple[bytes, bytes]:
    from jwt.utils import base64url_decode

    head, payload, sig = jws.split(".")
    return f"{head}.{payload}".encode(), base64url_decode(sig)


def _systems(
    gw: Gateway, token: str, proofs: list[str], headers: Any
) -> list[tuple[str, Callable[[int], Any]]]:
    """The rows of section 1 as ``fn(i)``: call i uses proof i (authenticate spends it)."""
    import jwt
    from yarl import URL

    from gateway.auth.dpop import check_proof

    auth, origin = gw.authority, gw.base
    url = URL(gw.base + "/v1/me")
    key = auth.keys.current.public.key
    hkey = gw.holder.key.public_key()
    dpops = [[p] for p in proofs]
    split = [_split(p) for p in proofs]
    t_msg, t_sig = _split(token)
    opts_token = {
        "verify_exp": False,
        "verify_nbf": False,
        "verify_iat": False,
        "require": ["iss", "sub", "aud", "iat", "nbf", "exp", "jti"],
    }
    opts_proof = {
        "verify_exp": False,
        "verify_nbf": False,
        "verify_iat": False,
        "verify_aud": False,
        "verify_iss": False,
    }

    def authenticate(i: int) -> Any:
        return auth.authenticate("GET", url, headers, dpops[i], origin)

    def verify_token(i: int) -> Any:
        return auth.verify_token(token, origin)

    def proof_only(i: int) -> Any:
        return check_proof(
            dpops[i],
            method="GET",
            url=url,
            now=auth.now(),
            window=auth.dpop_window,
            skew=auth.skew,
            access_token=token,
            nonces=auth.nonces,
        )

    def raw_token(i: int) -> Any:
        return jwt.decode(
            token,
            key,
            algorithms=["EdDSA"],
            audience=origin,
            issuer=origin,
            options=opts_token,
        )

    def raw_pair(i: int) -> Any:
        raw_token(i)
        return jwt.decode(proofs[i], hkey, algorithms=["EdDSA"], options=opts_proof)

    def raw_ed25519(i: int) -> None:
        key.verify(t_sig, t_msg)
        hkey.verify(split[i][1], split[i][0])

    return [
        ("raw_token", raw_token),
        ("raw_pair", raw_pair),
        ("raw_ed25519", raw_ed25519),
        ("verify_token", verify_token),
        ("check_proof", proof_only),
        ("authenticate", authenticate),
    ]


async def bench_verify(cfg: Config, gw: Gateway, res: Results) -> None:
    import jwt
    from multidict import CIMultiDict, CIMultiDictProxy
    from yarl import URL

    from gateway.auth.dpop import DPoPError

    m = res.metrics
    auth, holder = gw.authority, gw.holder
    token = await gw.fresh_token()
    url_s = gw.base + "/v1/me"
    # The request headers as aiohttp hands them to the handler (case-insensitive proxy).
    headers = CIMultiDictProxy(
        CIMultiDict(
            {
                "Host": gw.base.removeprefix("http://"),
                "Accept": "*/*",
                "Accept-Encoding": "gzip, deflate",
                "User-Agent": "bench",
                "Authorization": f"DPoP {token}",
            }
        )
    )
    n = cfg.iterations
    rates: dict[str, list[float]] = {}
    for r in range(cfg.rounds):
        rnd = f"round {r + 1}/{cfg.rounds}: " if cfg.rounds > 1 else ""
        progress(f"verify: {rnd}pre-generating {n:,} DPoP proofs (client side, not timed)")
        proofs = [holder.dpop("GET", url_s, token) for _ in range(n)]
        # Sanity: the gateway accepts a proof once, and refuses it a second time.
        extra = [holder.dpop("GET", url_s, token)]
        p0 = auth.authenticate("GET", URL(url_s), headers, extra, gw.base)
        assert p0.sub == holder.sub, p0
        try:
            auth.authenticate("GET", URL(url_s), headers, extra, gw.base)
        except DPoPError as e:
            assert "replay" in str(e), e
        else:
            raise AssertionError("the replay cache accepted a proof twice")
        systems = _systems(gw, token, proofs, headers)
        # Rotate the order from round to round so that no system always runs first.
        k = r % len(systems)
        for name, fn in systems[k:] + systems[:k]:
            progress(f"verify: {rnd}{name}, {n:,} calls")
            rates.setdefault(name, []).append(_timed(fn, n))
        del systems, proofs

    for k2, vs in rates.items():
        m[f"verify_{k2}"] = _med(vs)
        m[f"verify_{k2}_rounds"] = vs
    a = m["verify_authenticate"]
    t = AuthTable("1. Verification in process, one thread (no HTTP)")
    t.add(
        "telegate Authority.authenticate",
        "verified requests/s (token + DPoP + replay)",
        a,
        "/s",
        key="v",
        base=True,
    )
    t.add(
        "telegate   verify_token only", "access tokens/s", m["verify_verify_token"], "/s", key="v"
    )
    t.add("telegate   check_proof only", "DPoP proofs/s", m["verify_check_proof"], "/s", key="v")
    t.add("raw PyJWT jwt.decode(token)", "decodes/s", m["verify_raw_token"], "/s", key="v")
    t.add(
        "raw PyJWT decode(token) + decode(proof)",
        "pairs/s",
        m["verify_raw_pair"],
        "/s",
        key="v",
        note="(the fairer peer: two signatures)",
    )
    t.add(
        "raw limit: Ed25519 verify x2",
        "pairs/s (cryptography, no JOSE)",
        m["verify_raw_ed25519"],
        "/s",
        key="v",
    )
    us = {k2: 1e6 / m[f"verify_{k2}"] for k2 in rates}
    rest = us["authenticate"] - us["verify_token"] - us["check_proof"]
    t.notes += [
        f"{n:,} calls per row on the same token, each authenticate with its own pre-generated "
        "proof (generation is the client's cost and is not timed)"
        + (
            f"; median of {cfg.rounds} rounds, the order rotated from round to round."
            if cfg.rounds > 1
            else "."
        ),
        f"per call: authenticate {us['authenticate']:.1f} µs = verify_token "
        f"{us['verify_token']:.1f} + check_proof {us['check_proof']:.1f} + the rest "
        f"(header parsing, replay cache, Principal) {rest:.1f}; raw decode(token) "
        f"{us['raw_token']:.1f}, decode pair {us['raw_pair']:.1f}, Ed25519 x2 "
        f"{us['raw_ed25519']:.1f} µs.",
        "raw PyJWT: jwt.decode(token, key, algorithms=['EdDSA'], audience=..., issuer=...) "
        "with the gateway's own options (time checks off, required claims), the key object "
        "already loaded; the proof with the holder's key already loaded (the gateway parses "
        "it from the proof's jwk header every time).",
        f"token {len(token)} bytes, proof {len(extra[0])} bytes; signing alg "
        f"{auth.keys.current.alg}; PyJWT {jwt.__version__}.",
    ]
    res.emit(t)


# -- section 2: authenticated requests over HTTP ----------------------------------------------
async def bench_http(cfg: Config, gw: Gateway, lg: LoadGen, res: Results) -> None:
    m = res.metrics
    holder = gw.holder
    runs: dict[str, list[dict[str, Any]]] = {}
    for r in range(cfg.http_rounds):
        rnd = f"round {r + 1}/{cfg.http_rounds}: " if cfg.http_rounds > 1 else ""
        for c in cfg.concurrency:
            token = await gw.fresh_token()  # tokens live 5 minutes
            url = gw.base + "/v1/me"
            count = cfg.requests + c
            progress(f"http: {rnd}pre-generating {count:,} DPoP proofs")
            reqs: list[tuple[dict[str, str], bytes | None]] = [
                ({"Authorization": f"DPoP {token}", "DPoP": holder.dpop("GET", url, token)}, None)
                for _ in range(count)
            ]
            # The peer gets the very same headers (ignored there); /v1/me runs second.
            for name, path in (("healthz", "/healthz"), ("me", "/v1/me")):
                progress(f"http: {rnd}GET {path}, {c} clients, {cfg.requests:,} requests")
                out = await lg.run(Job("GET", gw.base + path, reqs, c, c, cfg.row_seconds))
                ok = out["status"].get("200", 0)
                if ok != out["n"]:
                    raise RuntimeError(
                        f"GET {path}: {out['status']} (first error: {out['first_error']})"
                    )
                runs.setdefault(f"{name}_{c}", []).append(out)

    t = AuthTable("2. HTTP over loopback: GET /v1/me (token + DPoP) vs GET /healthz")
    for c in cfg.concurrency:
        key = f"h{c}"
        for name, system in (
            ("me", "telegate GET /v1/me"),
            ("healthz", "aiohttp GET /healthz (no auth)"),
        ):
            outs = runs[f"{name}_{c}"]
            rate = _med([o["n"] / o["elapsed"] for o in outs])
            cpu = _med([o["server_cpu"] / (o["sent"]) * 1e6 for o in outs])
            p50 = _med([o["p50"] for o in outs]) * 1e3
            p99 = _med([o["p99"] for o in outs]) * 1e3
            ccpu = _med([o["client_cpu"] / o["elapsed"] for o in outs])
            scpu = _med([o["server_cpu"] / o["wall"] for o in outs])
            m[f"http_{name}_rps_{c}"] = rate
            m[f"http_{name}_server_cpu_us_{c}"] = cpu
            m[f"http_{name}_p50_ms_{c}"] = p50
            m[f"http_{name}_p99_ms_{c}"] = p99
            m[f"http_{name}_rounds_{c}"] = [o["n"] / o["elapsed"] for o in outs]
            clients = f"{c} client{'s' if c > 1 else ''}"
            t.add(
                system,
                f"requests/s, {clients}",
                rate,
                "/s",
                key=key,
                base=name == "me",
                note=f"(p50 {p50:.2f} ms, p99 {p99:.2f} ms; server {scpu:.2f} core, "
                f"load generator {ccpu:.2f} core)",
            )
            sys_share = _med([o["server_sys"] for o in outs])
            t.add(
                system,
                "  server CPU per request",
                cpu,
                "us",
                key=key + "cpu",
                base=name == "me",
                note=f"({sys_share:.0%} of it in the kernel)",
            )
        auth_us = m[f"http_me_server_cpu_us_{c}"] - m[f"http_healthz_server_cpu_us_{c}"]
        m[f"http_auth_cost_us_{c}"] = auth_us
        t.add(
            "telegate GET /v1/me",
            "  = auth cost per request (CPU)",
            auth_us,
            "us",
            note="(/v1/me minus /healthz, server CPU)",
        )
    rounds = f"median of {cfg.http_rounds} rounds; " if cfg.http_rounds > 1 else ""
    t.notes += [
        f"{cfg.requests:,} timed requests per row after one warm-up request per connection "
        f"(closed loop, keep-alive, capped at {cfg.row_seconds:g}s); {rounds}each /v1/me "
        "request carries its own pre-generated DPoP proof, and /healthz gets the same "
        "headers, so the two rows differ only by what the server does with them.",
        "the load generator (aiohttp ClientSession, one process) shares this 2-core machine "
        "with the gateway (one event loop plus the ledger writer thread): 'server/load "
        "generator core' is CPU time over wall time, and when the load generator is near 1.00 "
        "core the row measures the client, not the gateway.",
        "server CPU per request: the gateway process's CPU time over the row (all threads) "
        "divided by the requests sent, warm-up included.",
        "access log: "
        + (
            "JSON lines at INFO to /dev/null, as `telegate serve` logs."
            if cfg.access_log
            else "off (--no-access-log)."
        ),
    ]
    res.emit(t)


# -- section 3: token issuance ------------------------------------------------------------------
def _delta(after: dict[str, float], before: dict[str, float], name: str) -> float:
    return after.get(name, 0.0) - before.get(name, 0.0)


def _identity_peer(path: Path, seconds: float, live: int = 0) -> float:
    """Tokens/s of the identity.db writes one issuance makes (the client-assertion jti and
    the token row), one after the other as the store's lock serialises them; with ``live``
    unexpired assertion ids already in client_jtis, as after minutes of steady issuance."""
    from gateway.auth.store import IdentityStore, TokenRecord
    from gateway.db.engine import sqlite_engine
    from gateway.db.migrate import upgrade

    engine = sqlite_engine(path)  # what Database.open("identity") gives the gateway
    upgrade(engine, "identity")
    store = IdentityStore(engine)
    ts = int(time.time())
    if live:
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO client_jtis (key, exp) VALUES (?, ?)",
            ((f"adm:live:{i:016x}", ts + 120) for i in range(live)),
        )
        db.execute("COMMIT")
        db.close()
    try:
        n, t0 = 0, now()
        while now() - t0 < seconds:
            store.use_client_jti(f"adm:{n:032x}:{n:016x}", ts + 120, ts)
            store.add_token(TokenRecord(f"jti{n:021d}", "adm:bench", "admin", ts + 300, n, n, None))
            n += 1
        return n / (now() - t0)
    finally:
        store.close()
        engine.dispose()


async def _log_peer(path: Path, c: int, seconds: float) -> tuple[float, float]:
    """Durable appends/s of a separate telegate Log with ``c`` appenders (bench.ledger)."""
    import itertools

    from bench.ledger import closed_loop, entry, open_log

    batches: list[tuple[int, float]] = []
    log = open_log(path, batches)
    seq = itertools.count()
    try:
        for _ in range(20):
            await log.append(entry(next(seq)))
        batches.clear()
        n, el = await closed_loop(log.append, c, seconds, seq)
    finally:
        await asyncio.to_thread(log.close)
    return n / el, (n / len(batches) if batches else float("nan"))


async def _issue_rows(cfg: Config, gw: Gateway, lg: LoadGen) -> dict[int, dict[str, Any]]:
    """POST /oauth/token at each concurrency: rates, latencies, server CPU per token."""
    url = gw.base + "/oauth/token"
    hist = "telegate_http_request_duration_seconds"
    route = '{method="POST",route="/oauth/token"}'
    rows: dict[int, dict[str, Any]] = {}
    for c in cfg.concurrency:
        count = cfg.tokens + c
        progress(f"issue: pre-generating {count:,} client assertions and DPoP proofs")
        reqs: list[tuple[dict[str, str], bytes | None]] = []
        for i in range(count):
            h = gw.holders[i % len(gw.holders)]
            form = {
                "grant_type": "client_credentials",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": h.assertion(url),
            }
            headers = {
                "Content-Type": "application/x-www-form-urlencoded",
                "DPoP": h.dpop("POST", url),
            }
            reqs.append((headers, urllib.parse.urlencode(form).encode()))
        progress(f"issue: POST /oauth/token, {c} clients, {cfg.tokens:,} tokens")
        before = await gw.metrics()
        out = await lg.run(Job("POST", url, reqs, c, c, cfg.row_seconds))
        after = await gw.metrics()
        if out["status"].get("200", 0) != out["n"]:
            raise RuntimeError(f"POST /oauth/token: {out['status']} ({out['first_error']})")
        commits = _delta(after, before, "telegate_ledger_commit_entries_count")
        entries = _delta(after, before, "telegate_ledger_commit_entries_sum")
        appends = _delta(after, before, "telegate_ledger_append_seconds_count")
        append_s = _delta(after, before, "telegate_ledger_append_seconds_sum")
        reqs_n = _delta(after, before, f"{hist}_count{route}")
        req_s = _delta(after, before, f"{hist}_sum{route}")
        rows[c] = {
            "rate": out["n"] / out["elapsed"],
            "avg_entries": entries / commits if commits else float("nan"),
            "commits": commits,
            "append_ms": append_s / appends * 1e3 if appends else float("nan"),
            "server_ms": req_s / reqs_n * 1e3 if reqs_n else float("nan"),
            "cpu_us": out["server_cpu"] / out["sent"] * 1e6,
            "server_core": out["server_cpu"] / out["wall"],
            "server_sys": out["server_sys"],
            "client_core": out["client_cpu"] / out["elapsed"],
            "p50": out["p50"] * 1e3,
            "p99": out["p99"] * 1e3,
        }
    return rows


async def bench_issue(cfg: Config, gw: Gateway, lg: LoadGen, tmp: Path, res: Results) -> None:
    from bench.ledger import run_raw

    m = res.metrics
    rows = await _issue_rows(cfg, gw, lg)
    for c, row in rows.items():
        for k, v in row.items():
            m[f"issue_{k}_{c}"] = v

    # Peers: what one durable append costs when nothing is batched, and the ledger's and the
    # identity store's own rates, each on a fresh database in the same directory.
    secs = cfg.peer_seconds
    cmax = max(cfg.concurrency)
    progress(f"issue: peer, telegate Log.append, 1 appender, {secs:g}s")
    log1, _ = await _log_peer(tmp / "peer-log-1.db", 1, secs)
    progress(f"issue: peer, telegate Log.append, {cmax} appenders, {secs:g}s")
    logc, logc_batch = await _log_peer(tmp / f"peer-log-{cmax}.db", cmax, secs)
    progress(f"issue: peer, raw sqlite WAL/FULL, one row per commit, {secs:g}s")
    raw1, raw_lat = run_raw(tmp / "peer-raw.db", 1, secs)
    raw_lat.sort()
    progress(f"issue: peer, identity.db writes per token, {secs:g}s")
    ident = _identity_peer(tmp / "peer-identity.db", secs)
    progress(f"issue: peer, the same with {LIVE_JTIS:,} live assertion ids, {secs:g}s")
    ident_live = _identity_peer(tmp / "peer-identity-live.db", secs, LIVE_JTIS)
    m.update(
        peer_log_aps_1=log1,
        peer_log_aps_cmax=logc,
        peer_log_avg_batch_cmax=logc_batch,
        peer_raw_commit_rate=raw1,
        peer_raw_commit_p50_ms=pct(raw_lat, 0.5) * 1e3,
        peer_identity_tokens_rate=ident,
        peer_identity_tokens_rate_live=ident_live,
    )

    t = AuthTable("3. Token issuance: POST /oauth/token (assertion + DPoP, ledger event, token)")
    for c in cfg.concurrency:
        row, key = rows[c], f"i{c}"
        clients = f"{c} client{'s' if c > 1 else ''}"
        t.add(
            "telegate POST /oauth/token",
            f"tokens issued/s, {clients}",
            row["rate"],
            "/s",
            key=key,
            base=True,
            note=f"(p50 {row['p50']:.1f} ms, p99 {row['p99']:.1f} ms; server "
            f"{row['server_core']:.2f} core, load generator {row['client_core']:.2f} core)",
        )
        t.add(
            "telegate POST /oauth/token",
            "  avg entries per ledger commit",
            row["avg_entries"],
            "avg",
            note=f"({row['commits']:,.0f} commits; append->receipt mean {row['append_ms']:.2f} ms"
            f" of {row['server_ms']:.2f} ms in the handler)",
        )
        t.add(
            "telegate POST /oauth/token",
            "  server CPU per token",
            row["cpu_us"],
            "us",
            note=f"({row['server_sys']:.0%} of it in the kernel)",
        )
        if c == 1:
            t.add(
                "telegate Log.append (own db)",
                "durable appends/s, 1 appender",
                log1,
                "/s",
                key=key,
                note="(one group commit = one fsync per append)",
            )
            t.add(
                "raw sqlite WAL/FULL, 1 row/commit",
                "durable commits/s, 1 writer",
                raw1,
                "/s",
                key=key,
                note=f"(the fsync floor: p50 {m['peer_raw_commit_p50_ms']:.3f} ms per commit)",
            )
        if c == cmax:
            t.add(
                "telegate Log.append (own db)",
                f"durable appends/s, {cmax} appenders",
                logc,
                "/s",
                key=key,
                note=f"(avg {logc_batch:.1f} entries per commit: the ledger's own capacity)",
            )
            t.add(
                "identity.db writes per token",
                "tokens/s, one thread (its 3 writes)",
                ident,
                "/s",
                key=key,
                note="(use_client_jti + add_token: indexed prune, 2 commits without fsync)",
            )
            t.add(
                "identity.db writes per token",
                f"  the same, {LIVE_JTIS:,} live assertion ids",
                ident_live,
                "/s",
                key=key,
                note="(client_jtis keeps each id ~12-15 min; the prune is indexed on exp)",
            )
    t.notes += [
        f"{cfg.tokens:,} tokens per row after one warm-up request per connection (closed "
        f"loop, capped at {cfg.row_seconds:g}s); {len(gw.holders)} enrolled clients take "
        "turns, each request with a pre-generated client assertion (unique jti) and DPoP "
        "proof.",
        "each issuance: DPoP proof check, client lookup and assertion check, the assertion "
        "jti written to identity.db, a ledger append (group commit, synchronous=FULL, signed "
        "checkpoint), the token signed, and the token row written to identity.db "
        "(IdentityStore: WAL; both rows without fsync, rebuilt from the ledger after a crash).",
        "avg entries per ledger commit comes from the gateway's /metrics "
        "(telegate_ledger_commit_entries_sum / _count, before and after the row); the ledger "
        "also takes the few other events of the run. Handler time from "
        "telegate_http_request_duration_seconds.",
        f"peers run on fresh databases in the same directory for {secs:g}s each, after the "
        "issuance rows: telegate Log via bench.ledger (~170-byte entries), bench.ledger's raw "
        "sqlite commit, and IdentityStore's writes per token in one thread, on an empty "
        f"store and on one holding {LIVE_JTIS:,} unexpired client-assertion ids (what "
        "client_jtis holds after ~12 min at ~140 tokens/s: an id is deleted 600 s after its "
        "assertion's exp).",
    ]
    res.emit(t)


async def bench_issue_pg(cfg: Config, lg: LoadGen, tmp: Path, res: Results) -> None:
    """The issuance rows again, on a gateway whose stores are in PostgreSQL, beside the
    SQLite gateway's rows of section 3."""
    from tests.pgschema import fresh_schema

    assert cfg.database_url is not None
    m = res.metrics
    with fresh_schema(cfg.database_url) as url:
        gw = Gateway(tmp / "data-pg", cfg.access_log, url)
        progress(f"issue on PostgreSQL: starting a gateway on {_redact(url)}")
        await gw.start()
        try:
            rows = await _issue_rows(cfg, gw, lg)
        finally:
            await gw.stop()
    t = AuthTable("3b. Token issuance, SQLite files vs PostgreSQL (one run, same load)")
    for c, row in rows.items():
        for k, v in row.items():
            m[f"issue_pg_{k}_{c}"] = v
        sq = m.get(f"issue_cpu_us_{c}", float("nan"))
        clients = f"{c} client{'s' if c > 1 else ''}"
        t.add(
            "telegate on SQLite files",
            f"server CPU per token, {clients}",
            sq,
            "us",
            key=f"p{c}",
            base=True,
            note=f"({m.get(f'issue_rate_{c}', float('nan')):,.0f} tokens/s)",
        )
        t.add(
            "telegate on PostgreSQL",
            f"server CPU per token, {clients}",
            row["cpu_us"],
            "us",
            key=f"p{c}",
            note=f"({row['rate']:,.0f} tokens/s; p50 {row['p50']:.1f} ms, p99 {row['p99']:.1f} ms)",
        )
        m[f"issue_pg_cpu_ratio_{c}"] = row["cpu_us"] / sq if sq == sq else float("nan")
    t.notes += [
        "the same client assertions and DPoP proofs, pre-generated per row; the PostgreSQL "
        "gateway keeps the ledger and every converted store in a fresh schema, created "
        "and dropped by this run. Server CPU is the gateway process's (user + system): the "
        f"PostgreSQL server's own CPU is not in it. Target: PostgreSQL <= {PG_CPU_TARGET:.2f}x.",
    ]
    res.emit(t)
    for c in rows:
        ratio = m[f"issue_pg_cpu_ratio_{c}"]
        verdict = "PASS" if ratio <= PG_CPU_TARGET else "MISS"
        print(
            f"{verdict}: server CPU per token on PostgreSQL, {c} clients: {ratio:.2f}x SQLite "
            f"(target <= {PG_CPU_TARGET:.2f}x)",
            flush=True,
        )


def _redact(url: str) -> str:
    from gateway.db import redact

    return redact(url).split("?", 1)[0]


# -- summary --------------------------------------------------------------------------------
def summarize(cfg: Config, gw: Gateway | None, res: Results) -> None:
    m = res.metrics
    lines: list[dict[str, Any]] = []

    def add(target: str, ok: bool | None, detail: str) -> None:
        lines.append({"target": target, "status": status(ok), "detail": detail})

    a, raw = m.get("verify_authenticate"), m.get("verify_raw_token")
    if a and raw:
        r = a / raw
        pair = m["verify_raw_pair"]
        add(
            f"verified requests >= {TARGET_RATIO:.0%} of raw PyJWT decode (one core)",
            r >= TARGET_RATIO,
            f"{r:.0%} ({a:,.0f}/s vs {raw:,.0f}/s) = {r / TARGET_RATIO:.2f}x of target"
            + (
                f", short by {TARGET_RATIO * raw - a:,.0f}/s"
                if r < TARGET_RATIO
                else f", {a - TARGET_RATIO * raw:,.0f}/s to spare"
            )
            + f"; vs decode(token)+decode(proof): {a / pair:.0%} ({pair:,.0f}/s), and that "
            f"raw pair alone reaches {pair / raw:.0%} of raw decode",
        )
    cmax = max(cfg.concurrency)
    cpu = m.get(f"http_me_server_cpu_us_{cmax}")
    if cpu and raw:
        per_core = 1e6 / cpu
        add(
            "  (info) HTTP /v1/me per server core vs raw PyJWT decode",
            None,
            f"{per_core:,.0f} req/s per core ({cpu:.0f} µs CPU per request at {cmax} clients) "
            f"= {per_core / raw:.0%} of {raw:,.0f}/s; measured "
            f"{m[f'http_me_rps_{cmax}']:,.0f}/s on the shared machine",
        )
    if f"issue_rate_{cmax}" in m:
        rate, avg = m[f"issue_rate_{cmax}"], m[f"issue_avg_entries_{cmax}"]
        one = m["peer_log_aps_1"]
        ident = m["peer_identity_tokens_rate"]
        core = m[f"issue_server_core_{cmax}"]
        rides = avg > 1.5
        beats_fsync = rate > 1.5 * one
        at_ident = rate >= 0.7 * ident
        if at_ident:
            limiter = (
                f"at {rate / ident:.0%} of the identity.db per-token write rate "
                f"({ident:,.0f}/s, two fsync'd commits per token under one lock)"
            )
        elif core >= 0.85:
            limiter = f"the gateway's CPU ({core:.2f} core busy)"
        else:
            limiter = "not identified (neither CPU nor the identity.db write rate is saturated)"
        add(
            "issuance rides the ledger group commit, not one fsync per request",
            rides and beats_fsync and not at_ident,
            f"{rate:,.0f} tokens/s at {cmax} clients with {avg:.2f} entries per ledger commit; "
            f"{rate / one:.2f}x the single-append durable rate ({one:,.0f}/s); "
            f"ledger alone at {cmax} appenders: {m['peer_log_aps_cmax']:,.0f}/s "
            f"(issuance uses {rate / m['peer_log_aps_cmax']:.0%} of it); limiter: {limiter}",
        )
    if "peer_identity_tokens_rate_live" in m:
        live = m["peer_identity_tokens_rate_live"]
        fresh = m["peer_identity_tokens_rate"]
        add(
            "  (info) sustained issuance vs the client_jtis table",
            None,
            f"identity.db writes per token: {fresh:,.0f}/s on an empty store, {live:,.0f}/s "
            f"with {LIVE_JTIS:,} live assertion ids; the rows above start from a few thousand",
        )
    rates = [m.get("verify_authenticate")] + [m.get(f"http_me_rps_{n}") for n in cfg.concurrency]
    best = max([v for v in rates if isinstance(v, float)] + [0.0])
    if gw is not None and best:
        gc = gw.config
        kept = gc.dpop_window + gc.clock_skew + 1
        cap = gc.dpop_replay_max / kept
        add(
            "  (info) DPoP replay cache bound",
            None,
            f"dpop_replay_max {gc.dpop_replay_max:,} / {kept} s that a proof id stays "
            f"(window {gc.dpop_window} + skew {gc.clock_skew}) = {cap:,.0f} proofs/s sustained "
            f"per process before 503s; the fastest rate measured here is {best:,.0f}/s",
        )
    print_summary(
        res,
        lines,
        "(--quick: short rows, one round; run without --quick for the full numbers)"
        if cfg.quick
        else None,
    )


# -- driver ---------------------------------------------------------------------------------
@dataclass
class Config:
    quick: bool
    iterations: int
    rounds: int
    http_rounds: int
    requests: int
    tokens: int
    row_seconds: float
    peer_seconds: float
    concurrency: tuple[int, ...]
    hard_limit: float
    access_log: bool
    sections: list[str]
    json: str | None
    tmpdir: str | None
    database_url: str | None = None


SECTIONS = ("verify", "http", "issue")


def parse_args(argv: Sequence[str] | None = None) -> Config:
    ap = argparse.ArgumentParser(
        prog="python -m bench.auth", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    ap.add_argument("--quick", action="store_true", help="~1 minute run")
    ap.add_argument(
        "--iterations", type=int, help="calls per in-process row (default 6,000; quick 4,000)"
    )
    ap.add_argument("--rounds", type=int, help="rounds of section 1 (default 3; quick 1)")
    ap.add_argument("--http-rounds", type=int, help="rounds of section 2 (default 2; quick 1)")
    ap.add_argument(
        "--requests", type=int, help="timed HTTP requests per row (default 4,000; quick 2,500)"
    )
    ap.add_argument("--tokens", type=int, help="tokens per issuance row (default 1,500; quick 800)")
    ap.add_argument(
        "--concurrency",
        default=",".join(map(str, CONCURRENCY)),
        help="comma list of concurrent HTTP clients (default 1,10,50)",
    )
    ap.add_argument(
        "--no-access-log",
        action="store_true",
        help="do not format the gateway's JSON access log (on by default, to /dev/null)",
    )
    ap.add_argument(
        "--sections", default=",".join(SECTIONS), help=f"comma list of {','.join(SECTIONS)}"
    )
    ap.add_argument("--json", metavar="FILE", help="also write all results as JSON")
    ap.add_argument("--tmpdir", help="where to create the gateway's data directory")
    ap.add_argument(
        "--database-url",
        metavar="URL",
        help="also run section 3 on a gateway whose stores are in this PostgreSQL database "
        "(a fresh schema, dropped afterwards)",
    )
    a = ap.parse_args(argv)
    sections = [s.strip() for s in a.sections.split(",") if s.strip()]
    bad = set(sections) - set(SECTIONS)
    if bad:
        ap.error(f"unknown sections: {', '.join(sorted(bad))}")
    try:
        conc = tuple(int(x) for x in a.concurrency.split(",") if x.strip())
    except ValueError:
        ap.error("--concurrency takes a comma list of integers")
    if not conc or min(conc) < 1 or max(conc) > 500:
        ap.error("--concurrency values must be 1..500")
    q = a.quick
    return Config(
        quick=q,
        iterations=a.iterations or (4_000 if q else 6_000),
        rounds=a.rounds or (1 if q else 3),
        http_rounds=a.http_rounds or (1 if q else 2),
        requests=a.requests or (2_500 if q else 4_000),
        tokens=a.tokens or (800 if q else 1_500),
        row_seconds=10.0 if q else 20.0,
        peer_seconds=1.0 if q else 2.0,
        concurrency=conc,
        hard_limit=(150.0 if q else 295.0) + (90.0 if a.database_url else 0.0),
        access_log=not a.no_access_log,
        sections=sections,
        json=a.json,
        tmpdir=a.tmpdir,
        database_url=a.database_url,
    )


def meta() -> dict[str, Any]:
    import aiohttp
    import cryptography
    import jwt

    return {
        "python": platform.python_version(),
        "pyjwt": jwt.__version__,
        "cryptography": cryptography.__version__,
        "aiohttp": aiohttp.__version__,
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


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


async def run_section(res: Results, name: str, fn: Callable[[], Any]) -> None:
    """Run one section; a failure is reported and the remaining sections still run."""
    try:
        await fn()
    except Exception as e:
        traceback.print_exc()
        res.errors[name] = f"{type(e).__name__}: {e}"
        print(f"\n== {name}: FAILED ({res.errors[name]}) ==", flush=True)


async def amain(cfg: Config, res: Results, tmp: Path, lg: LoadGen) -> None:
    gw = Gateway(tmp / "data", cfg.access_log)
    progress(f"starting the gateway in {gw.data_dir} and enrolling {HOLDERS} clients")
    await gw.start()
    try:
        print(f"gateway at {gw.base} (loopback), data in {gw.data_dir}", flush=True)
        if "verify" in cfg.sections:
            await run_section(res, "verify", lambda: bench_verify(cfg, gw, res))
        if "http" in cfg.sections:
            await run_section(res, "http", lambda: bench_http(cfg, gw, lg, res))
        if "issue" in cfg.sections:
            await run_section(res, "issue", lambda: bench_issue(cfg, gw, lg, tmp, res))
            if cfg.database_url:
                await run_section(res, "issue-pg", lambda: bench_issue_pg(cfg, lg, tmp, res))
        summarize(cfg, gw, res)
    finally:
        await gw.stop()


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_args(argv)
    res = Results(args={k: v for k, v in vars(cfg).items()})
    res.meta = meta()
    mode = "quick" if cfg.quick else "full"
    tmp = Path(tempfile.mkdtemp(prefix="telegate-bench-auth-", dir=cfg.tmpdir))
    mt = res.meta
    print(
        f"telegate auth benchmark ({mode}): python {mt['python']}, PyJWT {mt['pyjwt']}, "
        f"cryptography {mt['cryptography']}, aiohttp {mt['aiohttp']}, {mt['cpus']} CPUs, "
        f"{mt['platform']}, load average {_load()}\n"
        "ratio = value / telegate's value for the same metric (rates: >1 is faster than "
        "telegate; CPU per request: >1 costs more)",
        flush=True,
    )
    lg = LoadGen()
    timer = watchdog(cfg, res, tmp, lg.kill)
    try:
        asyncio.run(amain(cfg, res, tmp, lg))
        res.meta["elapsed_s"] = time.perf_counter() - _START
        res.meta["loadavg_at_end"] = os.getloadavg()
        print(f"\n(total {res.meta['elapsed_s']:.0f}s; load average at the end {_load()})")
        res.dump(cfg.json, complete=True)
    finally:
        timer.cancel()
        lg.close()
        shutil.rmtree(tmp, ignore_errors=True)
    progress("done")
    return 1 if res.errors else 0


_START = time.perf_counter()

if __name__ == "__main__":
    raise SystemExit(main())
