"""Benchmark of incentive evaluation (issue 21): one program, N patients with 30 days of
readings each (4 heart-rate readings a day), one 30-day period each.

Not a test: it measures and prints a table (system | metric | value | ratio to telegate),
then the issue's target (>= 1,000 patient-periods/s on one core) as PASS/MISS.

    python -m bench.incentives --quick       # 1,000 patients, a few seconds
    python -m bench.incentives               # 10,000 patients, the issue's size

Stages, each timed with CPU time of this process (one core; the machine is shared):

- read: the real VitalsStore (SQLite file) decrypting a patient's 30 daily batches, on a
  sample of patients (it is I/O-bound and the same for any rule);
- aggregate: ``gateway.incentives.aggregates.aggregate`` over the 120 decrypted readings;
- CEL: the compiled rule evaluated on the aggregates (telegate's ``Rule.evaluate``, the
  cel-python interpreter), beside the peers: the same rule as a native Python lambda (the
  floor);
- commit: the salt and the HMAC commitment over the canonical aggregates;
- sign: the SD-JWT VC of a passed period (Ed25519, six disclosures), for every patient that
  passed.

The ledger append is not here: it is the ledger's own benchmark (bench/ledger.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import sys
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

if not __package__:
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    sys.path.insert(0, os.path.dirname(_here))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.auth.jwk import HolderKey
from gateway.auth.keys import SigningKey
from gateway.incentives.aggregates import aggregate
from gateway.incentives.evaluate import commitment
from gateway.incentives.program import Program
from gateway.incentives.rewards import credential
from gateway.incentives.store import Evaluation
from ledger.events import new_salt

DAY = 86400
START = 1_764_547_200  # 2025-12-01T00:00:00Z
RULE = 'days_with("8867-4") >= 25 && streak("8867-4") >= 7 && mean("8867-4") < 100.0'
TARGET = 1000.0
cpu = time.process_time


def native(aggs: dict[str, Any]) -> bool:
    """The same rule, written in Python: what CEL's interpretation is compared to."""
    a = aggs["codes"]["8867-4"]
    return bool(a["days_with"] >= 25 and a["streak"] >= 7 and a["mean"] < 100.0)


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def readings(rng: random.Random) -> list[list[dict[str, Any]]]:
    """30 daily batches of 4 heart-rate readings; a patient misses some days."""
    skip = rng.random() * 0.25
    out = []
    for d in range(30):
        if rng.random() < skip:
            out.append([])
            continue
        t0 = START + d * DAY + 7 * 3600
        out.append(
            [
                {
                    "code": "8867-4",
                    "unit": "/min",
                    "value": rng.randint(55, 120),
                    "time": iso(t0 + h * 4 * 3600),
                }
                for h in range(4)
            ]
        )
    return out


def timed(f: Callable[[], Any]) -> tuple[float, Any]:
    t0 = cpu()
    out = f()
    return cpu() - t0, out


def read_stage(patients: list[list[list[dict[str, Any]]]], sample: int) -> float:
    """CPU seconds per patient to read and decrypt 30 batches with the real VitalsStore."""
    from gateway.db.engine import sqlite_engine
    from gateway.db.migrate import upgrade
    from gateway.vitals.store import VitalsStore

    with tempfile.TemporaryDirectory() as tmp:
        engine = sqlite_engine(Path(tmp) / "vitals.db")
        upgrade(engine, "vitals")
        store = VitalsStore(engine, os.urandom(32))
        index = 0
        for i, days in enumerate(patients[:sample]):
            pid, rows, indexed = f"pat:{i}", [], []
            for d, batch in enumerate(days):
                if not batch:
                    continue
                bid = f"b{d}"
                content = {"readings": batch, "jws": "x" * 200}
                tag, nonce, ct = store.seal(pid, "dev:1", bid, bid.encode(), content, START)
                rows.append(("dev:1", bid, pid, START + d * DAY, tag, nonce, ct, b"{}", 0))
                indexed.append((index, "dev:1", bid))
                index += 1
            store.commit(rows, [])
            store.set_indexes(indexed)
        t, _ = timed(lambda: [store.read(f"pat:{i}", 0, 2**62, 0, 500) for i in range(sample)])
        engine.dispose()
    return t / sample


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--patients", type=int, default=10_000)
    ap.add_argument("--quick", action="store_true", help="1,000 patients")
    ap.add_argument("--read-sample", type=int, default=300)
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args(argv)
    n = 1000 if args.quick else args.patients
    rng = random.Random(21)
    patients = [readings(rng) for _ in range(n)]
    flat = [[r for day in p for r in day] for p in patients]
    program = Program("bench", "2025-12-01", 30, 1, RULE, 5, "adm:bench")
    t_compile, rule = timed(lambda: Program.rule(program))
    # Each stage over every patient, in turn (its own CPU time).
    t_agg, aggs = timed(lambda: [aggregate(r, START, 30, rule.codes) for r in flat])
    t_cel, results = timed(lambda: [rule.evaluate(a) for a in aggs])
    t_native, nat = timed(lambda: [native(a) for a in aggs])
    assert results == nat, "the CEL rule and its native twin disagree"
    t_commit, _ = timed(lambda: [commitment(new_salt(), a) for a in aggs])
    private = Ed25519PrivateKey.generate()
    raw = private.public_key().public_bytes_raw()
    import base64

    x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": x}
    key = SigningKey("bench", "EdDSA", private, HolderKey.from_jwk(jwk), 0)
    passed = [i for i, r in enumerate(results) if r]

    def sign_all() -> None:
        for i in passed:
            e = Evaluation(f"pat:{i}", program.id, 0, True, 5, b"", "", 0, 0, i)
            credential(key, "https://bench.example", program, e, jwk, i, START)

    t_sign, _ = timed(sign_all)
    t_read = read_stage(patients, min(args.read_sample, n))
    per = {
        "aggregate": t_agg / n,
        "CEL (telegate Rule.evaluate)": t_cel / n,
        "commit": t_commit / n,
        "sign (per patient-period)": t_sign / n,
    }
    core = sum(per.values())
    with_read = core + t_read
    rows: list[tuple[str, str, str, str]] = []
    rows.append(
        (
            "telegate evaluation",
            "patient-periods/s, one core (no read)",
            f"{1 / core:,.0f} /s",
            "1.00x",
        )
    )
    rows.append(
        (
            "telegate evaluation",
            "patient-periods/s, one core, with read+decrypt",
            f"{1 / with_read:,.0f} /s",
            f"{core / with_read:.2f}x",
        )
    )
    for name, t in per.items():
        rows.append(("  share", name, f"{t * 1e6:,.1f} us", f"{t / core:.0%} of evaluation"))
    rows.append(
        (
            "  read",
            "VitalsStore.read, 30 batches",
            f"{t_read * 1e6:,.1f} us",
            f"{t_read / with_read:.0%} of all",
        )
    )
    rows.append(
        (
            "peer: native Python rule",
            "rule per patient-period",
            f"{t_native / n * 1e6:,.2f} us",
            f"CEL takes {t_cel / max(t_native, 1e-9):,.0f}x",
        )
    )
    rows.append(("telegate", "rule compile (once a process)", f"{t_compile * 1e3:,.2f} ms", "-"))
    rows.append(
        (
            "telegate",
            "SD-JWT VC sign, each",
            f"{(t_sign / max(1, len(passed))) * 1e6:,.0f} us",
            f"{len(passed)}/{n} passed",
        )
    )
    w = [max(len(r[i]) for r in rows) for i in range(4)]
    print(
        f"telegate incentives benchmark: {n:,} patients x 30 days x 4 readings, python "
        f"{platform.python_version()}, cel-python {version('cel-python')}, "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}"
    )
    head = ("system", "metric", "value", "ratio")
    w = [max(w[i], len(head[i])) for i in range(4)]
    print(" | ".join(h.ljust(w[i]) for i, h in enumerate(head)))
    print("-+-".join("-" * x for x in w))
    for r in rows:
        print(" | ".join(c.ljust(w[i]) if i != 2 else c.rjust(w[i]) for i, c in enumerate(r)))
    rate = 1 / with_read
    verdict = "PASS" if rate >= TARGET else "MISS"
    print(
        f"target >= {TARGET:,.0f} patient-periods/s on one core (with read): "
        f"{verdict} ({rate / TARGET:.2f}x)"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "patients": n,
                    "per_patient_s": per,
                    "read_s": t_read,
                    "native_s": t_native / n,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
