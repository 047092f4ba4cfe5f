"""Child process for tests/ledger/test_crash.py (run as a script, never imported by pytest).

Modes (the signer key comes from the ``CRASH_SKEY`` environment variable):

``load DB ROUND TASKS``
    Open the log as the writer and append from TASKS concurrent asyncio tasks, forever.
    After each receipt, write one line ``{"payload": ..., "receipt": ...}`` to stdout with a
    single ``write(2)``, so every complete line names an entry the log acknowledged. The
    parent SIGKILLs the process at a random moment.

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
from ledger.store import SQLiteStore

TIMEOUT = float(os.environ.get("CRASH_CHILD_TIMEOUT", "60"))


def _emit(line: str) -> None:
    data = (line + "\n").encode()
    while data:  # lines are well under PIPE_BUF, so this is one atomic write in practice
        n = os.write(1, data)
        data = data[n:]


async def _appender(log: Log, round_no: int, task: int, stop_at: float) -> None:
    seq = 0
    while time.monotonic() < stop_at:
        payload = f"round={round_no} task={task} seq={seq}"
        r = await log.append(payload.encode())
        _emit(json.dumps({"payload": payload, "receipt": r.to_json()}))
        seq += 1


async def _load(db: str, round_no: int, tasks: int, signer: Signer) -> None:
    log = Log(SQLiteStore(db), signer, max_batch=256)
    log.start()
    stop_at = time.monotonic() + TIMEOUT
    try:
        await asyncio.gather(*(_appender(log, round_no, t, stop_at) for t in range(tasks)))
    finally:
        log.close()


def main(argv: list[str]) -> int:
    signer = Signer.from_skey(os.environ["CRASH_SKEY"])
    mode, db = argv[0], argv[1]
    if mode == "load":
        asyncio.run(_load(db, int(argv[2]), int(argv[3]), signer))
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
