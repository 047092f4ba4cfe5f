"""Crash durability of the ledger with real processes: SIGKILL a writer under load, reopen.

A child process (``crash_child.py``) appends from many concurrent tasks and prints every
receipt it gets. The parent SIGKILLs it at a random moment, then checks that everything the
child was told is durable really is: each acknowledged entry sits at its index, its receipt
verifies and is consistent with the reopened log's checkpoint, the whole log verifies
offline, and the log keeps accepting appends.

Set ``CRASH_SEED`` to replay a run's random choices (kill points depend on timing too, so a
replay explores the same schedule of rounds, not byte-identical ones).
"""

from __future__ import annotations

import json
import os
import random
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ledger.checkpoint import open_checkpoint
from ledger.errors import StoreLocked
from ledger.export import export_log
from ledger.log import Log, Receipt
from ledger.merkle import leaf_hash, verify_inclusion
from ledger.note import Signer
from ledger.store import SQLiteStore
from ledger.verify import DirSource, verify_checkpoint_consistency, verify_log

pytestmark = pytest.mark.slow

CHILD = Path(__file__).with_name("crash_child.py")
ORIGIN = "crash.example/log"
ROUNDS = 24
TASKS = 50
EXPORT_EVERY = 6
# Generous guard against a hung child; not a statement about speed.
STALL_LIMIT = 60.0


def _seed() -> int:
    env = os.environ.get("CRASH_SEED")
    return int(env) if env else random.SystemRandom().randrange(2**32)


def _spawn(args: list[str], signer: Signer, cwd: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, CRASH_SKEY=signer.skey, CRASH_CHILD_TIMEOUT="90")
    return subprocess.Popen(
        [sys.executable, str(CHILD), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
    )


def _kill_and_reap(proc: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
    """SIGKILL the child if it still runs, reap it and return its remaining stdout, stderr."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:  # cannot happen after SIGKILL; never leak the child
        proc.kill()
        out, err = proc.communicate()
    return out or b"", err or b""


def _cleanup(proc: subprocess.Popen[bytes]) -> None:
    if proc.returncode is None or not all(
        p is None or p.closed for p in (proc.stdout, proc.stderr)
    ):
        _kill_and_reap(proc)


def _describe(proc: subprocess.Popen[bytes], err: bytes) -> str:
    return f"child exit status {proc.returncode}; stderr:\n{err.decode(errors='replace')}"


@dataclass
class Ack:
    payload: bytes
    receipt: Receipt


@dataclass
class Plan:
    """When to kill: ``early`` seconds after spawn, or after ``target`` receipts or ``delay``
    seconds past the first receipt, whichever comes first."""

    early: float | None
    target: int
    delay: float


def _plan(rng: random.Random) -> Plan:
    if rng.random() < 0.15:  # sometimes kill while the child is still starting up
        return Plan(rng.uniform(0.0, 0.3), 0, 0.0)
    return Plan(None, rng.randint(1, 2500), rng.uniform(0.05, 0.6))


def _run_round(
    db: Path, signer: Signer, round_no: int, plan: Plan, where: str, cwd: Path
) -> list[Ack]:
    """Run one child under load, SIGKILL it as ``plan`` says, return its complete lines."""
    proc = _spawn(["load", str(db), str(round_no), str(TASKS)], signer, cwd)
    buf = bytearray()
    try:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        lines = 0
        spawned = time.monotonic()
        first: float | None = None
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while True:
                now = time.monotonic()
                if plan.early is not None:
                    if now - spawned >= plan.early:
                        break
                    timeout = plan.early - (now - spawned)
                elif first is not None:
                    if lines >= plan.target or now - first >= plan.delay:
                        break
                    timeout = plan.delay - (now - first)
                else:
                    if now - spawned > STALL_LIMIT:
                        _, err = _kill_and_reap(proc)
                        pytest.fail(f"{where}: no receipt from the child; {_describe(proc, err)}")
                    timeout = STALL_LIMIT
                if not sel.select(timeout):
                    continue
                chunk = os.read(fd, 1 << 16)
                if not chunk:  # EOF before we killed it: the child died on its own
                    _, err = _kill_and_reap(proc)
                    pytest.fail(f"{where}: child exited early; {_describe(proc, err)}")
                buf += chunk
                lines += chunk.count(b"\n")
                if first is None and lines:
                    first = time.monotonic()
        out, err = _kill_and_reap(proc)
    finally:
        _cleanup(proc)
    assert proc.returncode == -signal.SIGKILL, f"{where}: not killed; {_describe(proc, err)}"
    buf += out
    complete = bytes(buf[: buf.rfind(b"\n") + 1])  # a torn last line was never acknowledged
    acks = []
    for line in complete.splitlines():
        try:
            d: dict[str, Any] = json.loads(line)
            acks.append(Ack(d["payload"].encode(), Receipt.from_json(d["receipt"])))
        except Exception as e:
            pytest.fail(f"{where}: malformed child line {line!r}: {e}; {_describe(proc, err)}")
    return acks


@dataclass
class History:
    acked: dict[int, bytes] = field(default_factory=dict)  # index -> payload, all rounds
    size: int = 0  # log size after the previous round's own append
    note: bytes | None = None  # checkpoint after the previous round's own append
    entries: list[bytes] = field(default_factory=list)


def _consistent(log: Log, old_note: bytes, new_note: bytes, where: str) -> None:
    v = log.verifier
    old = open_checkpoint(old_note, v).checkpoint
    new = open_checkpoint(new_note, v).checkpoint
    assert old.size <= new.size, f"{where}: checkpoint went back from {old.size} to {new.size}"
    proof = log.consistency_proof(old.size, new.size)
    verify_checkpoint_consistency(old_note, new_note, proof, v)


def _check_after_crash(
    db: Path,
    signer: Signer,
    round_no: int,
    acks: list[Ack],
    hist: History,
    export_dir: Path | None,
    where: str,
) -> None:
    store = SQLiteStore(db)  # the writer lock must be free again after SIGKILL
    try:
        log = Log(store, signer, max_batch=256)  # reopening runs the store's consistency check
    except BaseException:
        store.close()
        raise
    try:
        v = signer.verifier
        size = log.size
        note = log.checkpoint()
        cp = open_checkpoint(note, v).checkpoint
        assert cp.size == size == store.size(), f"{where}: checkpoint/store size mismatch"

        # Nothing acknowledged is lost and the old prefix is untouched.
        assert size >= hist.size + len(acks), (
            f"{where}: log has {size} entries; {hist.size} before the round plus "
            f"{len(acks)} acknowledged in it"
        )
        assert size >= len(hist.acked) + len(acks) + round_no, f"{where}: entries lost"
        entries = store.read_entries(0, size)
        assert entries[: hist.size] == hist.entries, f"{where}: earlier entries changed"
        prefix = f"round={round_no} ".encode()
        strays = [i for i in range(hist.size, size) if not entries[i].startswith(prefix)]
        assert not strays, f"{where}: unexpected entries at {strays[:10]}"
        assert len(set(entries)) == size, f"{where}: an entry was committed twice"
        if hist.note is not None:
            _consistent(log, hist.note, note, f"{where} (previous round's checkpoint)")

        # Every receipt of this round: unique index, entry in place, proofs still hold.
        old_notes: set[bytes] = set()
        for a in acks:
            i = a.receipt.index
            assert i not in hist.acked, f"{where}: index {i} acknowledged twice"
            assert hist.size <= i < size, f"{where}: receipt index {i} outside the round"
            hist.acked[i] = a.payload
            assert entries[i] == a.payload, f"{where}: entry {i} is {entries[i]!r}, not {a}"
            assert a.receipt.leaf_hash == leaf_hash(a.payload), f"{where}: leaf hash of {i}"
            a.receipt.verify(v, a.payload)
            verify_inclusion(i, size, leaf_hash(a.payload), log.inclusion_proof(i, size), cp.root)
            old_notes.add(a.receipt.checkpoint)
        for old in old_notes:
            _consistent(log, old, note, f"{where} (receipt checkpoint)")
        # Earlier rounds' receipts still name the same entries.
        for i, payload in hist.acked.items():
            assert entries[i] == payload, f"{where}: acknowledged entry {i} changed"

        if export_dir is not None:
            exported = export_log(log.store, export_dir)
            assert (exported.size, exported.root) == (size, cp.root), where
            verified = verify_log(DirSource(export_dir), v)
            assert (verified.size, verified.root) == (size, cp.root), where

        # The log keeps going.
        log.start()
        after = f"after round {round_no}".encode()
        r = log.append_sync(after, timeout=60)
        assert r.index == size, f"{where}: post-crash append got index {r.index}, not {size}"
        r.verify(v, after)
        _consistent(log, note, r.checkpoint, f"{where} (post-crash append)")
        hist.size = log.size
        hist.note = r.checkpoint
        hist.entries = [*entries, after]
    finally:
        log.close()


def test_sigkill_under_load_loses_nothing_acknowledged(tmp_path: Path) -> None:
    seed = _seed()
    rng = random.Random(seed)
    signer = Signer.generate(ORIGIN)
    db = tmp_path / "ledger.db"
    hist = History()
    acked_total = 0
    for round_no in range(ROUNDS):
        plan = _plan(rng)
        where = f"[CRASH_SEED={seed} round={round_no} {plan}]"
        acks = _run_round(db, signer, round_no, plan, where, tmp_path)
        acked_total += len(acks)
        last = round_no == ROUNDS - 1
        export_dir = tmp_path / f"export-{round_no}"
        export = last or round_no % EXPORT_EVERY == EXPORT_EVERY - 1
        _check_after_crash(db, signer, round_no, acks, hist, export_dir if export else None, where)
        assert len(hist.acked) == acked_total, where
        assert hist.size >= acked_total + round_no + 1, where
    # The run must actually have crashed under load, not just at startup.
    assert acked_total > 0, f"[CRASH_SEED={seed}] no receipt was ever acknowledged"


def _read_line(proc: subprocess.Popen[bytes], where: str) -> bytes:
    """The child's first stdout line; fail with its stderr if it exits or stalls first."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buf = bytearray()
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while b"\n" not in buf:
            if not sel.select(STALL_LIMIT):
                _, err = _kill_and_reap(proc)
                pytest.fail(f"{where}: child printed nothing; {_describe(proc, err)}")
            chunk = os.read(fd, 4096)
            if not chunk:
                _, err = _kill_and_reap(proc)
                pytest.fail(f"{where}: child exited early; {_describe(proc, err)}")
            buf += chunk
    return bytes(buf[: buf.index(b"\n")])


def _probe(db: Path, signer: Signer, cwd: Path) -> str:
    env = dict(os.environ, CRASH_SKEY=signer.skey)
    res = subprocess.run(
        [sys.executable, str(CHILD), "probe", str(db)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=env,
        cwd=cwd,
        timeout=STALL_LIMIT,
        check=False,
    )
    assert res.returncode == 0, f"probe failed ({res.returncode}):\n{res.stderr.decode()}"
    return res.stdout.decode().strip()


def test_writer_lock_is_exclusive_and_released_by_sigkill(tmp_path: Path) -> None:
    signer = Signer.generate(ORIGIN)
    db = tmp_path / "ledger.db"
    holder = _spawn(["hold", str(db)], signer, tmp_path)
    try:
        assert _read_line(holder, "holder") == b"held"
        # Another process cannot become a second writer...
        assert _probe(db, signer, tmp_path) == "locked"
        # ...nor can this one, while readers need no lock.
        with pytest.raises(StoreLocked):
            SQLiteStore(db)
        reader = SQLiteStore(db, writer=False)
        try:
            assert reader.size() == 1
        finally:
            reader.close()
        os.kill(holder.pid, signal.SIGKILL)
        _, err = _kill_and_reap(holder)
        assert holder.returncode == -signal.SIGKILL, _describe(holder, err)
    finally:
        _cleanup(holder)

    # The kernel dropped the dead holder's lock: a new writer opens at once.
    assert _probe(db, signer, tmp_path) == "opened 1"
    store = SQLiteStore(db)
    log = Log(store, signer)
    try:
        log.start()
        r = log.append_sync(b"new writer", timeout=60)
        assert r.index == 1
        r.verify(signer.verifier, b"new writer")
    finally:
        log.close()
