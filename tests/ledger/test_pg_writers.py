"""Several writer processes on one PostgreSQL log: concurrent appends and SIGKILL crashes.

Children (``crash_child.py``) append from many asyncio tasks and print every receipt they
get. The parent checks that the processes grew one log: it verifies offline once exported,
every acknowledged entry sits at its receipt's index, every receipt verifies, and every
checkpoint a writer returned is consistent with the final one. ``CRASH_SEED`` replays a
crash run's random choices.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from ledger.checkpoint import Checkpoint, open_checkpoint
from ledger.export import export_log
from ledger.log import Receipt
from ledger.merkle import consistency_proof, leaf_hash, verify_inclusion
from ledger.note import Signer
from ledger.pgstore import PGStore
from ledger.verify import DirSource, verify_checkpoint_consistency, verify_log

pytestmark = pytest.mark.slow

CHILD = Path(__file__).with_name("crash_child.py")
ORIGIN = "writers.example/log"
STALL_LIMIT = 60.0


class Writer:
    """One child process and the receipts it printed so far."""

    def __init__(self, args: list[str], signer: Signer, cwd: Path) -> None:
        env = dict(os.environ, CRASH_SKEY=signer.skey, CRASH_CHILD_TIMEOUT="90")
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=cwd,
        )
        assert self.proc.stdout is not None
        self.fd = self.proc.stdout.fileno()
        self.buf = bytearray()
        self.acks: list[tuple[bytes, Receipt]] = []
        self.ready = False
        self.eof = False

    def feed(self, chunk: bytes) -> None:
        self.buf += chunk
        end = self.buf.rfind(b"\n") + 1  # a torn last line was never acknowledged
        lines, self.buf = bytes(self.buf[:end]).splitlines(), self.buf[end:]
        for line in lines:
            if line == b"ready":
                self.ready = True
                continue
            d = json.loads(line)
            self.acks.append((d["payload"].encode(), Receipt.from_json(d["receipt"])))

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        """SIGKILL and reap; keep the complete lines it printed before dying."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        out, _ = self.proc.communicate(timeout=30)
        self.feed(out or b"")
        self.eof = True

    def stderr(self) -> str:
        if self.proc.poll() is None:
            self.kill()
        err = self.proc.stderr.read() if self.proc.stderr else b""
        return f"exit {self.proc.returncode}: {(err or b'').decode(errors='replace')}"


def pump(writers: Iterable[Writer], until: Callable[[], bool], what: str) -> None:
    """Read the children's output until ``until()``; fail if one dies or all stall."""
    live = [w for w in writers if not w.eof]
    deadline = time.monotonic() + STALL_LIMIT
    with selectors.DefaultSelector() as sel:
        for w in live:
            sel.register(w.fd, selectors.EVENT_READ, w)
        while not until():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}")
            for key, _ in sel.select(1.0):
                w = key.data
                chunk = os.read(w.fd, 1 << 16)
                if chunk:
                    w.feed(chunk)
                    continue
                sel.unregister(w.fd)
                w.eof = True
                w.proc.wait(timeout=30)
                if w.proc.returncode != 0:
                    pytest.fail(f"a writer died while {what}: {w.stderr()}")


class Checker:
    """Checks acknowledged receipts against the store, each checkpoint verified once."""

    def __init__(self, url: str, signer: Signer) -> None:
        self.store = PGStore(url, writer=False)
        self.v = signer.verifier
        self.cps: dict[bytes, Checkpoint] = {}
        self.acked: dict[int, bytes] = {}

    def check(self, acks: Iterable[tuple[bytes, Receipt]], where: str) -> None:
        acks = list(acks)
        if not acks:
            return
        hi = max(r.index for _, r in acks) + 1
        entries = self.store.read_entries(0, hi)
        for payload, r in acks:
            assert self.acked.setdefault(r.index, payload) == payload, f"{where}: {r.index} twice"
            assert entries[r.index] == payload, f"{where}: entry {r.index} is not {payload!r}"
            assert r.leaf_hash == leaf_hash(payload), where
            cp = self.cps.get(r.checkpoint)
            if cp is None:
                cp = self.cps[r.checkpoint] = open_checkpoint(r.checkpoint, self.v).checkpoint
            verify_inclusion(r.index, cp.size, r.leaf_hash, r.proof, cp.root)

    def final(self, out: Path, where: str) -> int:
        """Export and verify the log offline; check every checkpoint seen against it."""
        cp = export_log(self.store, out)
        verified = verify_log(DirSource(out), self.v)
        assert (verified.size, verified.root) == (cp.size, cp.root), where
        final = (out / "checkpoint").read_bytes()
        for note, old in self.cps.items():
            proof = consistency_proof(old.size, cp.size, self.store.read_nodes)
            verify_checkpoint_consistency(note, final, proof, self.v)
        entries = self.store.read_entries(0, cp.size)
        assert len(set(entries)) == cp.size, f"{where}: an entry was committed twice"
        for i, payload in self.acked.items():
            assert entries[i] == payload, f"{where}: acknowledged entry {i} changed"
        return cp.size


@pytest.mark.parametrize("n", [2, 3])
def test_writer_processes_append_to_one_log(n: int, pg_url: str, tmp_path: Path) -> None:
    signer = Signer.generate(ORIGIN)
    count = 1500
    writers = [
        Writer(["append", pg_url, f"w{k}", "40", str(count)], signer, tmp_path) for k in range(n)
    ]
    checker: Checker | None = None
    try:
        pump(writers, lambda: all(w.ready for w in writers), "writers to open the log")
        checker = Checker(pg_url, signer)  # the schema exists now
        for w in writers:
            w.go()
        pump(writers, lambda: all(w.eof for w in writers), "writers to finish")
        acks = [a for w in writers for a in w.acks]
        assert len(acks) == n * count
        checker.check(acks, f"{n} writers")
        assert sorted(checker.acked) == list(range(n * count))
        assert checker.final(tmp_path / "export", f"{n} writers") == n * count
        # The writers really ran together: each one's entries are spread among the others'.
        owner = [checker.acked[i].split(b" ")[0] for i in range(n * count)]
        runs = 1 + sum(a != b for a, b in itertools.pairwise(owner))
        assert runs > 2 * n, f"appends were not interleaved ({runs} runs)"
        assert len(checker.cps) > n  # group commits of several writers, each signed
    finally:
        for w in writers:
            w.kill()
        if checker is not None:
            checker.store.close()


ROUNDS = 20
WRITERS = 3
TASKS = 30


def _seed() -> int:
    env = os.environ.get("CRASH_SEED")
    return int(env) if env else random.SystemRandom().randrange(2**32)


def test_sigkill_of_any_writer_loses_nothing_and_the_others_go_on(
    pg_url: str, tmp_path: Path
) -> None:
    seed = _seed()
    rng = random.Random(seed)
    signer = Signer.generate(ORIGIN)
    spawned = 0

    def spawn() -> Writer:
        nonlocal spawned
        spawned += 1
        return Writer(["load", pg_url, f"p{spawned}", str(TASKS)], signer, tmp_path)

    writers = [spawn() for _ in range(WRITERS)]
    dead: list[Writer] = []
    checker: Checker | None = None
    checked: dict[Writer, int] = {}
    try:
        pump(writers, lambda: all(w.acks for w in writers), "every writer's first receipt")
        checker = Checker(pg_url, signer)
        for round_no in range(ROUNDS):
            where = f"[CRASH_SEED={seed} round={round_no}]"
            victim = rng.choice(writers)
            # Kill after a random number of the victim's receipts or a random delay,
            # whichever comes first: mid-batch, mid-lock, between batches.
            target = len(victim.acks) + rng.randint(0, 300)
            stop_at = time.monotonic() + rng.uniform(0.0, 0.3)
            pump(
                writers,
                lambda v=victim, t=target, s=stop_at: len(v.acks) >= t or time.monotonic() > s,
                f"{where} the victim's receipts",
            )
            victim.kill()
            assert victim.proc.returncode == -signal.SIGKILL, f"{where}: {victim.stderr()}"
            writers.remove(victim)
            dead.append(victim)
            survivors = list(writers)
            before = {w: len(w.acks) for w in survivors}
            writers.append(spawn())
            # The survivors keep appending, without a restart.
            pump(
                writers,
                lambda ss=survivors, b=before: all(len(w.acks) >= b[w] + 20 for w in ss),
                f"{where} the survivors to append after the kill",
            )
            # Every receipt acknowledged so far (the victim's included) is in place.
            for w in [*writers, *dead]:
                done = checked.get(w, 0)
                checker.check(w.acks[done:], where)
                checked[w] = len(w.acks)
        for w in writers:
            w.kill()
        for w in writers:
            checker.check(w.acks[checked.get(w, 0) :], f"[CRASH_SEED={seed}] end")
        size = checker.final(tmp_path / "export", f"[CRASH_SEED={seed}] end")
        assert size >= len(checker.acked)
        # The kills hit writers under load, not only ones still starting up.
        hit = sum(bool(d.acks) for d in dead)
        assert hit >= ROUNDS // 2, f"[CRASH_SEED={seed}] only {hit} victims had appended"
    finally:
        for w in [*writers, *dead]:
            w.kill()
        if checker is not None:
            checker.store.close()
