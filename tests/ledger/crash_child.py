"""Child process for tests/ledger/test_crash.py (run as a script, never imported by pytest).

Modes (the signer key comes from the ``CRASH_SKEY`` environment variable). DB is a SQLite
path, or a PostgreSQL conninfo (``postgresql://...`` or ``key=value ...``) for a shared log.

``load DB ROUND TASKS``
    Open the log as a writer and append from TASKS concurrent asyncio tasks, forever.
    After each receipt, write one line ``{"payload": ..., "receipt": ...}`` to stdout with a
    single ``write(2)``, so every complete line names an entry the log acknowledged. The
    parent SIGKILLs the process at a random moment.

``append DB TAG TASKS COUNT``
    Open the log, print ``ready``, wait for a line on stdin, then append COUNT entries
    (``TAG-<n>``) from TASKS tasks, printing receipt lines as ``load`` does, and exit.

``hold DB``
    Open the log as the writer, append one entry, print ``held`` and sleep (holding the lock).

``probe DB``
    Try to open the store as the writer; print ``locked`` (StoreLocked) or ``opened SIZE``.

Every mode gives up after ``CRASH_CHILD_TIMEOUT`` seconds (default 60) so that an orphaned
child never holds the writer lock for long.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

from ledger.errors import StoreLocked
from ledger.log import Log
from ledger.note import Signer
from ledger.pgstore import PGStore
from ledger.store import LogStore, SQLiteStore

TIMEOUT = float(os.environ.get("CRASH_CHILD_TIMEOUT", "60"))


def _emit(line: str) -> None:
    data = (line + "\n").encode()
    while data:  # lines are well under PIPE_BUF, so this is one atomic write in practice
        n = os.write(1, data)
        data = data[n:]


def _open(db: str) -> LogStore:
    if db.startswith("postgres") or "=" in db:
        return PGStore(db)
    return SQLiteStore(db)


async def _appender(log: Log, prefix: str, task: int, stop_at: float, count: int) -> None:
    seq = 0
    while time.monotonic() < stop_at and seq < count:
        payload = f"{prefix} task={task} seq={seq}"
        r = await log.append(payload.encode())
        _emit(json.dumps({"payload": payload, "receipt": r.to_json()}))
        seq += 1


async def _load(db: str, prefix: str, tasks: int, signer: Signer, count: int) -> None:
    log = Log(_open(db), signer, max_batch=256)
    log.start()
    stop_at = time.monotonic() + TIMEOUT
    if count < 2**62:
        _emit("ready")
        await asyncio.to_thread(sys.stdin.readline)
    try:
        per_task = [count // tasks + (t < count % tasks) for t in range(tasks)]
        await asyncio.gather(
            *(_appender(log, prefix, t, stop_at, per_task[t]) for t in range(tasks))
        )
    finally:
        log.close()


def main(argv: list[str]) -> int:
    signer = Signer.from_skey(os.environ["CRASH_SKEY"])
    mode, db = argv[0], argv[1]
    if mode == "load":
        asyncio.run(_load(db, f"round={argv[2]}", int(argv[3]), signer, 2**62))
    elif mode == "append":
        asyncio.run(_load(db, argv[2], int(argv[3]), signer, int(argv[4])))
    elif mode == "hold":
        log = Log(SQLiteStore(db), signer, max_batch=256)
        log.start()
        log.append_sync(b"held by pid %d" % os.getpid(), timeout=30)
        _emit("held")
        time.sleep(TIMEOUT)
        log.close()
    elif mode == "probe":
        try:
            store = SQLiteStore(db)
        except StoreLocked:
            _emit("locked")
        else:
            _emit(f"opened {store.size()}")
            store.close()
    else:
        print(f"unknown mode {mode!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
