"""Programs, evaluations and reward credentials, in the ``incentives`` store
(``gateway.db``: incentives.db by default, the shared PostgreSQL database at scale).

All methods block: call them from a thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from ..db.dialect import reading, writing
from .program import Program
from .tables import evaluations, programs, rewards

__all__ = ["Evaluation", "IncentiveStore", "Reward", "StoredProgram"]


@dataclass(frozen=True, slots=True)
class StoredProgram:
    program: Program
    published: int
    ledger_index: int


@dataclass(frozen=True, slots=True)
class Evaluation:
    patient: str
    program: str
    period: int
    result: bool | int
    points: int
    salt: bytes
    commitment: str
    upto_seq: int
    evaluated: int
    #: None while reserved: its event is being appended (by this process or a replica).
    ledger_index: int | None

    @property
    def passed(self) -> bool:
        return bool(self.result)


@dataclass(frozen=True, slots=True)
class Reward:
    status_idx: int
    id: str
    patient: str
    program: str
    period: int
    credential: str
    issued: int
    revoked: int | None
    ledger_index: int | None


_p, _e, _r = programs.c, evaluations.c, rewards.c


def _evaluation(row: sa.Row[Any]) -> Evaluation:
    m = row._mapping
    result: bool | int = bool(m["result"]) if m["is_bool"] else int(m["result"])
    return Evaluation(
        m["patient"],
        m["program"],
        int(m["period"]),
        result,
        int(m["points"]),
        bytes(m["salt"]),
        m["commitment"],
        int(m["upto_seq"]),
        int(m["evaluated"]),
        None if m["ledger_index"] is None else int(m["ledger_index"]),
    )


def _reward(row: sa.Row[Any]) -> Reward:
    m = row._mapping
    return Reward(
        int(m["status_idx"]),
        m["id"],
        m["patient"],
        m["program"],
        int(m["period"]),
        m["credential"],
        int(m["issued"]),
        None if m["revoked"] is None else int(m["revoked"]),
        None if m["ledger_index"] is None else int(m["ledger_index"]),
    )


class IncentiveStore:
    """``engine`` comes from ``Database.open("incentives")``."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    # -- programs ---------------------------------------------------------------
    def add_program(self, p: Program, published: int, ledger_index: int) -> bool:
        """Store a published program; False if one with its id is there already."""
        try:
            with writing(self._engine) as conn:
                conn.execute(
                    programs.insert().values(
                        id=p.id,
                        canonical=p.canonical().decode(),
                        publisher=p.publisher,
                        published=published,
                        ledger_index=ledger_index,
                    )
                )
        except IntegrityError:
            return False
        return True

    def program(self, pid: str) -> StoredProgram | None:
        with reading(self._engine) as conn:
            row = conn.execute(sa.select(programs).where(_p.id == pid)).first()
        if row is None:
            return None
        return StoredProgram(
            Program.from_canonical(row.canonical), int(row.published), int(row.ledger_index)
        )

    def programs(self, publisher: str | None = None, limit: int = 500) -> list[StoredProgram]:
        q = sa.select(programs).order_by(_p.published, _p.id).limit(limit)
        if publisher is not None:
            q = q.where(_p.publisher == publisher)
        with reading(self._engine) as conn:
            rows = conn.execute(q).all()
        return [
            StoredProgram(
                Program.from_canonical(r.canonical), int(r.published), int(r.ledger_index)
            )
            for r in rows
        ]

    # -- evaluations ------------------------------------------------------------
    def add_evaluation(self, e: Evaluation) -> bool:
        """Store (or, with ``ledger_index`` None, reserve) an evaluation; False if that
        patient's period has one already (evaluated or reserved, by anyone)."""
        try:
            with writing(self._engine) as conn:
                conn.execute(
                    evaluations.insert().values(
                        patient=e.patient,
                        program=e.program,
                        period=e.period,
                        result=int(e.result),
                        is_bool=isinstance(e.result, bool),
                        points=e.points,
                        salt=e.salt,
                        commitment=e.commitment,
                        upto_seq=e.upto_seq,
                        evaluated=e.evaluated,
                        ledger_index=e.ledger_index,
                    )
                )
        except IntegrityError:
            return False
        return True

    def complete_evaluation(self, patient: str, program: str, period: int, index: int) -> None:
        with writing(self._engine) as conn:
            conn.execute(
                evaluations.update()
                .where(_e.patient == patient, _e.program == program, _e.period == period)
                .values(ledger_index=index)
            )

    def drop_reserved_evaluation(
        self, patient: str, program: str, period: int, before: int | None = None
    ) -> bool:
        """Delete a reservation (an evaluation never appended), only if made before
        ``before`` when given; True if there was one."""
        q = evaluations.delete().where(
            _e.patient == patient,
            _e.program == program,
            _e.period == period,
            _e.ledger_index.is_(None),
        )
        if before is not None:
            q = q.where(_e.evaluated < before)
        with writing(self._engine) as conn:
            return conn.execute(q).rowcount == 1

    def evaluation(self, patient: str, program: str, period: int) -> Evaluation | None:
        with reading(self._engine) as conn:
            row = conn.execute(
                sa.select(evaluations).where(
                    _e.patient == patient, _e.program == program, _e.period == period
                )
            ).first()
        return None if row is None else _evaluation(row)

    def evaluations(self, patient: str, program: str) -> list[Evaluation]:
        with reading(self._engine) as conn:
            rows = conn.execute(
                sa.select(evaluations)
                .where(_e.patient == patient, _e.program == program)
                .order_by(_e.period)
            ).all()
        return [_evaluation(r) for r in rows]

    # -- rewards ----------------------------------------------------------------
    def reserve_reward(self, rid: str, patient: str, program: str, period: int, now: int) -> int:
        """A row for a reward about to be signed; returns its status-list index. Raises
        IntegrityError if that period's reward exists."""
        with writing(self._engine) as conn:
            res = conn.execute(
                rewards.insert().values(
                    id=rid,
                    patient=patient,
                    program=program,
                    period=period,
                    credential="",
                    issued=now,
                )
            )
            key = res.inserted_primary_key
            assert key is not None
            return int(key[0])

    def complete_reward(self, rid: str, credential: str, ledger_index: int) -> None:
        with writing(self._engine) as conn:
            conn.execute(
                rewards.update()
                .where(_r.id == rid)
                .values(credential=credential, ledger_index=ledger_index)
            )

    def drop_stale_reservation(self, patient: str, program: str, period: int, before: int) -> bool:
        """Delete a reward row reserved before ``before`` and never completed (its issuer
        stopped between the reservation and the ledger append); True if there was one."""
        with writing(self._engine) as conn:
            cur = conn.execute(
                rewards.delete().where(
                    _r.patient == patient,
                    _r.program == program,
                    _r.period == period,
                    _r.ledger_index.is_(None),
                    _r.issued < before,
                )
            )
        return cur.rowcount == 1

    def drop_reward(self, rid: str) -> None:
        with writing(self._engine) as conn:
            conn.execute(rewards.delete().where(_r.id == rid, _r.ledger_index.is_(None)))

    def rewards(self, patient: str) -> list[Reward]:
        with reading(self._engine) as conn:
            rows = conn.execute(
                sa.select(rewards)
                .where(_r.patient == patient, _r.ledger_index.is_not(None))
                .order_by(_r.status_idx)
            ).all()
        return [_reward(r) for r in rows]

    def reward(self, rid: str) -> Reward | None:
        with reading(self._engine) as conn:
            row = conn.execute(sa.select(rewards).where(_r.id == rid)).first()
        return None if row is None else _reward(row)

    def revoke_reward(self, rid: str, now: int) -> bool:
        with writing(self._engine) as conn:
            cur = conn.execute(
                rewards.update()
                .where(_r.id == rid, _r.revoked.is_(None), _r.ledger_index.is_not(None))
                .values(revoked=now)
            )
        return cur.rowcount == 1

    def revoked_indexes(self) -> tuple[list[int], int]:
        """The status indexes of revoked rewards, and the greatest index handed out."""
        with reading(self._engine) as conn:
            revoked = list(
                conn.execute(sa.select(_r.status_idx).where(_r.revoked.is_not(None))).scalars()
            )
            top = conn.execute(sa.select(sa.func.max(_r.status_idx))).scalar()
        return [int(i) for i in revoked], int(top or 0)
