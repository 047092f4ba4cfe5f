"""Heartbeats of the replicas serving one database: each replica keeps a row (``id``,
``started``, ``seen``, ``redis``) and refreshes ``seen`` every few seconds; a row not seen
for a few intervals is a replica that died (``kill -9``) and is ignored, then swept."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ..db.dialect import reading, upsert, writing
from .tables import replicas

__all__ = ["Replica", "ReplicaStore"]


@dataclass(frozen=True, slots=True)
class Replica:
    id: str
    started: int
    seen: int
    redis: bool


class ReplicaStore:
    """Blocking (SQLAlchemy): call from a thread."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def beat(self, replica: Replica, now: int) -> None:
        """Insert ``replica``'s row, or mark it seen at ``now``."""
        row = {"id": replica.id, "started": replica.started, "seen": now, "redis": replica.redis}
        with writing(self.engine) as conn:
            upsert(conn, replicas, [row], ["id"], ["seen"])

    def others(self, me: str, fresh_since: int) -> list[Replica]:
        """The other replicas seen at ``fresh_since`` or later."""
        q = sa.select(replicas).where(replicas.c.id != me, replicas.c.seen >= fresh_since)
        with reading(self.engine) as conn:
            return [Replica(r.id, r.started, r.seen, bool(r.redis)) for r in conn.execute(q)]

    def remove(self, me: str) -> None:
        with writing(self.engine) as conn:
            conn.execute(sa.delete(replicas).where(replicas.c.id == me))

    def sweep(self, stale_before: int) -> int:
        """Forget replicas not seen since ``stale_before``; how many."""
        with writing(self.engine) as conn:
            return conn.execute(sa.delete(replicas).where(replicas.c.seen < stale_before)).rowcount

    def close(self) -> None:
        """The engine belongs to the Database that opened it: nothing to release here."""
