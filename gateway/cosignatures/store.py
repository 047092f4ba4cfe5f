"""Cosignatures the log has collected from its witnesses, in the ``cosignatures`` store
(``gateway.db``: cosignatures.db beside ledger.db by default, the shared PostgreSQL database
at scale), apart from the log so that storing a cosignature never waits on, or delays, a
group commit.

Per checkpoint size: the log-signed note that was submitted and each witness's
tlog-cosignature line; per witness: the largest size it has cosigned, where the next
submission starts from. Durable at commit (``synchronous=FULL`` on SQLite): a witness will
not cosign that checkpoint again (it has moved on), so a line, once answered, must survive
a crash.

With several replicas each one's :class:`gateway.witnessing.Witnessing` submits and keeps
lines here: a line once kept is never replaced or dropped by another replica's (only
:meth:`CosignatureStore.prune` forgets lines, of sizes below one already served), and a
witness's size only grows, whichever replica writes last.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ledger.cosigning import with_cosignatures

from ..db.dialect import reading, upsert, writing
from .tables import checkpoints, cosignatures, witnesses

__all__ = ["CosignatureStore"]

_c = cosignatures.c
_GROW = (  # an UPDATE's parameters may not be named after its columns
    witnesses.update()
    .where(witnesses.c.witness == sa.bindparam("w"), witnesses.c.size < sa.bindparam("s"))
    .values(size=sa.bindparam("s"))
)
_SIZE = sa.select(witnesses.c.size).where(witnesses.c.witness == sa.bindparam("witness"))
_NOTE = sa.select(checkpoints.c.note).where(checkpoints.c.size == sa.bindparam("size"))
_PRUNE_LINES = cosignatures.delete().where(_c.size < sa.bindparam("below"))
_PRUNE_NOTES = checkpoints.delete().where(checkpoints.c.size < sa.bindparam("below"))


class CosignatureStore:
    """Blocking: call from a thread, not the event loop. ``engine`` comes from
    ``Database.open("cosignatures")``; ``close`` leaves it open."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def add(self, witness: str, size: int, note: bytes, line: bytes, timestamp: int) -> None:
        """Keep ``witness``'s verified cosignature ``line`` on the log-signed ``note`` of
        ``size``, and that the witness has now cosigned ``size``. One transaction."""
        with writing(self._engine) as conn:
            upsert(conn, checkpoints, [{"size": size, "note": note}], ["size"], update=[])
            line_row = {"size": size, "witness": witness, "timestamp": timestamp, "line": line}
            # The first line kept for (size, witness) stays: a second answer for the same
            # size (another replica's submission) is as good, and replacing buys nothing.
            upsert(conn, cosignatures, [line_row], ["size", "witness"], update=[])
            upsert(conn, witnesses, [{"witness": witness, "size": size}], ["witness"], [])
            conn.execute(_GROW, {"w": witness, "s": size})  # never lowered by a slower replica

    def witnessed_size(self, witness: str) -> int:
        """The largest size ``witness`` has cosigned for this log; 0 if none."""
        with reading(self._engine) as conn:
            size = conn.execute(_SIZE, {"witness": witness}).scalar()
        return 0 if size is None else int(size)

    def newest(self, witnesses: Sequence[str], quorum: int) -> tuple[int, bytes] | None:
        """The largest size cosigned by at least ``quorum`` (>= 1) of ``witnesses``, and its
        note with every collected line of those witnesses appended; None if there is none."""
        if quorum < 1 or not witnesses:
            raise ValueError("a quorum of at least one configured witness is needed")
        ours = _c.witness.in_(list(witnesses))
        best = (
            sa.select(_c.size)
            .where(ours)
            .group_by(_c.size)
            .having(sa.func.count() >= quorum)
            .order_by(_c.size.desc())
            .limit(1)
        )
        with reading(self._engine) as conn:
            size = conn.execute(best).scalar()
            if size is None:
                return None
            note = conn.execute(_NOTE, {"size": size}).scalar()
            lines = conn.execute(
                sa.select(_c.line).where(_c.size == size, ours).order_by(_c.witness)
            ).scalars()
            found = [bytes(x) for x in lines]
        if note is None or len(found) < quorum:
            # Pruned between the reads (each sees the latest commit on PostgreSQL) by a
            # replica that has served a newer one: that one is the answer, next time.
            return None
        return int(size), with_cosignatures(bytes(note), found)

    def prune(self, below: int) -> None:
        """Forget checkpoints and lines of sizes below ``below`` (older than the one served:
        a receipt is proved against the newest witnessed checkpoint only)."""
        with writing(self._engine) as conn:
            conn.execute(_PRUNE_LINES, {"below": below})
            conn.execute(_PRUNE_NOTES, {"below": below})

    def close(self) -> None:
        """Nothing to release: the database layer disposes of the engine."""
