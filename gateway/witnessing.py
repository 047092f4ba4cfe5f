"""The gateway as a witnessed log: its checkpoints submitted to witnesses, their cosignatures
collected, kept and served.

One task picks the checkpoint to submit (the newest, at most ``witness_rate`` times a second:
every witness is sent the same one, so their cosignatures land on the same size and a k-of-n
quorum forms), and one task per witness submits it (C2SP tlog-witness add-checkpoint), one
request in flight, with ``old`` the size that witness last cosigned and the RFC 6962
consistency proof from there. Network errors and 5xx back off exponentially with jitter.
A refusal that can mean this log forked or was rolled back (403, 404, 422, a witness that
has cosigned a larger tree than this log holds, a cosignature that does not verify) raises
an alarm: a log line, a metric and one ``witness.alarm`` ledger event per new condition.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from ledger.checkpoint import Checkpoint
from ledger.cosigning import (
    REFUSALS,
    BadWitnessAnswer,
    accept_cosignature,
    add_checkpoint_body,
    backoff,
    parse_size_body,
)
from ledger.errors import LedgerError
from ledger.log import Log
from ledger.note import parse_note

from .config import WitnessPeer
from .cosignatures import CosignatureStore
from .observability import Metrics

__all__ = ["COMMIT_SIGNAL", "WITNESSING", "CommitSignal", "Witnessing"]

log = logging.getLogger("telegate.witnessing")

FIRST_BACKOFF = 0.1  # seconds; doubles per consecutive failure up to witness_backoff_max
REQUEST_TIMEOUT = 10.0
MAX_ANSWER = 64 * 1024  # a few signature lines; anything longer is not a witness answer


class CommitSignal:
    """Called by the ledger writer thread after each commit; wakes the picker on the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.event = asyncio.Event()

    def __call__(self) -> None:
        # A stale read of is_set() only costs one redundant wake-up.
        if not self.event.is_set():
            # RuntimeError: the loop has closed, so nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self.event.set)


@dataclass(frozen=True, slots=True)
class _Target:
    size: int
    note: bytes
    picked: float  # time.perf_counter() when it was picked


@dataclass(slots=True)
class _Peer:
    """One witness and what this log knows of it."""

    peer: WitnessPeer
    size: int = 0  # the largest size it cosigned (or said, in a 409, it cosigned)
    # False when ``size`` comes from a 409: the witness holds a checkpoint of that size, but
    # not necessarily this log's. Submitting ours at that very size (old == size, no proof)
    # settles it: cosigned again if it is ours, 422 if the witness holds another history.
    confirmed: bool = True
    failures: int = 0  # consecutive
    alarm: str | None = None

    @property
    def name(self) -> str:
        return self.peer.name


class Witnessing:
    """Submits this log's checkpoints to ``peers`` and publishes the newest one cosigned by
    ``quorum`` of them with :meth:`Log.set_cosigned`. Start with :meth:`start` on the loop."""

    def __init__(
        self,
        ledger: Log,
        store: CosignatureStore,
        peers: Sequence[WitnessPeer],
        *,
        quorum: int,
        rate: float,
        backoff_max: float,
        metrics: Metrics,
        signal: CommitSignal,
        on_alarm: Callable[[dict[str, Any]], Awaitable[object]],
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.ledger, self.store, self.quorum = ledger, store, quorum
        self.peers = [_Peer(p) for p in peers]
        self.interval, self.backoff_max = 1 / rate, backoff_max
        self.metrics, self.signal, self.on_alarm, self.rand = metrics, signal, on_alarm, rand
        self.published = 0  # size of the newest checkpoint cosigned by the quorum
        self._adopted = -1
        self._target = _Target(-1, b"", 0.0)
        self._new_target = asyncio.Condition()
        self._publish_lock = asyncio.Lock()
        self._publishes = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._proofs: dict[tuple[int, int], asyncio.Future[list[bytes]]] = {}
        self._session: aiohttp.ClientSession | None = None

    # -- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        for p in self.peers:
            p.size = await asyncio.to_thread(self.store.witnessed_size, p.peer.vkey)
            self.metrics.witness_size.labels(p.name).set(p.size)
            self.metrics.witness_lag.labels(p.name).set_function(self._lag_of(p))
        await self._publish()
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
        self._session = aiohttp.ClientSession(timeout=timeout)
        self.signal.event.set()  # submit the current checkpoint at once
        self._tasks = [asyncio.create_task(self._pick(), name="witnessing-picker")]
        self._tasks += [
            asyncio.create_task(self._run(p), name=f"witness {p.name}") for p in self.peers
        ]

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def _lag_of(self, p: _Peer) -> Callable[[], float]:
        return lambda: max(0, self.ledger.size - p.size)

    def status(self) -> dict[str, Any]:
        """How far witnessing is behind, for /readyz: sizes and alarms, no URLs."""
        size = self.ledger.size
        return {
            "quorum": self.quorum,
            "witnessed_size": self.published,
            "lag": max(0, size - self.published),
            "witnesses": [
                {"name": p.name, "size": p.size, "lag": max(0, size - p.size), "alarm": p.alarm}
                for p in self.peers
            ],
        }

    # -- choosing what to submit -----------------------------------------------------
    async def _pick(self) -> None:
        while True:
            await self.signal.event.wait()
            self.signal.event.clear()
            note = self.ledger.checkpoint()
            size = Checkpoint.parse(parse_note(note).text).size
            if size > self._target.size:
                async with self._new_target:
                    self._target = _Target(size, note, time.perf_counter())
                    self._new_target.notify_all()
            # The rate limit: what commits meanwhile coalesces into the next, newest, pick.
            await asyncio.sleep(self.interval)

    async def _next(self, p: _Peer) -> _Target:
        async with self._new_target:
            await self._new_target.wait_for(
                lambda: (
                    self._target.size > p.size or (self._target.size == p.size and not p.confirmed)
                )
            )
            return self._target

    # -- one witness -----------------------------------------------------------------
    async def _run(self, p: _Peer) -> None:
        if p.size > self.ledger.size:
            # Cosigned by this witness before, and now beyond the log: restored from a backup.
            await self._alarm(p, "rollback", None, self.ledger.size)
        while True:
            try:
                delay = await self._submit(p, await self._next(p))
            except (LedgerError, OSError) as e:  # the store: keep going, slowly
                log.exception("witness submission broke", extra={"fields": {"witness": p.name}})
                delay = self._retry(p, "internal", type(e).__name__)
            if delay:
                await asyncio.sleep(delay)

    async def _proof(self, old: int, new: int) -> list[bytes]:
        """The consistency proof old -> new, computed once however many witnesses are at
        ``old`` (they usually are: every witness is sent the same target)."""
        key = (old, new)
        task = self._proofs.get(key)
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            if len(self._proofs) > 4 * len(self.peers):
                self._proofs = {k: t for k, t in self._proofs.items() if k[1] == new}
            task = asyncio.ensure_future(asyncio.to_thread(self.ledger.consistency_proof, old, new))
            self._proofs[key] = task
        return await asyncio.shield(task)

    def _keep(self, p: _Peer, target: _Target, answer: bytes) -> None:
        """Check a 200 answer against the witness's key and keep the line (one thread hop
        for both: the Ed25519 check stays off the event loop). Raises BadWitnessAnswer."""
        line, ts = accept_cosignature(target.note, answer, p.peer.verifier)
        self.store.add(p.peer.vkey, target.size, target.note, line, ts)

    async def _submit(self, p: _Peer, target: _Target) -> float:
        """One add-checkpoint round trip; returns how long to wait before the next one."""
        old = p.size
        proof = await self._proof(old, target.size) if old else []
        body = add_checkpoint_body(old, proof, target.note)
        assert self._session is not None
        try:
            url = p.peer.url.rstrip("/") + "/add-checkpoint"
            async with self._session.post(url, data=body) as resp:
                status, answer = resp.status, await _read_bounded(resp)
        except (aiohttp.ClientError, TimeoutError, OSError, BadWitnessAnswer) as e:
            return self._retry(p, "network", type(e).__name__)
        if status == 200:
            try:
                await asyncio.to_thread(self._keep, p, target, answer)
            except BadWitnessAnswer:
                return await self._alarm(p, "bad_cosignature", status, target.size)
            self._cosigned(p, target)
            # Ask the store only when, by what this process saw, a quorum may now hold a
            # newer size: one query per witnessed checkpoint rather than one per witness.
            holding = sum(1 for q in self.peers if q.confirmed and q.size >= target.size)
            if holding >= self.quorum and target.size > self._adopted:
                await self._publish()
            return 0
        if status == 409:
            try:
                said = parse_size_body(answer)
            except BadWitnessAnswer:
                return self._retry(p, "409", "malformed size body")
            if said == old:  # a witness contradicting itself: not worth a tight loop
                return self._retry(p, "409", "same size")
            p.size, p.confirmed = said, False  # tlog-witness: retry from the size it has
            self.metrics.witness_size.labels(p.name).set(said)
            if said > self.ledger.size:
                return await self._alarm(p, "rollback", status, target.size)
            return 0
        if status in REFUSALS:
            return await self._alarm(p, REFUSALS[status], status, target.size)
        return self._retry(p, str(status), f"HTTP {status}")

    def _cosigned(self, p: _Peer, target: _Target) -> None:
        if p.alarm is not None:
            log.warning("witness cosigns again", extra={"fields": {"witness": p.name}})
        p.size, p.confirmed, p.failures, p.alarm = target.size, True, 0, None
        self.metrics.witness_size.labels(p.name).set(target.size)
        self.metrics.witness_latency.labels(p.name).observe(time.perf_counter() - target.picked)

    def _retry(self, p: _Peer, kind: str, why: str) -> float:
        """A failure worth retrying (network, 5xx): exponential back-off with jitter."""
        p.failures += 1
        self.metrics.witness_failures.labels(p.name, kind).inc()
        delay = backoff(p.failures, FIRST_BACKOFF, self.backoff_max, self.rand())
        fields = {"witness": p.name, "kind": kind, "why": why, "retry_in": round(delay, 3)}
        log.warning("witness submission failed", extra={"fields": fields})
        return delay

    async def _alarm(self, p: _Peer, reason: str, status: int | None, size: int) -> float:
        """A refusal that may mean a fork or rollback: log, metric, and a ledger event the
        first time this condition is seen. Retried slowly, in case an operator fixes it."""
        p.failures += 1
        self.metrics.witness_failures.labels(p.name, "alarm").inc()
        self.metrics.witness_alarms.labels(p.name, reason).inc()
        data = {"witness": p.name, "vkey": p.peer.vkey, "status": status, "reason": reason}
        data |= {"log_size": size, "witness_size": p.size}
        log.error("witness alarm", extra={"fields": data})
        if p.alarm != reason:
            p.alarm = reason
            try:
                await self.on_alarm(data)
            except LedgerError as e:
                log.error("could not record a witness alarm", extra={"fields": {"error": str(e)}})
        return self.backoff_max

    # -- publishing ------------------------------------------------------------------
    async def _publish(self) -> None:
        """Adopt the newest checkpoint the quorum cosigned for /ledger/checkpoint and receipts."""
        if self.quorum < 1:
            return
        async with self._publish_lock:
            vkeys = [p.peer.vkey for p in self.peers]
            found = await asyncio.to_thread(self.store.newest, vkeys, self.quorum)
            if found is None or found[0] <= self._adopted:
                return
            size, note = found
            try:
                await asyncio.to_thread(self.ledger.set_cosigned, note)
            except LedgerError as e:
                # Cosignatures kept for a tree this log does not hold (ledger.db restored
                # without cosignatures.db): never served; the witnesses will say the rest.
                log.error(
                    "kept cosignatures do not match the log", extra={"fields": {"error": str(e)}}
                )
                return
            self.published = self._adopted = size
            self.metrics.witnessed_size.set(size)
            self._publishes += 1
            # Older lines are never served again; pruning now and then keeps the file small
            # without one more fsync per cosignature.
            if self._publishes % 64 == 0:
                await asyncio.to_thread(self.store.prune, size)


async def _read_bounded(resp: aiohttp.ClientResponse) -> bytes:
    # StreamReader.read(n) returns what has arrived so far: loop to the end or the limit.
    data = bytearray()
    while chunk := await resp.content.read(MAX_ANSWER + 1 - len(data)):
        data += chunk
        if len(data) > MAX_ANSWER:
            raise BadWitnessAnswer(f"an answer longer than {MAX_ANSWER} bytes")
    return bytes(data)


#: Set only when witnesses are configured.
WITNESSING = web.AppKey("witnessing", Witnessing)
COMMIT_SIGNAL = web.AppKey("commit_signal", CommitSignal)
