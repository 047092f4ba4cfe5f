"""Benchmark of supply-chain ingestion (issue 20): signed EPCIS documents of 1 and of 100
events through ``Supply.submit`` (signature, GS1's schema, parsing, custody rules, store,
one ledger entry per event), beside the raw floor measured in the same run on the same
documents: the schema check alone (jsonschema_rs, and the reference jsonschema on a few
documents), the signature check alone, and the ledger append of the same entries alone.

Not a test: it prints a table. Events per second per core are events / process CPU seconds
(every thread of the process: the store's, the ledger writer's, the event loop), so they
mean something on a loaded machine; wall-clock rates are printed beside them.

    PYTHONPATH=. .venv/bin/python -m bench.supply            # about a minute
    PYTHONPATH=. .venv/bin/python -m bench.supply --quick    # a few seconds

The gateway's own code runs unchanged; the time split wraps its stages from outside
(thread CPU time of each call): signature (``verify_document``), schema
(``fast_validator().iter_errors``), parse (the rest of ``parse_document``), rules
(``Custody.apply``), the ledger entries' encoding (``Event.encode``, RFC 8785), store
(``SupplyStore.accept`` less the rules and encoding inside it), the indexes
(``set_indexes``), and the rest (the ledger's appends and the event loop).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

if not __package__:
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    sys.path.insert(0, os.path.dirname(_here))

from gateway.auth.jwk import HolderKey
from gateway.db import Database
from gateway.supply import document as documents
from gateway.supply import service
from gateway.supply.rules import Custody, Party
from gateway.supply.store import SupplyStore
from ledger.events import Event
from ledger.log import Log
from ledger.note import Signer
from ledger.store import SQLiteStore
from tests.gateway.idclient import Holder
from tests.supply.world import commission, document, sgtin, sign

TARGET = 5_000  # events/s at 100 events per document on one core (issue 20)
SPLIT: dict[str, float] = defaultdict(float)
FAST = documents.fast_validator  # before _instrument wraps it


@contextmanager
def _timed(stage: str) -> Iterator[None]:
    t = time.thread_time()
    try:
        yield
    finally:
        SPLIT[stage] += time.thread_time() - t


def _instrument() -> None:
    """Wrap the stages of the gateway's code to time them (thread CPU)."""
    verify, parse, fast = service.verify_document, service.parse_document, documents.fast_validator

    def timed_verify(jws: str, key: HolderKey) -> bytes:
        with _timed("signature"):
            return verify(jws, key)

    class Timed:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def iter_errors(self, doc: Any) -> Iterator[Any]:
            with _timed("schema"):
                errors = list(self.inner.iter_errors(doc))
            return iter(errors)

    def timed_parse(*args: Any) -> Any:
        t = time.thread_time()
        before = SPLIT["schema"]
        out = parse(*args)
        SPLIT["parse"] += time.thread_time() - t - (SPLIT["schema"] - before)
        return out

    class TimedCustody(Custody):
        def apply(self, *args: Any, **kw: Any) -> Any:
            with _timed("rules"):
                return super().apply(*args, **kw)

    accept, set_indexes = SupplyStore.accept, SupplyStore.set_indexes

    def timed_accept(self: SupplyStore, *args: Any) -> Any:
        t = time.thread_time()
        before = SPLIT["rules"] + SPLIT["ledger entry (RFC 8785)"]
        out = accept(self, *args)
        inner = SPLIT["rules"] + SPLIT["ledger entry (RFC 8785)"] - before
        SPLIT["store"] += time.thread_time() - t - inner
        return out

    encode = Event.encode

    def timed_encode(self: Event) -> bytes:
        with _timed("ledger entry (RFC 8785)"):
            return encode(self)

    def timed_set_indexes(self: SupplyStore, *args: Any) -> Any:
        with _timed("store: indexes"):
            return set_indexes(self, *args)

    timed_fast = lambda: Timed(fast())  # noqa: E731
    service.verify_document = timed_verify  # type: ignore[assignment]
    service.parse_document = timed_parse
    service.Custody = TimedCustody  # type: ignore[misc]
    documents.fast_validator = timed_fast  # type: ignore[assignment]
    SupplyStore.accept = timed_accept  # type: ignore[method-assign]
    Event.encode = timed_encode  # type: ignore[method-assign]
    SupplyStore.set_indexes = timed_set_indexes  # type: ignore[method-assign]


def _docs(holder: Holder, tag: str, count: int, size: int) -> list[tuple[dict[str, Any], str]]:
    out = []
    for d in range(count):
        # One commissioning per event, each of a new unit: every event passes the rules.
        doc = document(*(commission([sgtin(f"{tag}{d}x{i}")]) for i in range(size)))
        out.append((doc, sign(holder, doc)))
    return out


def _cpu(fn: Callable[[], Any]) -> tuple[float, float]:
    c, w = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - c, time.perf_counter() - w


async def _run(size: int, count: int, root: Path) -> dict[str, Any]:
    holder = Holder()
    holder.sub = "sup:" + "b" * 32
    key = HolderKey.from_jwk(holder.jwk)
    party = Party(holder.sub, "0614141123452", "manufacturer")
    docs = _docs(holder, f"S{size}", count, size)
    events = count * size
    db = Database(root / f"data{size}")
    db.upgrade()
    log = Log(SQLiteStore(root / f"ledger{size}.db"), Signer.generate("bench.example/supply"))
    log.start()
    supply = service.Supply(SupplyStore(db.open("supply")), log, log.append, time.time)
    SPLIT.clear()
    c, w = time.process_time(), time.perf_counter()
    for _, jws in docs:
        _, fresh = await supply.submit(party, key, jws)
        assert fresh
    full = (time.process_time() - c, time.perf_counter() - w)
    split = dict(SPLIT)
    entries = [e for (e,) in _entries(log)]

    # The raw floor, on the same documents and entries.
    fast = FAST()
    schema = _cpu(lambda: [fast.is_valid(d) for d, _ in docs])
    reference_docs = docs[: max(1, min(len(docs), 2000 // size))]
    reference = documents.validator()
    ref = _cpu(lambda: [reference.is_valid(d) for d, _ in reference_docs])
    ref_events = len(reference_docs) * size
    signature = _cpu(lambda: [documents.verify_document(j, key) for _, j in docs])
    log2 = Log(SQLiteStore(root / f"floor{size}.db"), Signer.generate("bench.example/floor"))
    log2.start()
    c, w = time.process_time(), time.perf_counter()
    for at in range(0, len(entries), size):  # as submit appends: a document's at once
        await asyncio.gather(*(log2.append(e) for e in entries[at : at + size]))
    ledger = (time.process_time() - c, time.perf_counter() - w)
    await asyncio.to_thread(log.close)
    await asyncio.to_thread(log2.close)
    db.close()
    return {
        "size": size,
        "documents": count,
        "events": events,
        "full": full,
        "schema": schema,
        "reference": (ref[0] * events / ref_events, ref[1] * events / ref_events),
        "signature": signature,
        "ledger": ledger,
        "split": split,
    }


def _entries(log: Log) -> list[tuple[bytes]]:
    return [
        (e,) for e in log.store.read_entries(0, log.size) if json.loads(e)["type"] == "supply.event"
    ]


def _rate(events: int, seconds: float) -> str:
    return f"{events / seconds:>10,.0f}" if seconds > 0 else f"{'inf':>10}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer documents")
    args = ap.parse_args(argv)
    _instrument()
    runs = [(1, 200 if args.quick else 2000), (100, 5 if args.quick else 40)]
    load = "/".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"telegate supply benchmark: python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, load average {load}"
    )
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for size, count in runs:
            results.append(asyncio.run(_run(size, count, Path(tmp))))
    print(f"{'':<42}{'events/s/core':>14}{'events/s wall':>15}{'us CPU/event':>14}")
    for r in results:
        n = r["events"]
        print(f"-- {r['documents']} documents of {r['size']} event(s) ({n} events)")
        rows = [
            ("Supply.submit (everything)", r["full"]),
            ("floor: schema alone (jsonschema_rs)", r["schema"]),
            ("floor: schema alone (jsonschema, reference)", r["reference"]),
            ("floor: signature alone", r["signature"]),
            ("floor: ledger append alone", r["ledger"]),
        ]
        for name, (cpu, wall) in rows:
            print(f"   {name:<45}{_rate(n, cpu)}{_rate(n, wall):>15}{cpu / n * 1e6:>14.1f}")
        floor = r["schema"][0] + r["signature"][0] + r["ledger"][0]
        print(
            f"   {'floor: the three together':<45}{_rate(n, floor)}{'':>15}{floor / n * 1e6:>14.1f}"
        )
        total = r["full"][0]
        split = r["split"]
        named = sum(split.values())
        parts = [*split.items(), ("ledger + event loop (rest)", total - named)]
        print("   time split of Supply.submit, us CPU per event:")
        for stage, cpu in parts:
            print(f"     {stage:<28}{cpu / n * 1e6:>10.1f}  {cpu / total:>6.1%}")
    hundred = results[-1]
    rate = hundred["events"] / hundred["full"][0]
    verdict = "PASS" if rate >= TARGET else "MISS"
    print(
        f"\n{verdict}  >= {TARGET:,} events/s on one core at 100 events per document: "
        f"{rate:,.0f} events/s per core"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
