"""Evaluating a program for a patient and period: aggregates from the patient's decrypted
vitals (the vitals store's own read path), the rule, and a ledger event carrying the
program id, the period, a salted commitment to the aggregates and the result, never the
readings nor the aggregates.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import rfc8785

from ledger.events import Event, EventType, commit, new_salt
from ledger.log import Receipt

from ..clock import stamped
from ..config import VITALS_FUTURE_SKEW_CAP, VITALS_MAX_AGE_CAP
from ..consent.guard import INCENTIVES, program_grantee
from ..consent.store import ConsentStore
from ..errors import Conflict, GatewayError, NotFound, Unavailable
from ..vitals.intake import Gone
from ..vitals.store import Erased, VitalsStore
from .aggregates import DAY, aggregate
from .program import Program
from .store import Evaluation, IncentiveStore, StoredProgram

__all__ = ["Evaluator", "NotEnrolled", "aggregates_json", "commitment"]

PAGE = 500
#: What one sweep evaluates at most, and the programs it looks at.
SWEEP_MAX = 1000
SWEEP_PROGRAMS = 500
SWEEPER = "gw:self"
RETRY = {"Retry-After": "1"}
#: Seconds after which an evaluation reserved and never appended is taken for abandoned.
RESERVATION_TIMEOUT = 120
Append = Callable[[Event], Awaitable[Receipt]]
OnPass = Callable[[Evaluation, StoredProgram], Awaitable[object]]
log = logging.getLogger("telegate.incentives")


class InProgress(Unavailable):
    """Another evaluator (a replica, the sweep) is evaluating that period now."""

    slug = "evaluation-in-progress"
    title = "That period is being evaluated"


class NotEnrolled(GatewayError):
    """The patient has no live ``incentives`` consent for this program."""

    status = 403
    slug = "not-enrolled"
    title = "Not enrolled in this program"


def aggregates_json(aggregates: dict[str, Any]) -> bytes:
    """The aggregates' canonical bytes (RFC 8785): what the commitment covers."""
    out: bytes = rfc8785.dumps(aggregates)
    return out


def commitment(salt: bytes, aggregates: dict[str, Any]) -> str:
    """``hex(HMAC-SHA256(salt, canonical aggregates))`` (ledger.events.commit)."""
    return commit(salt, aggregates_json(aggregates))


class Evaluator:
    """Evaluations for the HTTP layer and the CLI. Blocking store calls run in threads."""

    def __init__(
        self,
        store: IncentiveStore,
        consents: ConsentStore,
        vitals: VitalsStore,
        append: Append,
        clock: Callable[[], float],
        written: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """``written``: waits until the batches this process acknowledged are readable
        (their ledger indexes recorded: ``Intake.writer.indexes_written``); the vitals
        store reads only batches known to be on the ledger."""
        self.store = store
        self.written = written
        self.consents = consents
        self.vitals = vitals
        self.append = append
        self.clock = clock
        # One evaluation at a time per patient and program in this process: a second
        # request for the same period waits and gets the first one's evaluation.
        self._locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    async def program(self, pid: str) -> StoredProgram:
        """The published program ``pid``. Raises NotFound."""
        found = await asyncio.to_thread(self.store.program, pid) if len(pid) == 64 else None
        if found is None:
            raise NotFound("no program with that id")
        return found

    async def enrolled(self, patient: str, program: str) -> str | None:
        """The id of the patient's live consent to ``program``, if any (read every time, so
        a revocation stops evaluation at once)."""
        now = int(self.clock())
        found = await asyncio.to_thread(
            self.consents.matching, patient, (program_grantee(program),)
        )
        for c in found:
            if c.active(now) and INCENTIVES in c.scopes:
                return c.id
        return None

    def _read(self, patient: str, lo: int, hi: int, upto: int | None) -> tuple[list[Any], int]:
        """Blocking: the patient's readings from batches that may hold times in
        ``[lo, hi)``, and the greatest batch sequence number read (or ``upto``)."""
        readings: list[Any] = []
        after, top = 0, 0
        rlo, rhi = lo - VITALS_FUTURE_SKEW_CAP, hi + VITALS_MAX_AGE_CAP
        while True:
            page = self.vitals.read(patient, rlo, rhi, after, PAGE)
            for meta, content in page:
                if upto is not None and meta.seq > upto:
                    return readings, upto
                readings.extend(content["readings"])
                top = meta.seq
            if len(page) < PAGE:
                return readings, top if upto is None else upto
            after = page[-1][0].seq

    async def aggregates(
        self, patient: str, program: Program, period: int, upto: int | None = None
    ) -> tuple[dict[str, Any], int]:
        """The aggregates of ``period`` (from batches up to sequence ``upto`` if given) and
        the last batch read. Raises Erased."""
        lo, hi = program.period_bounds(period)
        if self.written is not None:
            await self.written()  # read your writes, as GET /v1/patients/{id}/vitals
        readings, top = await asyncio.to_thread(self._read, patient, lo, hi, upto)
        codes = program.rule().codes
        return aggregate(readings, lo, program.period_days, codes), top

    async def evaluate(
        self, actor: str, patient: str, sp: StoredProgram, period: int
    ) -> Evaluation:
        """Evaluate a finished ``period`` for an enrolled patient, once: a second call gets
        the first evaluation. Raises NotEnrolled, Conflict (period not over), BadRequest
        (no such period), Gone (erased), RuleError."""
        p = sp.program
        _, hi = p.period_bounds(period)
        lock = self._locks.setdefault((patient, p.id), asyncio.Lock())
        async with lock:
            done = await asyncio.to_thread(self.store.evaluation, patient, p.id, period)
            now = int(self.clock())
            if done is not None:
                if done.ledger_index is not None:
                    return done
                # Reserved by an evaluator that may have stopped before its append.
                stale = await asyncio.to_thread(
                    self.store.drop_reserved_evaluation,
                    patient,
                    p.id,
                    period,
                    now - RESERVATION_TIMEOUT,
                )
                if not stale:
                    raise InProgress("that period is being evaluated; retry", headers=RETRY)
            if await self.enrolled(patient, p.id) is None:
                raise NotEnrolled("no live incentives consent from this patient for the program")
            if now < hi:
                raise Conflict("that period is not over yet")
            try:
                aggs, top = await self.aggregates(patient, p, period)
            except Erased:
                raise Gone("this patient's vitals were erased") from None
            result = p.rule().evaluate(aggs)
            points = (p.points if result else 0) if isinstance(result, bool) else result
            salt = new_salt()
            c = commitment(salt, aggs)
            e = Evaluation(patient, p.id, period, result, points, salt, c, top, now, None)
            # Reserved first: of two replicas evaluating one period at once, one appends.
            if not await asyncio.to_thread(self.store.add_evaluation, e):
                other = await asyncio.to_thread(self.store.evaluation, patient, p.id, period)
                if other is not None and other.ledger_index is not None:
                    return other
                raise InProgress("that period is being evaluated; retry", headers=RETRY)
            try:
                receipt = await self.append(
                    stamped(
                        self.clock,
                        EventType.INCENTIVE_EVALUATED,
                        actor,
                        subject=patient,
                        data={
                            "program": p.id,
                            "period": period,
                            "commitment": c,
                            "result": result,
                            "points": points,
                        },
                    )
                )
            except BaseException:
                await asyncio.to_thread(self.store.drop_reserved_evaluation, patient, p.id, period)
                raise
            await asyncio.to_thread(
                self.store.complete_evaluation, patient, p.id, period, receipt.index
            )
            return dataclasses.replace(e, ledger_index=receipt.index)

    async def due(self, limit: int = SWEEP_MAX) -> list[tuple[str, StoredProgram, int]]:
        """(patient, program, period) of finished periods not yet evaluated, for every live
        enrollment, at most ``limit``: what the sweep evaluates."""
        now = int(self.clock())
        out: list[tuple[str, StoredProgram, int]] = []
        for sp in await asyncio.to_thread(self.store.programs, None, SWEEP_PROGRAMS):
            p = sp.program
            finished = min(p.periods, max(0, (now - p.start_epoch) // (p.period_days * DAY)))
            if finished == 0:
                continue
            consents = await asyncio.to_thread(self.consents.naming, (program_grantee(p.id),))
            for c in consents:
                if not (c.active(now) and INCENTIVES in c.scopes):
                    continue
                done = {
                    e.period
                    for e in await asyncio.to_thread(self.store.evaluations, c.patient, p.id)
                }
                for k in range(finished):
                    if k not in done:
                        out.append((c.patient, sp, k))
                        if len(out) >= limit:
                            return out
        return out

    async def sweep(self, on_pass: OnPass | None = None) -> int:
        """Evaluate what ``due`` lists, as the gateway (``gw:self``); ``on_pass`` gets each
        passed evaluation (to issue its reward). Returns how many were evaluated. A period
        whose evaluation fails (an erased patient, a rule refused on it) is skipped."""
        n = 0
        for patient, sp, k in await self.due():
            try:
                e = await self.evaluate(SWEEPER, patient, sp, k)
            except GatewayError as err:
                log.info(
                    "incentive sweep skipped a period",
                    extra={"fields": {"program": sp.program.id, "period": k, "why": err.slug}},
                )
                continue
            n += 1
            if e.passed and on_pass is not None:
                await on_pass(e, sp)
        return n
