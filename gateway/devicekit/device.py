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

Clock skew: a device's clock may be minutes off, and the gateway refuses proofs dated
outside its tolerance (``clock_skew``, 30 s) and readings dated in its future (5 minutes).
Every answer tells the gateway's time (transport.py); the device keeps the offset it
learns (in its queue file) and corrects what it signs: the reading times of a batch (given
on the device's own clock, :meth:`Device.local_now`) and the ``iat`` of its proofs. A
queued batch signed with an offset that has since proved wrong is signed again, with the
same batch id, before it is sent, so a batch refused as "in the future" or "too old"
because of the device's clock goes again corrected instead of being dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
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
from ..client import ClientError, Credentials, _request, enroll
from ..rfc3339 import parse_time
from .queue import Item, OfflineQueue
from .transport import HttpTransport, Offline, Transport, http_date

__all__ = ["Device", "Flushed"]

CREDENTIALS = "device.json"
QUEUE = "queue.db"
TYP = "vitals+json"
#: Passing failures: try the same batch again later.
RETRY_STATUSES = frozenset({401, 408, 425, 429})
#: An offset that moves by less is not worth signing a batch again (HTTP dates have whole
#: seconds; the gateway tolerates 30 s in a proof and 5 minutes ahead in a reading).
SKEW_TOLERANCE = 2.0
#: Largest offset believed (a gateway is not a year off): past it, the clock is left alone.
MAX_SKEW = 7 * 86_400.0


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
        self.clock = clock
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.rng = rng
        self._kid = HolderKey.from_jwk(creds.jwk).jkt
        #: Seconds to add to this device's clock to get the gateway's (learned).
        self.offset = float(queue.get("clock_offset") or 0.0)
        self.transport: Transport = transport or HttpTransport(creds, now=self.now)

    # -- on disk -----------------------------------------------------------------------
    @classmethod
    def enroll(
        cls, directory: Path, server: str, invite: str, *, serial: str, model: str, **kw: Any
    ) -> Device:
        """Redeem a device invite with a new key, keep the credentials in
        ``directory/device.json`` (0600, never over an existing file), open the queue and
        learn the gateway's time (a clock too far behind is not caught by the gateway:
        readings dated in the past are valid). Blocking (HTTP)."""
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        creds = enroll(server, invite, serial=serial, model=model)
        creds.save(directory / CREDENTIALS)
        device = cls.open(directory, **kw)
        device.sync_time()
        return device

    def sync_time(self) -> bool:
        """Ask the gateway its time (``GET /readyz``, its ``Date``) and learn the offset;
        True if it moved. Blocking; an unreachable gateway teaches nothing."""
        try:
            _, headers, _ = _request("GET", f"{self.creds.server.rstrip('/')}/readyz")
        except ClientError:
            return False
        date = http_date(headers.get("Date") or headers.get("date"))
        return date is not None and self._learn((date, time.time()))

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

    # -- time ---------------------------------------------------------------------------
    def local_now(self) -> float:
        """The device's own clock (what its readings are stamped with)."""
        return self.clock()

    def now(self) -> float:
        """The device's clock corrected by the offset it learned: the gateway's time."""
        return self.clock() + self.offset

    def _learn(self, told: tuple[float, float] | None = None) -> bool:
        """Take the time ``told`` (by default the transport's last answer's, see
        transport.py); True if the offset moved."""
        told = told or self.transport.server_time
        if told is None:
            return False
        server, at = told
        # The answer came ``time.time() - at`` ago; the device's clock then read that much
        # less than now.
        offset = server - (self.clock() - (time.time() - at))
        if abs(offset) > MAX_SKEW or abs(offset - self.offset) <= SKEW_TOLERANCE:
            return False
        self.offset = offset
        self.queue.set("clock_offset", repr(offset))
        return True

    # -- batches -----------------------------------------------------------------------
    def sign(self, payload: dict[str, Any]) -> str:
        raw = json.dumps(payload, separators=(",", ":")).encode()
        return jwt.api_jws.PyJWS().encode(
            raw, self.creds.key, algorithm="EdDSA", headers={"typ": TYP, "kid": self._kid}
        )

    def record(self, readings: list[dict[str, Any]], batch_id: str | None = None) -> str:
        """Sign ``readings`` (times on the device's own clock) as one batch and queue it
        (durably); its batch id. Raises QueueFull when the queue is at its maximum."""
        now = self.clock()
        # Time-ordered and unique: readable in logs, and never reused by this device.
        batch_id = batch_id or f"{int(now * 1000):013d}-{secrets.token_hex(6)}"
        unsigned = {"batch_id": batch_id, "device": self.id, "readings": readings}
        jws = self.sign(_shifted(unsigned, self.offset))
        self.queue.put(batch_id, jws, now, json.dumps(unsigned), self.offset)
        return batch_id

    def _current(self, item: Item) -> tuple[str, int]:
        """The item's JWS, signed again if the offset moved since it was signed, and how
        many times it has been signed."""
        if item.unsigned is None or abs(item.skew - self.offset) <= SKEW_TOLERANCE:
            return item.jws, item.signings
        jws = self.sign(_shifted(json.loads(item.unsigned), self.offset))
        self.queue.resigned(item.seq, jws, self.offset)
        return jws, item.signings + 1

    def _backoff(self, attempts: int) -> float:
        delay = min(self.backoff_max, self.backoff_base * 2.0 ** min(attempts, 30))
        return delay * (0.5 + 0.5 * self.rng())  # jitter: devices do not retry in step

    async def flush(self) -> Flushed:
        """Send what is due, oldest first, until the queue is empty, the head is not due
        yet, or a passing failure (then the head waits its backoff)."""
        delivered = rejected = 0
        corrected: set[int] = set()
        while (item := self.queue.head()) is not None:
            now = self.clock()
            if item.next_try > now:
                return Flushed(delivered, rejected, len(self.queue), item.next_try - now)
            jws, signings = self._current(item)
            try:
                status, body = await self.transport.send(jws)
            except Offline as e:
                status, body, error = 0, {}, str(e)
            else:
                error = f"HTTP {status}: {body.get('title', '')}"
            if self._learn() and item.seq not in corrected and status not in (200, 201):
                # Refused perhaps for the device's clock (a proof or readings out of the
                # gateway's window), which the answer just corrected: once more, now.
                corrected.add(item.seq)
                continue
            if status in (200, 201) or (status == 409 and signings > 1):
                # 409 for a batch signed again: the gateway has this batch id from this
                # device with the first signature's times (an answer lost before the
                # correction), recorded once.
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


def _shifted(payload: dict[str, Any], offset: float) -> dict[str, Any]:
    """``payload`` with every reading's time moved by ``offset`` seconds (unchanged when
    the offset is zero, to the millisecond otherwise)."""
    if not offset:
        return payload
    readings = []
    for r in payload["readings"]:
        t = r.get("time") if isinstance(r, dict) else None
        if isinstance(t, str):
            try:
                moved = parse_time(t).astimezone(dt.UTC) + dt.timedelta(seconds=offset)
            except ValueError:  # not a time: the gateway says so, with the batch's others
                moved = None
            if moved is not None:
                r = {**r, "time": moved.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"}
        readings.append(r)
    return {**payload, "readings": readings}
