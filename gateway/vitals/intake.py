"""Accepting a device's batch: verify, validate, encrypt, store, commit to the ledger.

Order matters for "nothing lost": the sealed batch is stored first (pending), then its
``vitals.batch`` event is appended, and only the ledger's receipt answers the device. A
crash in between leaves a pending row that :meth:`Intake.reconcile` settles on the next
start (it finds the event on the ledger, or appends it), and a device that retries gets
the same receipt, never a second event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ledger.events import Event, EventType, commit, new_salt
from ledger.log import Log, Receipt

from ..auth.jwk import HolderKey
from ..auth.store import Subject
from ..auth.tokens import Forbidden
from ..clock import stamped
from ..errors import BadRequest, Conflict, GatewayError
from .batch import FHIR_CTY, Batch, Limits, check_readings, parse_native, verify_jws
from .fhir import bundle_readings
from .store import Erased, VitalsStore
from .stream import Streamer

__all__ = ["Gone", "Intake", "Prepared", "Vitals"]

Append = Callable[[Event | bytes], Awaitable[Receipt]]
Lookup = Callable[[str], Subject | None]


class Gone(GatewayError):
    status = 410
    slug = "erased"
    title = "This patient's data was erased"


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

    async def _run(self) -> None:
        while self._rows or self._done:
            rows, self._rows = self._rows, []
            done, self._done = self._done, []
            batch = [r for r, _ in rows]
            loop = asyncio.get_running_loop()
            try:
                results = await loop.run_in_executor(self.executor, self.store.commit, batch, done)
            except Exception as e:  # every waiter learns of the failure
                for _, fut in rows:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            for (_, fut), ok in zip(rows, results, strict=True):
                if not fut.done():
                    fut.set_result(ok)

    async def flush(self) -> None:
        while self._task is not None and not self._task.done():
            await self._task


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
        self._inflight: dict[tuple[str, str], asyncio.Future[Receipt]] = {}

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
        loop = asyncio.get_running_loop()
        p = await loop.run_in_executor(self.cpu, self.prepare, lookup, sub, jws)
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
        if await self.writer.put(row):
            receipt = await self.append(p.entry)
            self.writer.indexed(receipt.index, p.device, p.batch.batch_id)
            return receipt, True
        # Not inserted: a repeat of this batch id (or the patient was erased meanwhile).
        found = await asyncio.to_thread(self.store.find, p.device, p.batch.batch_id)
        if found is None:
            raise Gone("this patient's data was erased; the device cannot post for them")
        if found.tag != p.tag:
            raise Conflict(f"batch {p.batch.batch_id} was already received with other content")
        if found.ledger_index is None:
            # Stored, but its event was not appended (a failed append): finish it now.
            await self.reconcile()
            found = await asyncio.to_thread(self.store.find, p.device, p.batch.batch_id)
            assert found is not None and found.ledger_index is not None
        return await asyncio.to_thread(self.ledger.receipt_for, found.ledger_index), False

    async def record_erasure(self, patient: str, event: bytes) -> Receipt:
        """Append an erasure's event (already in its tombstone) and note its index."""
        receipt = await self.append(event)
        await asyncio.to_thread(self.store.set_erasure_index, patient, receipt.index)
        return receipt

    async def close(self) -> None:
        """Commit what is queued, then stop the threads and close the store."""
        await self.writer.flush()
        self.cpu.shutdown()
        self.writer.executor.shutdown()
        await asyncio.to_thread(self.store.close)

    # -- recovery --------------------------------------------------------------------
    async def reconcile(self) -> int:
        """Settle batches stored but not known on the ledger, and erasures not recorded:
        find each event on the ledger (from the size when it was stored) or append it.
        Returns how many were settled."""
        await self.writer.flush()
        pending = await asyncio.to_thread(self.store.pending)
        settled: list[tuple[int, str, str]] = []
        for device, batch_id, event, size_hint in pending:
            index = await asyncio.to_thread(self._find, event, size_hint)
            if index is None:
                index = (await self.append(event)).index
            settled.append((index, device, batch_id))
        if settled:
            await asyncio.to_thread(self.store.set_indexes, settled)
        erasures = await asyncio.to_thread(self.store.unrecorded_erasures)
        for patient, event in erasures:
            index = (await self.append(event)).index
            await asyncio.to_thread(self.store.set_erasure_index, patient, index)
        return len(settled) + len(erasures)

    def _find(self, event: bytes, start: int, chunk: int = 1024) -> int | None:
        size = self.ledger.size
        for lo in range(start, size, chunk):
            for i, entry in enumerate(self.ledger.store.read_entries(lo, min(lo + chunk, size))):
                if entry == event:
                    return lo + i
        return None


@dataclass(frozen=True, slots=True)
class Vitals:
    """What the vitals endpoints use: the intake pipeline and the live stream."""

    intake: Intake
    streamer: Streamer
