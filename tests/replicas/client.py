"""Clients of a replica group: enrolled admins whose invites append ledger events, checkpoint
watchers, and the checks that every acknowledged receipt is in the final log.

An admin enrolls and gets its DPoP-bound token once (from one replica); every append is then
``POST /v1/invites`` (an ``invite.created`` event, its receipt in the answer) to whichever
replica the caller picks. All replicas share ``public_url``, so a token and a DPoP proof
made for one are good at every one (RFC 9449 4.3: ``htu`` is the URL the client addressed,
the load balancer's).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.checkpoint import Checkpoint, open_checkpoint
from ledger.log import Receipt
from ledger.merkle import verify_consistency, verify_inclusion
from ledger.note import Verifier
from tests.replicas.conftest import PUBLIC_URL, Replica, Replicas, telegate

#: No request may take longer than this: a hang is a failure, not a slow test.
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=20)


def b64u(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class Admin:
    """An enrolled admin with an Ed25519 holder key and an access token."""

    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.jwk = {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": b64u(self.key.public_key().public_bytes_raw()),
        }
        self.sub = ""
        self.token = ""

    def dpop(self, method: str, path: str, token: str | None = None) -> str:
        claims: dict[str, Any] = {
            "jti": secrets.token_urlsafe(12),
            "htm": method,
            "htu": PUBLIC_URL + path,
            "iat": int(time.time()),
        }
        if token is not None:
            claims["ath"] = b64u(hashlib.sha256(token.encode()).digest())
        return jwt.encode(
            claims, self.key, algorithm="EdDSA", headers={"typ": "dpop+jwt", "jwk": self.jwk}
        )

    def assertion(self) -> str:
        now = int(time.time())
        claims = {
            "iss": self.sub,
            "sub": self.sub,
            "aud": PUBLIC_URL + "/oauth/token",
            "exp": now + 120,
            "iat": now,
            "jti": secrets.token_urlsafe(12),
        }
        return jwt.encode(claims, self.key, algorithm="EdDSA")

    async def enroll(
        self, http: aiohttp.ClientSession, group: Replicas, at: Replica, by: Admin | None = None
    ) -> None:
        """Redeem at ``at`` an invite of ``by`` (another admin), or else a local bootstrap
        invite (``telegate invite admin``)."""
        if by is None:
            env = group.cli_env()
            code = telegate("invite", "admin", "--data-dir", str(group.data_dir), env=env)
        else:
            status, body = await append(http, by, at, role="admin")
            assert status == 201, body
            code = body["invite"]
        async with http.post(
            at.url + "/v1/enroll", json={"invite": code.strip(), "jwk": self.jwk}
        ) as resp:
            body = await resp.json()
            assert resp.status == 201, body
            self.sub = body["sub"]

    async def get_token(self, http: aiohttp.ClientSession, at: Replica) -> None:
        async with self.token_request(http, at) as resp:
            body = await resp.json()
            assert resp.status == 200, body
            self.token = body["access_token"]

    def token_request(self, http: aiohttp.ClientSession, at: Replica) -> Any:
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": self.assertion(),
        }
        headers = {"DPoP": self.dpop("POST", "/oauth/token")}
        return http.post(
            at.url + "/oauth/token", data=form, headers=headers, timeout=REQUEST_TIMEOUT
        )

    def headers(self, method: str, path: str) -> dict[str, str]:
        return {
            "Authorization": f"DPoP {self.token}",
            "DPoP": self.dpop(method, path, self.token),
        }


async def append(
    http: aiohttp.ClientSession, admin: Admin, at: Replica, role: str = "auditor"
) -> tuple[int, Any]:
    """One ledger append through ``at`` (an invite): (status, body), the Retry-After header
    folded into the body."""
    async with http.post(
        at.url + "/v1/invites",
        json={"role": role, "ttl": 60},
        headers=admin.headers("POST", "/v1/invites"),
        timeout=REQUEST_TIMEOUT,
    ) as resp:
        try:
            body = await resp.json(content_type=None)
        except (json.JSONDecodeError, aiohttp.ContentTypeError):
            body = {"text": await resp.text()}
        if "Retry-After" in resp.headers:
            body["retry_after"] = resp.headers["Retry-After"]
        return resp.status, body


async def get_checkpoint(
    http: aiohttp.ClientSession, at: Replica, log: Verifier
) -> tuple[Checkpoint, bytes]:
    async with http.get(at.url + "/ledger/checkpoint", timeout=REQUEST_TIMEOUT) as resp:
        assert resp.status == 200, await resp.text()
        note = await resp.read()
    return open_checkpoint(note, log).checkpoint, note


async def get_json(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url, timeout=REQUEST_TIMEOUT) as resp:
        body = await resp.json()
        assert resp.status == 200, body
        return body


@dataclass
class Ack:
    replica: str
    receipt: Receipt
    at: float  # monotonic time of the acknowledgement


@dataclass
class Load:
    """Workers appending through random live replicas until stopped; every acknowledgement
    kept. A request to a replica that dies under it is not acknowledged, and not counted."""

    http: aiohttp.ClientSession
    admins: list[Admin]
    members: list[Replica]
    log: Verifier
    pause: float = 0.0
    acks: list[Ack] = field(default_factory=list)
    #: Answers other than 201 from replicas that were alive before and after the request.
    failures: list[tuple[str, int, Any]] = field(default_factory=list)
    stopping: bool = False
    #: Per replica, the largest tree size it returned to a client (in a receipt).
    returned: dict[str, int] = field(default_factory=dict)
    _until: Callable[[], bool] = lambda: False
    _reached: asyncio.Event = field(default_factory=asyncio.Event)

    async def until(self, cond: Callable[[], bool], limit: float) -> bool:
        """Wait until ``cond()`` holds (checked after each acknowledgement), at most
        ``limit`` seconds; whether it holds."""
        self._until = cond
        self._reached.clear()
        if not cond():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reached.wait(), limit)
        return cond()

    async def worker(self, i: int) -> None:
        admin = self.admins[i % len(self.admins)]
        rng = random.Random(i)
        while not self.stopping:
            live = [r for r in self.members if r.ready]
            if not live:
                await asyncio.sleep(0.01)
                continue
            r = rng.choice(live)
            starts = r.starts
            try:
                status, body = await append(self.http, admin, r)
            except (TimeoutError, aiohttp.ClientConnectionError) as e:
                if r.ready and r.starts == starts:
                    self.failures.append((r.name, 0, repr(e)))
                continue
            if status == 201:
                receipt = Receipt.from_json(body["receipt"])
                receipt.verify(self.log)  # offline: signature and inclusion
                self.acks.append(Ack(r.name, receipt, time.monotonic()))
                size = open_checkpoint(receipt.checkpoint, self.log).checkpoint.size
                self.returned[r.name] = max(size, self.returned.get(r.name, 0))
                if self._until():
                    self._reached.set()
            elif r.ready and r.starts == starts:
                self.failures.append((r.name, status, body))
            if self.pause:
                await asyncio.sleep(self.pause)

    async def run(self, workers: int) -> list[asyncio.Task[None]]:
        return [asyncio.create_task(self.worker(i)) for i in range(workers)]


class Watcher:
    """Polls every replica's checkpoint; checks that no replica serves a checkpoint older
    than one it returned before: served here, or inside a receipt (``returned``)."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        members: list[Replica],
        log: Verifier,
        returned: dict[str, int],
    ) -> None:
        self.http = http
        self.members = members
        self.log = log
        self.returned = returned
        self.newest: Checkpoint | None = None  # the largest tree any replica served
        self.catch_ups = 0
        self.seen: dict[str, list[tuple[Checkpoint, bytes]]] = {}
        self.stopping = False

    async def run(self) -> None:
        while not self.stopping:
            for r in self.members:
                if not r.ready:
                    continue
                floor = self.returned.get(r.name, 0)  # what it returned before this GET
                try:
                    cp, note = await get_checkpoint(self.http, r, self.log)
                except aiohttp.ClientConnectionError:
                    continue
                # By name, across restarts too: a restarted replica starts from the
                # database, which holds at least every checkpoint any replica returned.
                mine = self.seen.setdefault(r.name, [])
                assert cp.size >= floor, f"{r.name} served {cp.size} after a receipt at {floor}"
                if mine:
                    last = mine[-1][0]
                    # A replica never serves a checkpoint older than one it returned.
                    assert cp.size >= last.size, f"{r.name} went back: {last.size} -> {cp.size}"
                    if cp.size == last.size:
                        assert cp.root == last.root, f"{r.name}: two roots for size {cp.size}"
                mine.append((cp, note))
                if self.newest is not None and self.newest.size > cp.size:
                    await self.catch_up(r, cp, self.newest)
                if self.newest is None or cp.size > self.newest.size:
                    self.newest = cp
            await asyncio.sleep(0.02)

    async def catch_up(self, r: Replica, mine: Checkpoint, newer: Checkpoint) -> None:
        """Ask ``r``, whose view is behind, for a proof up to a tree another replica
        served: it reads the shared tree on demand (``Log.catch_up``) while commits go on,
        which must neither fail nor take its view back. The proof is verified here."""
        url = f"{r.url}/ledger/proof/consistency?old={mine.size}&new={newer.size}"
        try:
            body = await get_json(self.http, url)
        except aiohttp.ClientConnectionError:
            return
        proof = [base64.b64decode(p) for p in body["proof"]]
        verify_consistency(mine.size, newer.size, mine.root, newer.root, proof)
        self.catch_ups += 1

    def checkpoints(self) -> list[Checkpoint]:
        return [cp for seen in self.seen.values() for cp, _ in seen]


async def check_consistent(
    http: aiohttp.ClientSession, members: list[Replica], olds: list[Checkpoint], final: Checkpoint
) -> int:
    """Every checkpoint in ``olds`` is a prefix of ``final``: a consistency proof for each
    distinct size, from a random live replica, verified here (RFC 9162 2.1.4.2)."""
    distinct = {cp.size: cp for cp in olds}
    live = [r for r in members if r.ready]
    for size, cp in sorted(distinct.items()):
        other = [c for c in olds if c.size == size and c.root != cp.root]
        assert not other, f"two roots for size {size}"
        r = random.choice(live)
        body = await get_json(http, f"{r.url}/ledger/proof/consistency?old={size}&new={final.size}")
        proof = [base64.b64decode(p) for p in body["proof"]]
        verify_consistency(size, final.size, cp.root, final.root, proof)
    return len(distinct)


async def check_included(
    http: aiohttp.ClientSession, members: list[Replica], acks: list[Ack], final: Checkpoint
) -> None:
    """Every acknowledged receipt's leaf is at its index in ``final``: an inclusion proof
    from a random live replica, verified here against the final root."""
    live = [r for r in members if r.ready]
    indexes = [a.receipt.index for a in acks]
    assert len(set(indexes)) == len(indexes), "two acknowledgements share a leaf index"
    sem = asyncio.Semaphore(8)

    async def one(a: Ack) -> None:
        r = random.choice(live)
        async with sem:
            body = await get_json(
                http, f"{r.url}/ledger/proof/inclusion?index={a.receipt.index}&size={final.size}"
            )
        leaf = base64.b64decode(body["leaf_hash"])
        assert leaf == a.receipt.leaf_hash, f"leaf {a.receipt.index} is not the acknowledged one"
        proof = [base64.b64decode(p) for p in body["proof"]]
        verify_inclusion(a.receipt.index, final.size, leaf, proof, final.root)

    await asyncio.gather(*(one(a) for a in acks))


def receipt_checkpoints(acks: list[Ack], log: Verifier) -> list[Checkpoint]:
    return [open_checkpoint(a.receipt.checkpoint, log).checkpoint for a in acks]
