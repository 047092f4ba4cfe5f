"""A device: its key (kept on disk, 0600), its signed batches, and their way to the
gateway through an offline queue.

``record`` signs a batch and queues it on disk before anything is sent, so a batch exists
once it is recorded, whatever happens next. ``flush`` sends what is queued, oldest first:
a batch the gateway has (201, or 200 for one it had already: the same receipt) leaves the
queue; a passing failure (unreachable, 5xx, 429, 401) stops the flush, in order, and the
head waits with exponential backoff and jitter; a refusal for good (another 4xx) moves
the batch to the queue's ``rejected`` table. Every batch carries its own id, which the
gateway keeps once per device: a batch sent again after a crash between its delivery and
its removal from the queue is recorded once (at-least-once delivery, exactly-once record).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from ..auth.jwk import HolderKey
from ..client import Credentials, enroll
from .queue import OfflineQueue
from .transport import HttpTransport, Offline, Transport

__all__ = ["Device", "Flushed"]

CREDENTIALS = "device.json"
QUEUE = "queue.db"
TYP = "vitals+json"
#: Passing failures: try the same batch again later.
RETRY_STATUSES = frozenset({401, 408, 425, 429})


@dataclass(frozen=True, slots=True)
class Flushed:
    """What one flush did; ``retry_in``: seconds until the head is due (None: empty)."""

    delivered: int
    rejected: int
    waiting: int
    retry_in: float | None


class Device:
    def __init__(
        self,
        creds: Credentials,
        queue: OfflineQueue,
        transport: Transport | None = None,
        *,
        clock: Callable[[], float] = time.time,
        backoff_base: float = 1.0,
        backoff_max: float = 300.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.creds = creds
        self.queue = queue
        self.transport: Transport = transport or HttpTransport(creds)
        self.clock = clock
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.rng = rng
        self._kid = HolderKey.from_jwk(creds.jwk).jkt

    # -- on disk -----------------------------------------------------------------------
    @classmethod
    def enroll(
        cls, directory: Path, server: str, invite: str, *, serial: str, model: str, **kw: Any
    ) -> Device:
        """Redeem a device invite with a new key, keep the credentials in
        ``directory/device.json`` (0600, never over an existing file) and open the queue."""
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        creds = enroll(server, invite, serial=serial, model=model)
        creds.save(directory / CREDENTIALS)
        return cls.open(directory, **kw)

    @classmethod
    def open(
        cls,
        directory: Path,
        transport: Transport | None = None,
        *,
        max_items: int = 10_000,
        **kw: Any,
    ) -> Device:
        """The device kept in ``directory``, its queue as the last run left it."""
        creds = Credentials.load(directory / CREDENTIALS)
        return cls(creds, OfflineQueue(directory / QUEUE, max_items), transport, **kw)

    async def close(self) -> None:
        await self.transport.close()
        self.queue.close()

    @property
    def id(self) -> str:
        return self.creds.sub

    # -- batches -----------------------------------------------------------------------
    def sign(self, payload: dict[str, Any]) -> str:
        raw = json.dumps(payload, separators=(",", ":")).encode()
        return jwt.api_jws.PyJWS().encode(
            raw, self.creds.key, algorithm="EdDSA", headers={"typ": TYP, "kid": self._kid}
        )

    def record(self, readings: list[dict[str, Any]], batch_id: str | None = None) -> str:
        """Sign ``readings`` as one batch and queue it (durably); its batch id. Raises
        QueueFull when the queue is at its maximum."""
        now = self.clock()
        # Time-ordered and unique: readable in logs, and never reused by this device.
        batch_id = batch_id or f"{int(now * 1000):013d}-{secrets.token_hex(6)}"
        jws = self.sign({"batch_id": batch_id, "device": self.id, "readings": readings})
        self.queue.put(batch_id, jws, now)
        return batch_id

    def _backoff(self, attempts: int) -> float:
        delay = min(self.backoff_max, self.backoff_base * 2.0 ** min(attempts, 30))
        return delay * (0.5 + 0.5 * self.rng())  # jitter: devices do not retry in step

    async def flush(self) -> Flushed:
        """Send what is due, oldest first, until the queue is empty, the head is not due
        yet, or a passing failure (then the head waits its backoff)."""
        delivered = rejected = 0
        while (item := self.queue.head()) is not None:
            now = self.clock()
            if item.next_try > now:
                return Flushed(delivered, rejected, len(self.queue), item.next_try - now)
            try:
                status, body = await self.transport.send(item.jws)
            except Offline as e:
                status, body, error = 0, {}, str(e)
            else:
                error = f"HTTP {status}: {body.get('title', '')}"
            if status in (200, 201):
                self.queue.delivered(item.seq)
                delivered += 1
            elif status == 0 or status >= 500 or status in RETRY_STATUSES:
                wait = self._backoff(item.attempts)
                self.queue.retry_at(item.seq, self.clock() + wait, error)
                return Flushed(delivered, rejected, len(self.queue), wait)
            else:
                self.queue.reject(item.seq, status, json.dumps(body), self.clock())
                rejected += 1
        return Flushed(delivered, rejected, 0, None)

    async def run(self, stop: asyncio.Event, idle: float = 1.0) -> None:
        """Flush until ``stop`` is set: at once when due, else after the backoff (or
        ``idle`` seconds when the queue is empty, to pick up new batches)."""
        while not stop.is_set():
            done = await self.flush()
            wait = idle if done.retry_in is None else min(done.retry_in, self.backoff_max)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)
