"""``telegate db copy``: move a stopped embedded deployment (SQLite files under the data dir)
into an empty PostgreSQL database, and check that it arrived whole.

What is copied: the ledger (every entry in order, every stored node, every signed checkpoint,
and the tree state, so the PostgreSQL log has the same size, root and newest checkpoint: the
log key does not change, so that checkpoint still verifies) and every store on the database
layer (``migrate.SCHEMAS``: each store's SQLite file, its tables reflected, so a store that
joins the layer is copied without a change here).

How a failure is kept visible: before anything else, a marker table (:data:`MARKER`) is
committed in the target. The schemas are then created as ``telegate db upgrade`` would, and
the ledger and every store's rows are written, counted and checked in ONE transaction that
also drops the marker. A copy that fails or is killed rolls that transaction back and leaves
the marker, which ``serve`` and the ``db`` subcommands refuse (:func:`check_finished`): the
target is never used half-migrated.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ledger.checkpoint import Checkpoint, open_checkpoint
from ledger.errors import LedgerError, StoreLocked
from ledger.merkle import leaf_hash
from ledger.note import Verifier, parse_note
from ledger.pgstore import COPY_SQL, PGStore, copy_rows
from ledger.store import Frontier, SQLiteStore, _node_id

from ..errors import ConfigError, GatewayError
from . import migrate
from .engine import postgres_engine, sqlite_engine
from .errors import reaching
from .url import check_url, redact

__all__ = ["MARKER", "CopyFailed", "CopyReport", "CopyUnfinished", "check_finished", "copy"]

#: The table that says "a copy into this database began and has not finished".
MARKER = "telegate_copy"
#: The ledger's own tables on PostgreSQL (``ledger/_pgschema.py``).
LEDGER_TABLES = ("ledger_schema", "ledger_nodes", "ledger_checkpoints", "ledger_tree")
#: Entries (and store rows) written per round trip.
BATCH = 5000
UNFINISHED = "the copy into this database did not finish: drop it and run `telegate db copy` again"


class CopyFailed(GatewayError):
    """The copy was refused before it began, or failed (the target is then marked)."""


class CopyUnfinished(GatewayError):
    """The database holds the marker of a copy that did not finish."""

    status = 503
    slug = "copy-unfinished"
    title = "Database copy did not finish"


@dataclass(slots=True)
class CopyReport:
    """What arrived: the ledger's size and root, and each store table's row count."""

    size: int = 0
    root: bytes = b""
    rows: dict[str, int] = field(default_factory=dict)


Progress = Callable[[int, int], None]


def check_finished(engine: Engine, where: str) -> None:
    """Raise CopyUnfinished if a ``db copy`` into this database began and did not finish;
    DatabaseUnavailable naming ``where`` (its password masked) if it cannot be reached."""
    with reaching(where), engine.connect() as conn:
        if sa.inspect(conn).has_table(MARKER):
            raise CopyUnfinished(UNFINISHED)


def copy(data_dir: Path, url: str, progress: Progress | None = None) -> CopyReport:
    """Copy the embedded deployment in ``data_dir`` into the empty PostgreSQL database at
    ``url``; returns what was copied, checked. Raises CopyFailed (refused: a running gateway,
    a non-empty target; or failed: the target is then marked unfinished), ConfigError for a
    URL that is not PostgreSQL, DatabaseUnavailable when the target cannot be reached."""
    try:
        check_url(url)
    except ConfigError as e:
        raise ConfigError("--to must be postgresql://user@host:port/database") from e
    ledger_path = data_dir / "ledger.db"
    if not ledger_path.exists():
        raise CopyFailed(f"no embedded deployment in {data_dir} (no ledger.db)")
    try:
        # Held to the end: the gateway cannot start on the data dir while it is copied.
        source = SQLiteStore(ledger_path)
    except StoreLocked as e:
        raise CopyFailed(
            f"a gateway is running on {data_dir}: stop it before copying its data"
        ) from e
    target = postgres_engine(url)
    try:
        _check_key(data_dir, source)
        with reaching(redact(url)):
            return _copy(data_dir, source, target, url, progress)
    finally:
        target.dispose()
        source.close()


def _check_key(data_dir: Path, source: SQLiteStore) -> None:
    """Refuse a log whose newest checkpoint the data dir's log key did not sign: a gateway
    on the copy could not open it (it signs with that key and checks the stored tree)."""
    vkey = data_dir / "keys" / "log.vkey"
    note = source.checkpoint()
    if note is None or not vkey.exists():
        return
    try:
        open_checkpoint(note, Verifier.from_vkey(vkey.read_text().strip()))
    except LedgerError as e:
        raise CopyFailed(f"the log's newest checkpoint does not verify with {vkey}: {e}") from e


def _copy(
    data_dir: Path, source: SQLiteStore, target: Engine, url: str, progress: Progress | None
) -> CopyReport:
    stores = {n: data_dir / f"{n}.db" for n in migrate.SCHEMAS}
    sources = {n: sqlite_engine(p) for n, p in stores.items() if p.exists()}
    try:
        # Bring each file to this release's schema first (adopting a pre-Alembic one), as
        # `serve` would: the tables then match the target's, column for column.
        for name, eng in sources.items():
            migrate.upgrade(eng, name)
        tables = {n: _reflect(e) for n, e in sources.items()}
        _claim(target, {t for ts in tables.values() for t in ts})
        try:
            for name in migrate.SCHEMAS:
                migrate.upgrade(target, name)
            PGStore(url).close()  # the ledger's schema, as a replica creates it
            with target.connect() as conn, conn.begin():
                report = _copy_ledger(conn, source, progress)
                for name, eng in sources.items():
                    report.rows.update(_copy_store(conn, eng, tables[name]))
                conn.execute(sa.text(f"DROP TABLE {MARKER}"))
        except (GatewayError, LedgerError) as e:
            # A refused migration, a ledger error, a lost connection, a check that failed.
            raise CopyFailed(f"{e}; {UNFINISHED}") from e
        except KeyboardInterrupt as e:
            # Closing the connection rolls the transaction back; the marker stays.
            raise CopyFailed(f"interrupted; {UNFINISHED}") from e
        except sa.exc.SQLAlchemyError as e:
            why = type(getattr(e, "orig", None) or e).__name__
            raise CopyFailed(f"the copy failed ({why}); {UNFINISHED}") from e
        return report
    finally:
        for eng in sources.values():
            eng.dispose()


def _reflect(engine: Engine) -> list[str]:
    """The store's tables in its SQLite file (not Alembic's version table)."""
    with engine.connect() as conn:
        return [t for t in sa.inspect(conn).get_table_names() if t != "alembic_version"]


def _claim(target: Engine, store_tables: set[str]) -> None:
    """Refuse a target holding any telegate table, then commit the marker. Creating the
    marker fails if another copy created it meanwhile, so two copies cannot both begin."""
    ours = {"alembic_version", MARKER, *LEDGER_TABLES, *store_tables}
    with target.connect() as conn:
        present = sorted(ours & set(sa.inspect(conn).get_table_names()))
    if present:
        raise CopyFailed(
            f"the target database is not empty (it has {', '.join(present)}): "
            "copy into a new, empty database"
        )
    try:
        with target.begin() as conn:
            conn.execute(
                sa.text(
                    f"CREATE TABLE {MARKER} (id smallint PRIMARY KEY CHECK (id = 0),"
                    " started bigint NOT NULL)"
                )
            )
            started = {"t": int(time.time())}
            conn.execute(sa.text(f"INSERT INTO {MARKER} VALUES (0, :t)"), started)  # noqa: S608
    except sa.exc.ProgrammingError as e:
        raise CopyFailed("another copy into the target database has begun") from e


class _Throttle:
    """Call ``progress`` at most once a second, and always for the last step."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self.progress is not None and (done == total or now - self.last >= 1.0):
            self.last = now
            self.progress(done, total)


def _checkpoints(path: Path) -> Iterator[tuple[int, bytes]]:
    """Every signed checkpoint of the SQLite log, by size."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        yield from ((int(s), bytes(n)) for s, n in db.execute("SELECT size, note FROM checkpoints"))
    finally:
        db.close()


def _copy_ledger(conn: Connection, source: SQLiteStore, progress: Progress | None) -> CopyReport:
    """Write the log as PGStore would have: leaves and nodes by COPY (``ledger_nodes``), the
    checkpoints, and the tree-state row (size, frontier, newest checkpoint), then check
    that the size and root are those of the SQLite log's newest signed checkpoint."""
    note = source.checkpoint()
    size = source.size()
    report = CopyReport()
    if note is None:
        return report
    want = Checkpoint.parse(parse_note(note).text)
    if want.size != size:
        raise CopyFailed(f"the source ledger holds {size} entries, its checkpoint {want.size}")
    raw = conn.connection.driver_connection
    assert raw is not None
    tree = Frontier()
    step = _Throttle(progress)
    step(0, size)
    with raw.cursor() as cur:
        for lo in range(0, size, BATCH):
            leaves = source.read_entries(lo, min(size, lo + BATCH))
            hashes = [leaf_hash(d) for d in leaves]
            new = tree.append(leaves, hashes)
            inner = [(_node_id(lvl, idx), h) for (lvl, idx), h in new.items() if lvl]
            with cur.copy(COPY_SQL) as cp:
                cp.write(copy_rows(lo, hashes, leaves, inner))
            step(tree.size, size)
        if tree.root() != want.root:
            raise CopyFailed("the copied log's root is not the source checkpoint's root")
        found = _checkpoints(source.path)
        while chunk := list(itertools.islice(found, BATCH)):
            cur.executemany("INSERT INTO ledger_checkpoints (size, note) VALUES (%s, %s)", chunk)
        cur.execute(
            "UPDATE ledger_tree SET size = %s, frontier = %s, note = %s WHERE id = 0",
            (tree.size, b"".join(h for _, _, h in tree.nodes), note),
        )
        # What a replica will read: the stored tree state and leaf count, not our variables.
        cur.execute(
            "SELECT t.size, t.frontier, t.note, (SELECT count(*) FROM ledger_nodes"
            " WHERE id < 281474976710656) FROM ledger_tree t"
        )
        row = cur.fetchone()
    assert row is not None
    stored = Frontier(int(row[0]), [row[1][i : i + 32] for i in range(0, len(row[1]), 32)])
    if (stored.size, row[3], stored.root(), bytes(row[2])) != (size, size, want.root, note):
        raise CopyFailed("the copied log's size, root or checkpoint differ from the source's")
    report.size, report.root = size, want.root
    return report


def _value(column: sa.Column[Any], value: Any) -> Any:
    """A SQLite value as the PostgreSQL column takes it: JSON columns hold JSON text on
    SQLite (``dialect.JSONColumn``) and ``jsonb`` there; booleans are 0/1 on SQLite."""
    if value is None:
        return None
    if isinstance(column.type, sa.JSON) and isinstance(value, str):
        return json.loads(value)
    if isinstance(column.type, sa.Boolean) and isinstance(value, int):
        return bool(value)
    return value


def _copy_store(conn: Connection, source: Engine, names: list[str]) -> dict[str, int]:
    """Copy a store's tables (parents before children), count them on both sides, and move
    any serial sequence past the copied ids. Returns each table's row count."""
    meta = sa.MetaData()
    meta.reflect(conn, only=names)
    counts: dict[str, int] = {}
    with source.connect() as src:
        for table in meta.sorted_tables:
            if table.name not in names:
                continue
            cols = list(table.columns)
            stmt = sa.table(table.name, *(sa.column(c.name) for c in cols)).select()
            result = src.execution_options(yield_per=BATCH).execute(stmt)
            try:
                # The target held no telegate table before its migrations ran, so any row
                # here is one they seeded (a counter, say); the source went through the same
                # migrations and holds that row as the store has since changed it.
                conn.execute(table.delete())
                for part in result.partitions(BATCH):
                    rows = [
                        {c.name: _value(c, v) for c, v in zip(cols, r, strict=True)} for r in part
                    ]
                    conn.execute(table.insert(), rows)
            except sa.exc.DBAPIError as e:
                # The driver's message may quote the row (PHI): name the table and the class.
                raise CopyFailed(
                    f"the copy failed at {table.name} ({type(e.orig).__name__})"
                ) from e
            have = src.execute(sa.select(sa.func.count()).select_from(sa.table(table.name)))
            got = conn.execute(sa.select(sa.func.count()).select_from(table))
            n, m = have.scalar_one(), got.scalar_one()
            if n != m:
                raise CopyFailed(f"{table.name}: {n} rows in the source, {m} copied")
            counts[table.name] = m
            for c in table.primary_key.columns:
                _advance_sequence(conn, table, c, _sqlite_sequence(src, table.name))
    return counts


def _sqlite_sequence(src: Connection, table: str) -> int:
    """The highest id SQLite's AUTOINCREMENT handed out for ``table`` (0: none), which may
    be above every id left in it (the newest rows were deleted)."""
    if not sa.inspect(src).has_table("sqlite_sequence"):
        return 0
    row = src.execute(
        sa.text("SELECT seq FROM sqlite_sequence WHERE name = :t"), {"t": table}
    ).first()
    return int(row[0]) if row is not None else 0


def _advance_sequence(
    conn: Connection, table: sa.Table, column: sa.Column[Any], handed_out: int
) -> None:
    """An id the source handed out must not be handed out again by the target: a store
    whose AUTOINCREMENT key is a read cursor (vitals) relies on it never being reused."""
    seq = conn.execute(
        sa.select(sa.func.pg_get_serial_sequence(table.name, column.name))
    ).scalar_one()
    if seq is not None:
        top = max(conn.execute(sa.select(sa.func.max(column))).scalar_one() or 0, handed_out)
        if top:
            conn.execute(sa.select(sa.func.setval(seq, top)))
