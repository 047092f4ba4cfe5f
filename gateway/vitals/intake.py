"""Accepting a device's batch: verify, validate, encrypt, store, commit to the ledger.

Order matters for "nothing lost": the sealed batch is stored first (pending), then its
``vitals.batch`` event is appended, and only the ledger's receipt answers the device. A
crash in between leaves a pending row that :meth:`Intake.reconcile` settles on the next
start (it finds the event on the ledger, or appends it), and a device that retries gets
the same receipt, never a second event.

With several replicas on one database, a pending row may be another replica's request in
flight (stored, its append not yet done). Only the replica that stored a row settles it
before it is ``RECONCILE_GRACE`` seconds old (and only once its own append has failed);
anyone settles it after that, at start, in the periodic sweep or on a retry, under a row
lock that makes every other settler skip it (``VitalsStore.settle``). A retry that meets a
younger row stored elsewhere is told to come back (503, Retry-After) rather than append the
event a second time. The grace is far above an append's latency (milliseconds; the ledger
answers 503 when it cannot append), which is what makes the rule safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ledger.events import Event, EventType, commit, new_salt
from ledger.log import Log, Receipt

from ..auth.jwk import HolderKey
from ..auth.store import Subject
from ..auth.tokens import Forbidden
from ..clock import stamped
from ..errors import BadRequest, Conflict, GatewayError, Unavailable
from .batch import FHIR_CTY, Batch, Limits, check_readings, parse_native, verify_jws
from .fhir import bundle_readings
from .store import Erased, VitalsStore
from .stream import Streamer

__all__ = ["RECONCILE_GRACE", "Gone", "InFlight", "Intake", "Prepared", "Vitals"]

log = logging.getLogger("telegate.vitals")

#: Seconds (injected clock) a pending batch or erasure belongs to the request that stored
#: it; after that any replica may settle it.
RECONCILE_GRACE = 30
#: How many of this process's failed appends it remembers, to settle them on the retry.
ABANDONED_MAX = 10_000

Append = Callable[[Event | bytes], Awaitable[Receipt]]
Lookup = Callable[[str], Subject | None]


class Gone(GatewayError):
    status = 410
    slug = "erased"
    title = "This patient's data was erased"


class InFlight(Unavailable):
    """The batch is stored and another replica is appending its event: retry later for
    the receipt."""


@dataclass(frozen=True, slots=True)
class Prepared:
    batch: Batch
    patient: str
    device: str
    tag: bytes
    nonce: bytes
    ciphertext: bytes
    event: Event
    entry: bytes  # the event's ledger bytes, encoded once


class _GroupWriter:
    """Stores sealed batches in as few transactions (fsyncs) as the load allows: while one
    commit runs, the next requests queue and go together in the following one."""

    def __init__(self, store: VitalsStore, executor: ThreadPoolExecutor) -> None:
        self.store = store
        self.executor = executor
        self._rows: list[tuple[tuple[Any, ...], asyncio.Future[bool]]] = []
        self._done: list[tuple[int, str, str]] = []
        self._marks: list[asyncio.Future[None]] = []
        self._task: asyncio.Task[None] | None = None

    def _kick(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())

    async def put(self, row: tuple[Any, ...]) -> bool:
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._rows.append((row, fut))
        self._kick()
        return await fut

    def indexed(self, index: int, device: str, batch_id: str) -> None:
        self._done.append((index, device, batch_id))
        self._kick()

    async def indexes_written(self) -> None:
        """Return once the ledger indexes noted so far are committed (or their commit
        failed): a read after a post on this replica then sees that batch."""
        if not self._done and (self._task is None or self._task.done()):
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._marks.append(fut)
        self._kick()
        await fut

    async def _run(self) -> None:
        while self._rows or self._done or self._marks:
            rows, self._rows = self._rows, []
            done, self._done = self._done, []
            marks, self._marks = self._marks, []
            batch = [r for r, _ in rows]
            loop = asyncio.get_running_loop()
            try:
                results = await loop.run_in_executor(self.executor, self.store.commit, batch, done)
            except Exception as e:  # every waiter learns of the failure
                for _, fut in rows:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            finally:
                for mark in marks:
                    if not mark.done():
                        mark.set_result(None)
            for (_, fut), ok in zip(rows, results, strict=True):
                if not fut.done():
                    fut.set_result(ok)

    async def flush(self) -> None:
        while self._task is not None and not self._task.done():
            await self._task


class _GroupPrepare:
    """Runs :meth:`Intake.prepare` for the requests that arrive while a thread hop is under
    way together in the next hop: one hop (a submit, a wake-up of the event loop, future
    chaining) for many batches under load, and none waits for a hop to start. Each
    request gets its own result or exception."""

    #: Most requests, and most JWS characters, in one hop (a hop's latency stays short).
    MOST = 32
    MOST_CHARS = 512 * 1024

    def __init__(self, prepare: Callable[[Lookup, str, str], Prepared], executor: Any) -> None:
        self.prepare = prepare
        self.executor = executor
        self._queue: list[tuple[Lookup, str, str, asyncio.Future[Prepared]]] = []
        self._task: asyncio.Task[None] | None = None

    async def run(self, lookup: Lookup, sub: str, jws: str) -> Prepared:
        fut: asyncio.Future[Prepared] = asyncio.get_running_loop().create_future()
        self._queue.append((lookup, sub, jws, fut))
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())
        return await fut

    def _all(self, jobs: list[tuple[Lookup, str, str]]) -> list[Prepared | Exception]:
        out: list[Prepared | Exception] = []
        for lookup, sub, jws in jobs:
            try:
                out.append(self.prepare(lookup, sub, jws))
            except Exception as e:  # this request's answer; the others go on
                out.append(e)
        return out

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            n, chars = 0, 0
            for _, _, jws, _ in self._queue:
                if n == self.MOST or (n and chars + len(jws) > self.MOST_CHARS):
                    break
                n, chars = n + 1, chars + len(jws)
            group, self._queue = self._queue[:n], self._queue[n:]
            try:
                jobs = [(lookup, sub, jws) for lookup, sub, jws, _ in group]
                results = await loop.run_in_executor(self.executor, self._all, jobs)
            except asyncio.CancelledError:
                for *_, fut in group:
                    fut.cancel()
                raise
            except Exception as e:  # the executor is shut down: every waiter learns of it
                for *_, fut in group:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            for (*_, fut), r in zip(group, results, strict=True):
                if fut.done():
                    continue
                if isinstance(r, Exception):
                    fut.set_exception(r)
                else:
                    fut.set_result(r)


class Intake:
    def __init__(
        self,
        store: VitalsStore,
        ledger: Log,
        append: Append,
        clock: Callable[[], float],
        limits: Limits,
    ) -> None:
        self.store = store
        self.ledger = ledger
        self.append = append
        self.clock = clock
        self.limits = limits
        # Their own threads: CPU-heavy batches must not queue the commit behind them (or
        # behind the default executor's other users), and the writer is one thread anyway.
        self.cpu = ThreadPoolExecutor(2, thread_name_prefix="vitals-prepare")
        self.writer = _GroupWriter(store, ThreadPoolExecutor(1, thread_name_prefix="vitals-db"))
        self.preparer = _GroupPrepare(self.prepare, self.cpu)
        self._inflight: dict[tuple[str, str], asyncio.Future[Receipt]] = {}
        # Batches this process stored whose append then failed: no one here appends them
        # any more, so the retry may settle them at once, whatever their age.
        self._abandoned: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._sweeper: asyncio.Task[None] | None = None

    # -- the CPU part, run in a thread -----------------------------------------------
    def prepare(self, lookup: Lookup, sub: str, jws: str) -> Prepared:
        """Look the device up, verify its signature, validate every reading and seal the
        batch: all the blocking work of a request in one thread hop. Raises
        InvalidSignature, BadRequest, InvalidBatch (422), Forbidden or Gone."""
        device = lookup(sub)
        if device is None or device.revoked is not None:
            raise Forbidden("this device is not enrolled")
        patient = device.patient
        if device.role != "device" or patient is None:
            raise Forbidden("only an enrolled device registered to a patient posts vitals")
        # The device's credential outlives its patient's: a revoked patient has left, and
        # nothing more is written into their record on their behalf.
        owner = lookup(patient)
        if owner is None or owner.revoked is not None:
            raise Forbidden("the patient this device reports for has been revoked")
        header, payload = verify_jws(jws, HolderKey.from_jwk(device.jwk))
        now = self.clock()
        if header.get("cty") == FHIR_CTY:
            batch_id, raw, named = bundle_readings(payload)
            readings = check_readings(raw, now, self.limits, lambda i: f"/entry/{i}/resource")
            form = "fhir"
        elif "cty" in header:
            raise BadRequest(f"the payload is vitals+json, or a FHIR Bundle with cty {FHIR_CTY}")
        else:
            batch_id, raw, body = parse_native(payload)
            if body.get("device", device.id) != device.id:
                raise Forbidden("the batch names another device")
            named = body.get("patient")
            readings = check_readings(raw, now, self.limits)
            form = "native"
        if named is not None and named != patient:
            raise Forbidden("this device reports only for the patient it is registered to")
        batch = Batch(batch_id, readings, payload, jws, form)
        salt = new_salt()
        t = int(now)
        try:
            content = {"readings": list(readings), "jws": jws, "salt": salt.hex()}
            tag, nonce, ct = self.store.seal(patient, device.id, batch_id, payload, content, t)
        except Erased as e:
            raise Gone("this patient's data was erased; the device cannot post for them") from e
        event = stamped(
            self.clock,
            EventType.VITALS_BATCH,
            device.id,
            subject=patient,
            data={
                "device": device.id,
                "batch_id": batch_id,
                "form": form,
                "batch_hash": batch.batch_hash,
                "sig_hash": batch.sig_hash,
                "count": len(readings),
                "codes": batch.codes,
                # To the exact signed bytes. Opens only with the salt, which is sealed with
                # the readings: erasing the patient's key makes it unopenable forever.
                "commitment": commit(salt, payload),
            },
        )
        return Prepared(batch, patient, device.id, tag, nonce, ct, event, event.encode())

    # -- the request ---------------------------------------------------------------
    async def ingest(self, lookup: Lookup, sub: str, jws: str) -> tuple[Receipt, Prepared, bool]:
        """The batch's receipt, the batch, and whether it is new (False: a repeat, answered
        with the first receipt's entry). ``lookup`` finds the device's enrollment."""
        p = await self.preparer.run(lookup, sub, jws)
        key = (p.device, p.batch.batch_id)
        while (running := self._inflight.get(key)) is not None:
            # The same batch id in flight: wait for it, then answer as a repeat (or retry
            # the whole thing if it failed).
            await asyncio.wait([running])
        fut: asyncio.Future[Receipt] = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            receipt, fresh = await self._accept(p)
            fut.set_result(receipt)
            return receipt, p, fresh
        except BaseException:
            fut.cancel()  # waiters look at the store again
            raise
        finally:
            del self._inflight[key]

    async def _accept(self, p: Prepared) -> tuple[Receipt, bool]:
        row = (
            p.device,
            p.batch.batch_id,
            p.patient,
            int(self.clock()),
            p.tag,
            p.nonce,
            p.ciphertext,
            p.entry,
            self.ledger.size,
        )
        key = (p.device, p.batch.batch_id)
        if await self.writer.put(row):
            try:
                receipt = await self.append(p.entry)
            except BaseException:
                self._abandoned[key] = None
                if len(self._abandoned) > ABANDONED_MAX:
                    self._abandoned.popitem(last=False)
                raise
            self.writer.indexed(receipt.index, p.device, p.batch.batch_id)
            return receipt, True
        # Not inserted: a repeat of this batch id (or the patient was erased meanwhile).
        found = await asyncio.to_thread(self.store.find, p.device, p.batch.batch_id)
        if found is None:
            raise Gone("this patient's data was erased; the device cannot post for them")
        if found.tag != p.tag:
            raise Conflict(f"batch {p.batch.batch_id} was already received with other content")
        if found.ledger_index is None:
            # Stored, its event not known on the ledger: finish it now if no one else may be
            # appending it (our own failed append, or older than the grace).
            wait = found.received + RECONCILE_GRACE - int(self.clock())
            if key not in self._abandoned and wait > 0:
                raise InFlight(
                    f"batch {p.batch.batch_id} is being recorded; retry for its receipt",
                    headers={"Retry-After": str(min(wait, 5))},
                )
            await self._settle(int(self.clock()), only=key)
            found = await asyncio.to_thread(self.store.find, p.device, p.batch.batch_id)
            assert found is not None
            if found.ledger_index is None:  # another replica holds it right now
                raise InFlight(
                    f"batch {p.batch.batch_id} is being recorded; retry for its receipt",
                    headers={"Retry-After": "1"},
                )
        return await asyncio.to_thread(self.ledger.receipt_for, found.ledger_index), False

    async def record_erasure(self, patient: str, event: bytes) -> Receipt:
        """Append an erasure's event (already in its tombstone) and note its index."""
        receipt = await self.append(event)
        await asyncio.to_thread(self.store.set_erasure_index, patient, receipt.index)
        return receipt

    async def close(self) -> None:
        """Stop the sweep, commit what is queued, then stop the threads and close the
        store."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.writer.flush()
        self.cpu.shutdown()
        self.writer.executor.shutdown()
        await asyncio.to_thread(self.store.close)

    # -- recovery --------------------------------------------------------------------
    async def reconcile(self, grace: int | None = None) -> int:
        """Settle batches stored but not known on the ledger, and erasures not recorded,
        that are at least ``grace`` seconds old: find each batch's event on the ledger
        (from the size when it was stored) or append it. The default grace is none for an
        embedded store at start (no other process uses it, and nothing is in flight yet),
        else ``RECONCILE_GRACE``. Returns how many were settled."""
        if grace is None:
            grace = RECONCILE_GRACE if self.store.shared or self._sweeper else 0
        await self.writer.flush()
        cutoff = int(self.clock()) - grace
        n = await self._settle(cutoff)
        resolve = self._find_or_append()
        return n + await asyncio.to_thread(self.store.settle_erasures, cutoff, resolve)

    def _blocking_append(self) -> Callable[[bytes], int]:
        """``append`` for the store's thread (which holds a row lock meanwhile): the append
        itself runs on this loop; the thread waits for its index."""
        loop = asyncio.get_running_loop()

        async def append(event: bytes) -> Receipt:
            return await self.append(event)

        return lambda event: asyncio.run_coroutine_threadsafe(append(event), loop).result().index

    def _find_or_append(self) -> Callable[[bytes, int], int]:
        """For the store's thread: the event's index on the ledger, looked for from
        ``size_hint`` (the size before its append was tried), else appended now. An event
        whose append landed before a crash is found, never recorded twice."""
        append = self._blocking_append()

        def resolve(event: bytes, size_hint: int) -> int:
            index = self._find(event, size_hint)
            return append(event) if index is None else index

        return resolve

    async def _settle(self, cutoff: int, only: tuple[str, str] | None = None) -> int:
        resolve = self._find_or_append()
        n = await asyncio.to_thread(self.store.settle, cutoff, resolve, only)
        if only is not None:
            self._abandoned.pop(only, None)
        return n

    def start_sweeping(self, every: float = RECONCILE_GRACE) -> None:
        """Settle, every ``every`` seconds, what was left pending longer than the grace (a
        request whose append failed and was never retried, a replica that died)."""

        async def sweep() -> None:
            while True:
                await asyncio.sleep(every)
                try:
                    n = await self.reconcile(RECONCILE_GRACE)
                except Exception:  # the next round tries again; requests are unaffected
                    log.exception("settling pending vitals records failed")
                    continue
                if n:
                    log.warning("settled pending vitals records", extra={"fields": {"count": n}})

        self._sweeper = asyncio.ensure_future(sweep())

    def _find(self, event: bytes, start: int, chunk: int = 1024) -> int | None:
        size = self.ledger.size
        for lo in range(start, size, chunk):
            for i, entry in enumerate(self.ledger.store.read_entries(lo, min(lo + chunk, size))):
                if entry == event:
                    return lo + i
        return None


@dataclass(frozen=True, slots=True)
class Vitals:
    """What the vitals endpoints use: the intake pipeline and the live stream; and the
    checks a batch's device must pass first (the supply chain's: gateway/supply/devices.py),
    each raising a problem to refuse it."""

    intake: Intake
    streamer: Streamer
    checks: list[Callable[[str, Lookup], Awaitable[None]]] = field(default_factory=list)
