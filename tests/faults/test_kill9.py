"""SIGKILL in the middle of a key rotation, an audit index rebuild and a ledger export, at
every file-system step (tests/faults/crashpoint.py): whatever the step, the data directory
is left as it was before or as it is after, the gateway starts on it, and the log verifies.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.audit.index import EventIndex, rebuild_index
from gateway.auth.keys import KeyRing
from gateway.config import Config
from gateway.ledger_keys import init_log_key
from ledger.events import Event, EventType
from ledger.export import export_log
from ledger.log import Log
from ledger.store import SQLiteStore
from tests.conftest import ROOT
from tests.faults.conftest import ORIGIN, Gateway, remote, verify, world
from tests.gateway.idclient import admin, call
from tests.gateway.vitals.world import batch, hr

KILLED = -9


def crash(at: int | str, target: str, *args: str) -> int:
    """``telegate ARGS`` SIGKILLed at step ``at`` of ``target``; its return code (-9 when
    the kill came, 0 when it finished first)."""
    env = {**__import__("os").environ, "TELEGATE_LOG_ORIGIN": ORIGIN, "PYTHONPATH": str(ROOT)}
    r = subprocess.run(
        [sys.executable, "-m", "tests.faults.crashpoint", str(at), target, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert r.returncode in (KILLED, 0), r.stderr
    return r.returncode


def grow(data: Path, n: int) -> int:
    """Append ``n`` events to the (stopped) gateway's log directly; the new size."""
    config = Config(data_dir=data, log_origin=ORIGIN)
    signer, _ = init_log_key(config.key_dir, ORIGIN)
    log = Log(SQLiteStore(config.db_path), signer, max_wait=0)
    log.start()
    try:
        futures = [
            log.submit(Event.now(EventType.GATEWAY_STARTED, "gw:self", data={"n": i}).encode())
            for i in range(n)
        ]
        for f in futures:
            f.result(30)
        return log.size
    finally:
        log.close()


def _keys_consistent(signing: Path) -> str:
    """Every key keys.json names loads from its own file; the current kid."""
    ring = KeyRing.open(signing, 0)  # raises ConfigError on a torn ring
    kids = [e["kid"] for e in json.loads((signing / "keys.json").read_text())]
    assert kids == [k.kid for k in ring.keys]
    return ring.current.kid


async def test_key_rotation_killed_at_every_step(tmp_path: Path) -> None:
    data = tmp_path / "data"
    signing = data / "keys" / "signing"
    first = _keys_consistent(signing)  # the first key, as a first start makes it
    killed, left = 0, data
    # Walk K over every file-system step of a rotation (the lock file, reading the ring on
    # disk, the new pem, keys.json.tmp, the replace) until one runs to the end. Each K
    # starts from a copy of the same data dir: a rotation that got through its replace
    # leaves one more key to read, and so more steps, for the next.
    for at in range(1, 61):
        d = tmp_path / f"k{at}"
        shutil.copytree(data, d)
        rc = crash(at, "gateway.auth.keys:KeyRing.rotate", "keys", "rotate", "--data-dir", str(d))
        # Before (the first key current) or after (a new one): never none, never a mix.
        kid = _keys_consistent(d / "keys" / "signing")
        if rc != KILLED:
            assert rc == 0 and kid != first, (at, rc)  # the rotation that finished
            break
        killed += 1
        left = d
    else:
        raise AssertionError("a rotation took more than 60 file-system steps")
    assert killed >= 3
    data, signing = left, left / "keys" / "signing"  # what the last kill left
    # The gateway starts on what the kills left, signs with the current key, and a rotation
    # killed while it runs leaves it serving.
    gw = Gateway(data, tmp_path)
    try:
        async with remote(gw) as r:
            h, token = await admin(r, data)  # type: ignore[arg-type]
            assert (await call(r, "GET", "/v1/me", h, token)).status == 200  # type: ignore[arg-type]
            crash(5, "gateway.auth.keys:KeyRing.rotate", "keys", "rotate", "--data-dir", str(data))
            gw.kill()
            gw.start()
            jwks = await (await r.get("/.well-known/jwks.json")).json()
            assert _keys_consistent(signing) in {k["kid"] for k in jwks["keys"]}
            assert (await call(r, "GET", "/v1/me", h, token)).status == 200  # type: ignore[arg-type]
        gw.verify()
    finally:
        gw.stop()


def _exported(out: Path) -> int | None:
    cp = out / "checkpoint"
    return int(cp.read_text().splitlines()[1]) if cp.exists() else None


def test_export_killed_at_every_step(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "export"
    config = Config(data_dir=data, log_origin=ORIGIN)
    first = grow(data, 300)
    store = SQLiteStore(config.db_path, writer=False)
    try:
        export_log(store, out)  # what `telegate ledger export` does, unkilled
    finally:
        store.close()
    (out / "vkey").write_text(init_log_key(config.key_dir, ORIGIN)[0].vkey + "\n")
    second = grow(data, 300)
    killed = 0
    # Steps (two each): the tiles and bundles (tmp file, replace), the checkpoint last.
    for at in (1, 8, 21):
        args = ("ledger", "export", str(out), "--data-dir", str(data))
        killed += crash(at, "ledger.export:export_log", *args) == KILLED
        # The previous export, whole, or the new one: a reader never sees a mix.
        assert _exported(out) == first
        verify(out)
    assert killed == 3
    crash(0, "ledger.export:export_log", "ledger", "export", str(out), "--data-dir", str(data))
    assert _exported(out) == second
    verify(out)


def test_first_export_killed_right_after_its_checkpoint(tmp_path: Path) -> None:
    """Killed as the export's last file lands: the directory verifies on its own (its vkey
    was written before the checkpoint, not after)."""
    data, out = tmp_path / "data", tmp_path / "export"
    size = grow(data, 10)
    args = ("ledger", "export", str(out), "--data-dir", str(data))
    assert crash("after", "ledger.export:export_log", *args) == KILLED
    assert _exported(out) == size
    verify(out)


def test_reindex_killed_at_every_step(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = Config(data_dir=data, log_origin=ORIGIN)
    index = data / "audit-index.db"
    gw = Gateway(data, tmp_path)  # makes and fills the index as a gateway does
    gw.stop()
    size = grow(data, 400)
    killed = 0
    # Steps: the index's lock (1-2), unlink the rebuild's leftovers (3-8), then the old
    # index's -wal and -shm (9-12) and the replace of the old index by the new (13-14).
    for at in (6, 13, 14):
        rc = crash(
            at, "gateway.audit.index:rebuild_index", "ledger", "reindex", "--data-dir", str(data)
        )
        killed += rc == KILLED
        # What the kill left is a prefix of the log: it catches up, and a rebuild finds
        # nothing it could have hidden.
        ix = EventIndex(index)
        try:
            assert ix.size() <= size
        finally:
            ix.close()
        store = SQLiteStore(config.db_path)
        try:
            assert rebuild_index(store, index) == (size, [])
        finally:
            store.close()
    assert killed == 3
    gw.start()
    try:
        gw.verify()
    finally:
        gw.stop()


async def _erase_killed(tmp_path: Path, crash_at: tuple[str, str]) -> list[dict[str, Any]]:
    """A patient's vitals erased by a gateway SIGKILLed at ``crash_at``; after a restart,
    the ``patient.erased`` events on the log (the restarted gateway must also refuse a
    second erasure and serve no readings)."""
    data = tmp_path / "data"
    gw = Gateway(data, tmp_path)
    try:
        async with remote(gw) as r:
            w = await world(r, gw)
            for n in range(2):
                assert (await w.send(batch([hr(70 + n, time.time() - 1)]))).status == 201
            gw.stop()
            gw.start(crash=crash_at)
            path = f"/v1/patients/{w.pat.sub}/erase"
            body = {"reason": "patient_request"}
            with pytest.raises(aiohttp.ClientError):
                await call(r, "POST", path, w.adm, w.adm_t, json=body)  # type: ignore[arg-type]
            assert gw.proc is not None and gw.proc.wait(10) == KILLED
            gw.start()  # the vitals intake settles what the kill left half-done
            again = await call(r, "POST", path, w.adm, w.adm_t, json=body)  # type: ignore[arg-type]
            assert again.status == 409, await again.text()  # erased before the kill
            read = await w.read(w.pat, w.pat_t)
            assert read.status in (200, 410), await read.text()
            if read.status == 200:
                assert (await read.json())["readings"] == []
            erased = await w.events("patient.erased")
        gw.verify()
        return erased
    finally:
        gw.stop()


async def test_erasure_killed_between_the_store_and_the_ledger(tmp_path: Path) -> None:
    erased = await _erase_killed(tmp_path, ("after", "gateway.vitals.store:VitalsStore.erase"))
    assert len(erased) == 1  # appended on restart, from the tombstone


async def test_erasure_killed_after_the_ledger_is_recorded_once(tmp_path: Path) -> None:
    at = ("before", "gateway.vitals.store:VitalsStore.set_erasure_index")
    assert len(await _erase_killed(tmp_path, at)) == 1
