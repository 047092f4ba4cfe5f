"""A fresh clone is enough: no test or benchmark reads a file outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# A path climbing out of the repository root, or into a folder beside the checkout.
OUTSIDE = re.compile(
    r"ROOT\.parent\b|parents\[\d\]\.parent\b|\.parent\s*/\s*[\"']shared[\"']"
    r"|[\"']\.\./shared|[\"']/work/"
)


def test_no_test_or_bench_reads_outside_the_repository() -> None:
    sources = [p for d in ("tests", "bench") for p in (ROOT / d).rglob("*.py")]
    assert len(sources) > 20
    me = Path(__file__).resolve()
    found = [
        f"{p.relative_to(ROOT)}:{n}: {line.strip()}"
        for p in sources
        if p.resolve() != me
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert not found, found
