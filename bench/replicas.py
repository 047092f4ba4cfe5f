"""Benchmark of replicas sharing PostgreSQL and Redis (issue 15): one replica against two.

Not a test: it prints tables (system | metric | value | ratio) and the issue's targets as
PASS/MISS. Everything runs on this machine, side by side in one run:

* a private ``redis-server`` on a free loopback port, fresh PostgreSQL databases on
  ``--database-url`` (default the machine's ``postgresql://postgres@127.0.0.1:5432/test``);
* a group of two ``telegate serve`` replicas sharing that database, Redis and the key dir
  (as behind a load balancer: one ``public_url``), and one more replica on a database of its
  own without Redis, for the cost that Redis adds;
* the load generator of ``bench.auth`` in its own process: closed loop, each request with a
  fresh DPoP proof (so every request spends one proof ``jti`` in Redis).

Rows, alternated over ``--rounds`` rounds (median kept), so that machine noise falls on all
of them alike: ``GET /v1/me`` at 1 client (latency) and at ``--clients`` (throughput) on one
replica and on two; ``POST /oauth/token`` likewise; the same ``GET /v1/me`` on the replica
without Redis; redis-py's own ``SET NX PX`` round trip (the floor of the replay check).
Server CPU is the replicas' processes' (user + system, from /proc), per request.

    python -m bench.replicas              # ~3 min
    python -m bench.replicas --quick      # ~1 min
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

if not __package__:
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    sys.path.insert(0, os.path.dirname(_here))

import aiohttp

from bench.auth import AuthTable, Job, LoadGen
from bench.ledger import Results, pct, print_summary, progress, status

DEFAULT_DB = "postgresql://postgres@127.0.0.1:5432/test"
CPU_TARGET = 1.15  # server CPU per authenticated request, 2 replicas / 1 replica
RATE_TARGET = 1.3  # requests/s, 2 replicas / 1 replica
REDIS_P50_TARGET_MS = 0.3  # what Redis adds to one authenticated request at p50
RELAY_P99_MS = 10.0  # signalling relay p99, patient on one replica and provider on another
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU of ``pids`` so far (/proc/<pid>/stat fields 14 and 15)."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / TICK


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.stack = contextlib.ExitStack()
        self.lg = LoadGen()
        self.relay_table: AuthTable | None = None

    def close(self) -> None:
        self.lg.close()
        self.stack.close()

    def start(self) -> None:
        from tests.redisserver import running
        from tests.replicas.conftest import Replicas, fresh_database

        # The replicas read TELEGATE_* from the environment (tests/replicas Replica.env):
        # one patient and one provider hold every socket of the relay rows.
        os.environ["TELEGATE_MAX_WEBSOCKETS"] = "10000"
        os.environ["TELEGATE_MAX_WEBSOCKETS_PER_SUBJECT"] = "1000"
        progress("starting a private redis-server")
        self.redis = self.stack.enter_context(running(self.tmp / "redis"))
        progress("two replicas on PostgreSQL and Redis")
        url = self.stack.enter_context(fresh_database(self.args.database_url))
        self.group = Replicas(self.tmp / "shared", url, self.redis.url)
        self.stack.callback(self.group.stop)
        self.a, self.b = self.group.start(2)
        progress("one replica on PostgreSQL without Redis")
        plain_url = self.stack.enter_context(fresh_database(self.args.database_url))
        self.plain_group = Replicas(self.tmp / "plain", plain_url, None)
        self.stack.callback(self.plain_group.stop)
        (self.plain,) = self.plain_group.start(1)

    async def enroll(self) -> None:
        from tests.replicas.client import Admin

        async with aiohttp.ClientSession() as http:
            self.admin = Admin()
            await self.admin.enroll(http, self.group, self.a)
            await self.admin.get_token(http, self.a)
            self.plain_admin = Admin()
            await self.plain_admin.enroll(http, self.plain_group, self.plain)
            await self.plain_admin.get_token(http, self.plain)

    def me_requests(self, admin: Any, n: int) -> list[tuple[dict[str, str], bytes | None]]:
        return [(admin.headers("GET", "/v1/me"), None) for _ in range(n)]

    def token_requests(self, n: int) -> list[tuple[dict[str, str], bytes | None]]:
        import urllib.parse

        out: list[tuple[dict[str, str], bytes | None]] = []
        for _ in range(n):
            form = {
                "grant_type": "client_credentials",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": self.admin.assertion(),
            }
            headers = {
                "Content-Type": "application/x-www-form-urlencoded",
                "DPoP": self.admin.dpop("POST", "/oauth/token"),
            }
            out.append((headers, urllib.parse.urlencode(form).encode()))
        return out

    async def row(
        self,
        method: str,
        path: str,
        servers: Sequence[Any],
        reqs: list[tuple[dict[str, str], bytes | None]],
        clients: int,
        pids: Sequence[int],
    ) -> dict[str, float]:
        urls = tuple(s.url + path for s in servers)
        job = Job(method, urls[0], reqs, clients, clients, self.args.row_seconds, urls)
        cpu0 = cpu_seconds(pids)
        rcpu0 = cpu_seconds([self.redis.proc.pid]) if self.redis.proc else 0.0
        out = await self.lg.run(job)
        cpu = cpu_seconds(pids) - cpu0
        rcpu = (cpu_seconds([self.redis.proc.pid]) if self.redis.proc else 0.0) - rcpu0
        ok = out["status"].get("200", 0)
        if ok != out["n"]:
            raise RuntimeError(f"{method} {path}: {out['status']} ({out['first_error']})")
        return {
            "rate": out["n"] / out["elapsed"],
            "cpu_us": cpu / out["sent"] * 1e6,
            "redis_us": rcpu / out["sent"] * 1e6,
            "p50": out["p50"] * 1e3,
            "p99": out["p99"] * 1e3,
        }

    async def redis_floor(self, n: int) -> float:
        """p50 of redis-py's asyncio ``SET key 1 NX PX`` on this Redis, one at a time: the
        round trip the replay check cannot go below."""
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(self.redis.url)
        try:
            lat = []
            for i in range(n):
                t = time.perf_counter()
                await client.set(f"bench:floor:{i}", 1, nx=True, px=90_000)
                lat.append(time.perf_counter() - t)
        finally:
            await client.aclose()
        lat.sort()
        return pct(lat, 0.5) * 1e3

    async def run(self, res: Results) -> None:
        a = self.args
        shared = [self.a.proc.pid, self.b.proc.pid]  # type: ignore[union-attr]
        plain = [self.plain.proc.pid]  # type: ignore[union-attr]
        rows: dict[str, list[dict[str, float]]] = {}

        def keep(name: str, r: dict[str, float]) -> None:
            rows.setdefault(name, []).append(r)

        # name: (method, path, servers, requests, clients, processes counted). A 1-replica
        # row counts only the replica serving it; the other idles beside it meanwhile.
        me, tok = "/v1/me", "/oauth/token"
        one, both = [self.a], [self.a, self.b]
        plan: dict[str, tuple[str, str, list[Any], Any, int, list[int]]] = {
            "me1_plain": ("GET", me, [self.plain], self.plain_admin, 1, plain),
            "me1_redis": ("GET", me, one, self.admin, 1, shared[:1]),
            "meN_plain": ("GET", me, [self.plain], self.plain_admin, a.clients, plain),
            "meN_1": ("GET", me, one, self.admin, a.clients, shared[:1]),
            "meN_2": ("GET", me, both, self.admin, a.clients, shared),
            "tok_1": ("POST", tok, one, None, a.clients, shared[:1]),
            "tok_2": ("POST", tok, both, None, a.clients, shared),
        }
        for rnd in range(a.rounds):
            for name, (method, path, servers, who, clients, pids) in plan.items():
                progress(f"round {rnd + 1}/{a.rounds}: {name} ({method} {path}, {clients} clients)")
                if who is None:
                    reqs = self.token_requests(a.tokens)
                else:
                    n = a.latency_requests if clients == 1 else a.requests
                    reqs = self.me_requests(who, n)
                keep(name, await self.row(method, path, servers, reqs, clients, pids))
        if not a.no_relay:
            await self.relay(res)
        floor = await self.redis_floor(a.latency_requests)
        med = {k: {m: statistics.median(r[m] for r in v) for m in v[0]} for k, v in rows.items()}
        res.metrics.update({f"{k}_{m}": x for k, d in med.items() for m, x in d.items()})
        res.metrics["redis_floor_p50_ms"] = floor
        self.report(res, med, floor)

    # -- signalling relay: patient on A, provider on B ---------------------------------
    async def relay(self, res: Results) -> None:
        """N calls whose patient sockets are on replica A and provider sockets on B (the
        relay crosses Redis), then N calls with both on A, the same open-loop load on
        each: relay latency side by side."""
        import datetime as dt

        from bench.signalling import NPI, Fleet, bounded, connect_ws, run_load
        from gateway.config import Config as GatewayConfig
        from tests.gateway.idclient import (
            Holder,
            call,
            enroll,
            get_token,
            invite_and_enroll,
            local_invite,
        )
        from tests.replicas.conftest import PUBLIC_URL

        a = self.args
        n = a.sessions

        class Via:
            """bench.auth's client slice, addressing one replica under the public URL."""

            def __init__(self, http: Any, base: str) -> None:
                self.http, self.base = http, base

            def make_url(self, path: str) -> Any:
                from yarl import URL

                return URL(PUBLIC_URL + path)

            async def request(self, method: str, path: str, **kw: Any) -> Any:
                return await self.http.request(method, self.base + path, **kw)

            async def post(self, path: str, **kw: Any) -> Any:
                return await self.request("POST", path, **kw)

        class Proc:
            """``stat()`` of replica processes, as bench.signalling's run_load reads it."""

            def __init__(self, pids: list[int]) -> None:
                self.pids = pids

            async def stat(self) -> dict[str, Any]:
                return {"cpu": cpu_seconds(self.pids), "gc": (0, 0.0, 0.0), "rss_kib": 0.0}

        async def expect(resp: Any, status: int, what: str) -> Any:
            body = await resp.json()
            if resp.status != status:
                raise RuntimeError(f"{what}: HTTP {resp.status}: {body}")
            return body

        out: dict[str, dict[str, Any]] = {}
        # No cap on the sockets' session: aiohttp's default (100 connections) would hold
        # the 101st socket back until it timed out.
        unlimited = aiohttp.TCPConnector(limit=0)
        async with (
            aiohttp.ClientSession() as http,
            aiohttp.ClientSession(connector=unlimited) as ws_session,
        ):
            ca, cb = Via(http, self.a.url), Via(http, self.b.url)
            where = GatewayConfig(
                data_dir=self.group.data_dir, database_url=self.group.database_url
            )
            adm = Holder()
            await enroll(ca, local_invite(where), adm)
            adm_t = await get_token(ca, adm)
            prov = await invite_and_enroll(ca, adm, adm_t, "provider", npi=NPI)
            pat = await invite_and_enroll(ca, adm, adm_t, "patient")
            prov_t, pat_t = await get_token(cb, prov), await get_token(ca, pat)
            until = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
            consent = {"grantee": prov.sub, "scopes": ["call"], "until": until}
            await expect(
                await call(ca, "POST", "/v1/consents", pat, pat_t, json=consent), 201, "consent"
            )

            for name, prov_at in (("same", ca), ("cross", cb)):
                progress(f"relay ({name} replica): scheduling {n:,} sessions")

                async def schedule(_: int) -> str:
                    r = await call(
                        ca, "POST", "/v1/sessions", prov, prov_t, json={"patient": pat.sub}
                    )
                    return str((await expect(r, 201, "schedule"))["id"])

                sids = await bounded(range(n), schedule, 32)

                async def ticket_ws(sid: str, via: Via, holder: Any, token: str) -> Any:
                    r = await call(via, "POST", f"/v1/sessions/{sid}/ticket", holder, token)
                    body = await expect(r, 200, "ticket")
                    return await connect_ws(ws_session, via.base + body["ws"], hello=True)

                progress(f"relay ({name} replica): {2 * n:,} sockets, patients on A")
                pats = await bounded(sids, lambda s: ticket_ws(s, ca, pat, pat_t), 32)
                provs = await bounded(sids, lambda s, v=prov_at: ticket_ws(s, v, prov, prov_t), 32)
                fleet = Fleet(f"relay {name}")
                for x, y in zip(pats, provs, strict=True):
                    fleet.add(x, y)

                async def admit(sid: str, via: Via = prov_at) -> None:
                    r = await call(via, "POST", f"/v1/sessions/{sid}/admit", prov, prov_t)
                    await expect(r, 200, "admit")

                await bounded(sids, admit, 32)
                await asyncio.sleep(1.0)
                progress(f"relay ({name} replica): open loop, {a.per_session:g} msg/s per session")
                pids = [self.a.proc.pid] + ([self.b.proc.pid] if name == "cross" else [])  # type: ignore[union-attr]
                out[name] = await run_load(
                    fleet, Proc(pids), "open", a.relay_seconds, a.per_session
                )  # type: ignore[arg-type]
                await fleet.close()
        t = AuthTable(f"7. Signalling relay across replicas: {n:,} calls, open loop")
        for name, label in (
            ("same", "patient and provider on A"),
            ("cross", "patient on A, provider on B"),
        ):
            r = out[name]
            key = "relay"
            t.add(label, "relay p50", r["p50"], "ms", key=key + "50", base=name == "same")
            t.add(
                label,
                "relay p99",
                r["p99"],
                "ms",
                key=key + "99",
                base=name == "same",
                note=f"({r['rate']:,.0f} msg/s; lost {r['lost']}, errors {r['errors']}; "
                f"server {r['server_us_per_msg']:,.0f} µs/msg)",
            )
            for k, v in r.items():
                if isinstance(v, int | float):
                    res.metrics[f"relay_{name}_{k}"] = v
        t.notes += [
            f"{a.per_session:g} candidate messages/s per session ({a.per_session * n:,.0f} msg/s), "
            f"{a.relay_seconds:g}s; latency from send to arrival on the provider's socket, both "
            "clocks this process's. Cross: each message goes replica A -> Redis pub/sub -> B.",
        ]
        self.relay_table = t

    def report(self, res: Results, med: dict[str, dict[str, float]], floor: float) -> None:
        a = self.args
        t = AuthTable("6. Replicas on one PostgreSQL and one Redis: one replica vs two")
        c = f"{a.clients} clients"

        def rate_row(
            system: str, key: str, metric: str, base: str, base_flag: bool = False
        ) -> None:
            r = med[key]
            t.add(
                system,
                f"{metric} req/s, {c}",
                r["rate"],
                "/s",
                key=base,
                base=base_flag,
                note=f"(p50 {r['p50']:.2f} ms, p99 {r['p99']:.2f} ms)",
            )
            t.add(
                system,
                "  server CPU per request",
                r["cpu_us"],
                "us",
                key=base + "cpu",
                base=base_flag,
                note=f"(Redis's own: {r['redis_us']:.1f} µs)",
            )

        rate_row("1 replica, Redis", "meN_1", "GET /v1/me", "me", True)
        rate_row("2 replicas, Redis", "meN_2", "GET /v1/me", "me")
        rate_row("1 replica, no Redis", "meN_plain", "GET /v1/me", "me")
        rate_row("1 replica, Redis", "tok_1", "POST /oauth/token", "tok", True)
        rate_row("2 replicas, Redis", "tok_2", "POST /oauth/token", "tok")
        t.add(
            "1 replica, no Redis",
            "GET /v1/me p50, 1 client",
            med["me1_plain"]["p50"],
            "ms",
            key="lat",
            base=True,
        )
        t.add(
            "1 replica, Redis", "GET /v1/me p50, 1 client", med["me1_redis"]["p50"], "ms", key="lat"
        )
        t.add("redis-py SET NX PX", "p50, 1 client (the floor)", floor, "ms", key="lat")
        t.notes += [
            f"median of {a.rounds} rounds; rows alternate within a round. Each request carries a "
            "fresh DPoP proof (its jti is spent in Redis: SET NX PX); a row ends after "
            f"{a.row_seconds:.0f}s or its requests. Server CPU: user + system from /proc of the "
            "replicas serving the row (1 replica: the one serving, while the other idles "
            "beside it), per request sent; PostgreSQL's and the load generator's are "
            "not in it. Redis's own CPU is given beside it.",
            "the two replicas, the load generator, PostgreSQL and Redis share this machine's "
            f"{os.cpu_count()} cores.",
        ]
        res.emit(t)
        if self.relay_table is not None:
            res.emit(self.relay_table)
        lines: list[dict[str, Any]] = []

        def add(target: str, ok: bool | None, detail: str) -> None:
            lines.append({"target": target, "status": status(ok), "detail": detail})

        cpu = med["meN_2"]["cpu_us"] / med["meN_1"]["cpu_us"]
        add(
            f"server CPU per authenticated request, 2 replicas <= {CPU_TARGET:.2f}x of 1",
            cpu <= CPU_TARGET,
            f"{cpu:.2f}x ({med['meN_2']['cpu_us']:,.0f} vs {med['meN_1']['cpu_us']:,.0f} µs)",
        )
        rate = med["meN_2"]["rate"] / med["meN_1"]["rate"]
        add(
            f"2 replicas >= {RATE_TARGET:.1f}x the requests/s of 1",
            rate >= RATE_TARGET,
            f"{rate:.2f}x ({med['meN_2']['rate']:,.0f} vs {med['meN_1']['rate']:,.0f} req/s)",
        )
        tok = med["tok_2"]["rate"] / med["tok_1"]["rate"]
        add(
            "token issuance, 2 replicas vs 1 (no target)",
            None,
            f"{tok:.2f}x ({med['tok_2']['rate']:,.0f} vs {med['tok_1']['rate']:,.0f} tokens/s)",
        )
        extra = med["me1_redis"]["p50"] - med["me1_plain"]["p50"]
        add(
            f"Redis adds < {REDIS_P50_TARGET_MS} ms to an authenticated request at p50",
            extra < REDIS_P50_TARGET_MS,
            f"{extra:+.3f} ms (p50 {med['me1_redis']['p50']:.3f} vs "
            f"{med['me1_plain']['p50']:.3f} ms; "
            f"redis-py's own round trip {floor:.3f} ms)",
        )
        if "relay_cross_p99" in res.metrics:
            p99 = res.metrics["relay_cross_p99"]
            lost = res.metrics["relay_cross_lost"]
            add(
                f"cross-replica relay p99 < {RELAY_P99_MS:g} ms at {a.sessions:,} sessions",
                p99 < RELAY_P99_MS and lost == 0,
                f"{p99:.2f} ms (same replica {res.metrics['relay_same_p99']:.2f} ms; "
                f"lost {lost:.0f})",
            )
        print_summary(res, lines, "--quick: fewer requests and one round" if a.quick else None)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.replicas", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument(
        "--database-url", default=os.environ.get("TELEGATE_TEST_DATABASE_URL") or DEFAULT_DB
    )
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--row-seconds", type=float, default=8.0)
    p.add_argument("--sessions", type=int, default=None, help="calls in the relay rows")
    p.add_argument("--per-session", type=float, default=1.0, help="messages/s per call")
    p.add_argument("--relay-seconds", type=float, default=10.0)
    p.add_argument("--no-relay", action="store_true", help="skip the signalling relay rows")
    args = p.parse_args(argv)
    if args.sessions is None:
        args.sessions = 100 if args.quick else 1000
    args.requests = 1500 if args.quick else 6000
    args.tokens = 300 if args.quick else 1200
    args.latency_requests = 300 if args.quick else 1000
    if args.quick:
        args.rounds = 1
    return args


@contextlib.contextmanager
def _tmpdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="telegate-bench-replicas-") as d:
        yield Path(d)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    res = Results(args=vars(args))
    t0 = time.monotonic()
    with _tmpdir() as tmp:
        b = Bench(args, tmp)
        try:
            b.start()
            asyncio.run(b.enroll())

            async def go() -> None:
                await b.run(res)

            asyncio.run(go())
        except BaseException:
            # What the replicas said, before their directory goes.
            for log in sorted(tmp.glob("*/logs/*.log")):
                tail = log.read_text(errors="replace").splitlines()[-15:]
                print(f"--- {log.name}:\n" + "\n".join(tail), file=sys.stderr)
            raise
        finally:
            b.close()
    print(
        f"\n(total {time.monotonic() - t0:.0f}s; load average at the end "
        f"{'/'.join(f'{x:.2f}' for x in os.getloadavg())})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
