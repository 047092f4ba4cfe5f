"""The witness's durable state: per log, the latest cosigned size, root, time and note, in
the ``witness`` store (``gateway.db``): ``state.db`` in the witness's data dir by default,
its PostgreSQL database (``database_url``) when several witness processes share one state.

tlog-witness requires the new checkpoint to be persisted before the cosignature is
returned, so a commit must survive power loss: ``synchronous=FULL`` on SQLite,
``synchronous_commit = on`` on PostgreSQL (set for the transaction, whatever the server's
default). Updates are a compare-and-swap on the (size, root) the caller checked against,
with the row locked from read to write (``FOR UPDATE``; ``BEGIN IMMEDIATE`` on SQLite), so
neither two requests nor two processes sharing the state can both advance from one state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ledger.witness import LogState, StaleOldSize

from ..db.database import Database
from ..db.dialect import for_update, reading, upsert, writing
from .config import WitnessConfig
from .tables import forks, logs

__all__ = ["WitnessDatabase", "WitnessStore"]

_GET = sa.select(logs.c.size, logs.c.root, logs.c.timestamp, logs.c.note).where(
    logs.c.origin == sa.bindparam("origin")
)
_LOCK = for_update(_GET)
_MOVE = (  # an UPDATE's parameters may not be named after its columns
    logs.update()
    .where(logs.c.origin == sa.bindparam("o"))
    .values(
        size=sa.bindparam("s"),
        root=sa.bindparam("r"),
        timestamp=sa.bindparam("t"),
        note=sa.bindparam("n"),
    )
)
_FORKS = (
    sa.select(forks.c.note)
    .where(forks.c.origin == sa.bindparam("origin"))
    .order_by(forks.c.seen, forks.c.size)
)


class WitnessDatabase(Database):
    """The witness's own database: its config's ``database_url``, or else the file
    ``state.db`` in its data dir (the name the witness has always given it, so an existing
    one is adopted)."""

    def __init__(self, config: WitnessConfig) -> None:
        super().__init__(config.data_dir, config.database_url)
        self._file = config.db_path

    def path(self, name: str) -> Path:
        return self._file if name == "witness" else super().path(name)

    def stores(self) -> list[str]:
        # Its own file holds its one store; a shared database holds every store.
        return super().stores() if not self.embedded else ["witness"]

    def open(self, name: str) -> Engine:
        if self.embedded:
            self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return super().open(name)


class WitnessStore:
    """Blocking: call from a thread, not the event loop. ``engine`` comes from
    ``WitnessDatabase.open("witness")``; ``close`` leaves it open."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def latest(self, origin: str) -> LogState:
        """The latest cosigned state of ``origin``; ``LogState()`` if never cosigned."""
        with reading(self._engine) as conn:
            row = conn.execute(_GET, {"origin": origin}).first()
        return _state(row)

    def checkpoint(self, origin: str) -> bytes | None:
        """The latest cosigned checkpoint with the log's and the witness's signatures."""
        with reading(self._engine) as conn:
            row = conn.execute(_GET, {"origin": origin}).first()
        return None if row is None else bytes(row.note)

    def advance(self, origin: str, expected: LogState, new: LogState, note: bytes) -> None:
        """Store ``new`` if the stored state still has ``expected``'s size and root.

        Raises StaleOldSize (409) with the stored size if another request got there first.
        The timestamp kept is the larger of the two, so it never goes backwards.
        """
        with writing(self._engine) as conn:
            if conn.dialect.name == "postgresql":
                # tlog-witness: "persisted" before the cosignature is returned.
                conn.exec_driver_sql("SET LOCAL synchronous_commit = on")
            row = conn.execute(_LOCK, {"origin": origin}).first()
            cur = _state(row)
            if (cur.size, cur.root) != (expected.size, expected.root):
                raise StaleOldSize(cur.size)
            if row is not None:
                ts = max(cur.timestamp, new.timestamp)
                conn.execute(_MOVE, {"o": origin, "s": new.size, "r": new.root, "t": ts, "n": note})
                return
            # The first checkpoint of a log locks no row: two racing ones meet at the
            # primary key, and the one that finds another's row lost (on PostgreSQL this
            # statement waits for the other's commit, then sees its row).
            values = {"origin": origin, "size": new.size, "root": new.root, "note": note}
            upsert(conn, logs, [values | {"timestamp": new.timestamp}], ["origin"], update=[])
            stored = conn.execute(_GET, {"origin": origin}).one()
            if bytes(stored.note) != note:
                raise StaleOldSize(int(stored.size))

    def record_fork(self, origin: str, size: int, root: bytes, seen: int, note: bytes) -> None:
        """Keep a refused checkpoint that forks the log (the first sighting of each root)."""
        row = {"origin": origin, "size": size, "root": root, "seen": seen, "note": note}
        with writing(self._engine) as conn:
            upsert(conn, forks, [row], ["origin", "size", "root"], update=[])

    def forks(self, origin: str) -> list[bytes]:
        """Signed checkpoints of ``origin`` refused as forks, oldest first."""
        with reading(self._engine) as conn:
            rows = conn.execute(_FORKS, {"origin": origin}).all()
        return [bytes(r.note) for r in rows]

    def close(self) -> None:
        """Nothing to release: the database layer disposes of the engine."""


def _state(row: sa.Row[Any, Any, Any, Any] | None) -> LogState:
    if row is None:
        return LogState()
    return LogState(int(row.size), bytes(row.root), int(row.timestamp))
