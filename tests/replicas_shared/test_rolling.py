"""Rolling restarts: SIGTERM drains a replica (gateway/shared/drain.py) while clients keep
calling the API through the others; nothing is answered 5xx but 503, nothing acknowledged
is lost, every drain exits 0 and closes its WebSockets with 1001."""

from __future__ import annotations

import asyncio
import json
import random
import re
import signal
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from ledger.log import Receipt
from ledger.note import Verifier
from tests.gateway.idclient import Holder, admin, get_token
from tests.gateway.test_sessions import Call
from tests.replicas.client import Ack, check_included, get_checkpoint
from tests.replicas.conftest import Replica, Replicas
from tests.replicas_shared.conftest import Remote, config_of

#: Acknowledged appends through each replica between two restarts.
ACKS_BETWEEN = 10


async def _body(r: aiohttp.ClientResponse) -> Any:
    try:
        return await r.json(content_type=None)
    except (json.JSONDecodeError, aiohttp.ContentTypeError):
        return {"text": await r.text()}


@dataclass
class Clients:
    """Workers that each, in a loop, get a token, read ``/v1/me`` and append (an invite),
    at a random replica; a 503 or a refused connection is retried (elsewhere, maybe)."""

    remotes: list[Remote]
    holder: Holder
    log: Verifier
    acks: list[Ack] = field(default_factory=list)
    failures: list[tuple[str, str, int, Any]] = field(default_factory=list)
    retried: dict[str, int] = field(default_factory=lambda: {"503": 0, "connection": 0})
    stopping: bool = False

    async def step(self, rng: random.Random, method: str, path: str, **kw: Any) -> Any:
        """One call, retried until a replica answers it with anything but 503."""
        while True:
            c = rng.choice(self.remotes)
            try:
                if path == "/oauth/token":
                    from tests.gateway.idclient import token_response

                    r = await token_response(c, self.holder)
                else:
                    token = kw["token"]
                    url = str(c.make_url(path))
                    headers = {
                        "Authorization": f"DPoP {token}",
                        "DPoP": self.holder.dpop(method, url, token),
                    }
                    r = await c.request(method, path, headers=headers, json=kw.get("json"))
                body = await _body(r)
            except (aiohttp.ClientConnectionError, TimeoutError):
                self.retried["connection"] += 1
                await asyncio.sleep(0.02)
                continue
            if r.status == 503:
                # The drain's answer, or the ledger's: always with a Retry-After.
                assert "Retry-After" in r.headers, body
                self.retried["503"] += 1
                await asyncio.sleep(0.02)
                continue
            if r.status >= 300:
                self.failures.append((c.replica.name, path, r.status, body))
                return None
            return c.replica.name, body

    async def worker(self, i: int) -> None:
        rng = random.Random(i)
        while not self.stopping:
            got = await self.step(rng, "POST", "/oauth/token")
            if got is None:
                continue
            token = got[1]["access_token"]
            await self.step(rng, "GET", "/v1/me", token=token)
            got = await self.step(
                rng, "POST", "/v1/invites", token=token, json={"role": "auditor", "ttl": 60}
            )
            if got is not None:
                receipt = Receipt.from_json(got[1]["receipt"])
                receipt.verify(self.log)
                self.acks.append(Ack(got[0], receipt, 0.0))

    async def acks_from(self, name: str, n: int, limit: float = 60) -> None:
        """Wait until ``n`` more appends were acknowledged by replica ``name``."""
        want = sum(1 for a in self.acks if a.replica == name) + n
        async with asyncio.timeout(limit):
            while sum(1 for a in self.acks if a.replica == name) < want:
                assert not self.failures, self.failures
                await asyncio.sleep(0.02)


async def _closed_with(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    """Read until the server closes ``ws``; its close code."""
    async with asyncio.timeout(30):
        while True:
            msg = await ws.receive()
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                return ws.close_code
            if msg.type == aiohttp.WSMsgType.ERROR:
                raise AssertionError(f"socket error: {msg.data!r}")


async def test_a_rolling_restart_fails_no_call_and_loses_no_acknowledged_write(
    group: Replicas, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TELEGATE_DRAIN_SECONDS", "20")
    members = group.start(2)
    config = config_of(group)
    log = Verifier.from_vkey(group.vkey)
    async with aiohttp.ClientSession() as http:
        remotes = [Remote(http, r, config) for r in members]
        adm, _ = await admin(remotes[0], config.data_dir)
        k = await Call(remotes[0]).setup(config)
        sid = await k.schedule()
        clients = Clients(remotes, adm, log)
        tasks = [asyncio.create_task(clients.worker(i)) for i in range(4)]
        try:
            for rep, remote in zip(members, remotes, strict=True):
                await clients.acks_from(rep.name, ACKS_BETWEEN)
                # The provider's signalling socket on the replica about to restart.
                ws = await remote.ws_connect(
                    f"/v1/sessions/{sid}/ws?ticket={await _ticket(remote, sid, k)}"
                )
                assert (await ws.receive_json(timeout=10))["type"] == "hello"
                closed = asyncio.create_task(_closed_with(ws))
                rc = await asyncio.to_thread(rep.stop)  # SIGTERM, and wait for the exit
                assert rc == 0, rep.log_path.read_text()[-3000:]
                assert await closed == 1001
                await asyncio.to_thread(rep.start)
                await clients.acks_from(rep.name, ACKS_BETWEEN)
        finally:
            clients.stopping = True
            await asyncio.gather(*tasks, return_exceptions=True)
        assert not clients.failures, clients.failures
        print(f"acks={len(clients.acks)} retried={clients.retried}")
        # Every acknowledged append is in the log both replicas serve now.
        last = max(a.receipt.index for a in clients.acks)
        async with asyncio.timeout(30):
            while True:  # a replica's view of the shared log catches up on its own
                cps = [(await get_checkpoint(http, r, log))[0] for r in members]
                final = max(cps, key=lambda c: c.size)
                if final.size > last:
                    break
                await asyncio.sleep(0.05)
        await check_included(http, members, clients.acks, final)
        log_text = "".join(r.log_path.read_text() for r in members)
        assert not re.search(r"CleanupError|Traceback", log_text), log_text[-3000:]


async def _ticket(remote: Remote, sid: str, k: Call) -> str:
    token = await get_token(remote, k.prov)
    url = str(remote.make_url(f"/v1/sessions/{sid}/ticket"))
    headers = {"Authorization": f"DPoP {token}", "DPoP": k.prov.dpop("POST", url, token)}
    r = await remote.post(f"/v1/sessions/{sid}/ticket", headers=headers)
    assert r.status == 200, await r.text()
    return str((await r.json())["ticket"])


async def test_a_draining_replica_finishes_what_it_began_and_refuses_the_rest(
    group: Replicas, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TELEGATE_DRAIN_SECONDS", "60")
    (rep,) = group.start(1)
    config = config_of(group)
    async with aiohttp.ClientSession() as http:
        remote = Remote(http, rep, config)
        adm, token = await admin(remote, config.data_dir)
        # A request whose body is still on its way: in flight when SIGTERM comes.
        body = json.dumps({"role": "auditor", "ttl": 60}).encode()
        url = str(remote.make_url("/v1/invites"))
        head = (
            f"POST /v1/invites HTTP/1.1\r\nHost: 127.0.0.1:{rep.port}\r\n"
            f"Authorization: DPoP {token}\r\nDPoP: {adm.dpop('POST', url, token)}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        reader, writer = await asyncio.open_connection("127.0.0.1", rep.port)
        writer.write(head + body[:5])
        await writer.drain()
        await _inflight(http, rep, 2)  # that request, and this GET /metrics
        assert rep.proc is not None
        rep.proc.send_signal(signal.SIGTERM)
        # Not ready at once; a new request is refused with 503 and Retry-After.
        r = await _until_draining(http, rep)
        assert r == 503
        async with http.get(rep.url + "/v1/me", headers={"Connection": "close"}) as resp:
            assert resp.status == 503
            assert resp.headers["Retry-After"] == "1"
            assert resp.content_type == "application/problem+json"
        assert rep.proc.poll() is None  # still draining: the first request is not done
        # The rest of the body: that request completes.
        writer.write(body[5:])
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 30)
        writer.close()
        assert status_line.startswith(b"HTTP/1.1 201"), status_line
        rc = await asyncio.to_thread(rep.proc.wait, 30)
        assert rc == 0, rep.log_path.read_text()[-3000:]


async def _inflight(http: aiohttp.ClientSession, rep: Replica, n: int) -> None:
    async with asyncio.timeout(30):
        while True:
            async with http.get(rep.url + "/metrics") as r:
                text = await r.text()
            m = re.search(r"^telegate_requests_in_flight (\S+)$", text, re.M)
            if m and float(m.group(1)) >= n:
                return
            await asyncio.sleep(0.02)


async def _until_draining(http: aiohttp.ClientSession, rep: Replica) -> int:
    async with asyncio.timeout(30):
        while True:
            async with http.get(rep.url + "/readyz") as r:
                if r.status != 200:
                    return r.status
            await asyncio.sleep(0.01)
