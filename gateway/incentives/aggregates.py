"""The fixed set of per-period aggregates a program's rule may read (docs/incentives.md).

Pure: readings in (as the vitals store keeps them, decrypted), a JSON-able mapping out. The
mapping is what the ledger's salted commitment covers, so it is built the same way every
time: only the codes the rule names, integers as integers, means rounded to 6 decimals.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from typing import Any

from ..rfc3339 import parse_time
from ..vitals.codes import BP_COMPONENTS, BP_PANEL
from ..vitals.codes import CODES as VITAL_CODES

__all__ = ["CODES", "DAY", "aggregate", "empty", "per_code"]

DAY = 86400
#: Every code a rule may name: the vital-sign table, the blood pressure panel (counted as a
#: reading of its own) and its two components (whose values come from the panels).
CODES = frozenset({*VITAL_CODES, BP_PANEL, *BP_COMPONENTS})


def _values(reading: Mapping[str, Any]) -> Iterable[tuple[str, float | None]]:
    """(code, value) pairs a stored reading contributes: a panel counts as itself (no
    value) and gives each component's value under that component's code."""
    if reading.get("components"):
        yield str(reading["code"]), None
        for c in reading["components"]:
            yield str(c["code"]), float(c["value"])
    else:
        yield str(reading["code"]), float(reading["value"])


def _epoch(value: str) -> int:
    """Whole epoch seconds (floored) of a reading's time. The store keeps ``format_time``'s
    form (``...T..:..:..mmmZ``), which the C parser reads at a fraction of the cost of the
    general RFC 3339 one (bench/incentives.py); any other form goes through that one."""
    if len(value) == 24 and value[-1] == "Z":
        try:
            return math.floor(dt.datetime.fromisoformat(value).timestamp())
        except ValueError:
            pass
    return math.floor(parse_time(value).timestamp())


def per_code(days: int, day_counts: list[int], values: list[float]) -> dict[str, Any]:
    """The aggregates of one code: readings, days with one, the longest run of such days,
    and the least, greatest and mean value (0.0 when there is none or no values)."""
    streak = best = 0
    for n in day_counts:
        streak = streak + 1 if n else 0
        best = max(best, streak)
    return {
        "count": sum(day_counts),
        "days_with": sum(1 for n in day_counts if n),
        "streak": best,
        "min": min(values) if values else 0.0,
        "max": max(values) if values else 0.0,
        "mean": round(sum(values) / len(values), 6) if values else 0.0,
    }


def empty(days: int, codes: Iterable[str]) -> dict[str, Any]:
    """The aggregates of a period with no readings."""
    return {"days": days, "codes": {c: per_code(days, [0] * days, []) for c in sorted(codes)}}


def aggregate(
    readings: Iterable[Mapping[str, Any]], start: int, days: int, codes: Iterable[str]
) -> dict[str, Any]:
    """Aggregates of the readings whose time falls in ``[start, start + days * DAY)`` (epoch
    seconds), for ``codes`` only. Readings of other codes or times are ignored."""
    wanted = set(codes)
    end = start + days * DAY
    counts = {c: [0] * days for c in wanted}
    values: dict[str, list[float]] = {c: [] for c in wanted}
    for r in readings:
        secs = _epoch(str(r["time"]))
        if not start <= secs < end:
            continue
        day = (secs - start) // DAY
        for code, value in _values(r):
            if code in wanted:
                counts[code][day] += 1
                if value is not None:
                    values[code].append(value)
    return {
        "days": days,
        "codes": {c: per_code(days, counts[c], values[c]) for c in sorted(wanted)},
    }
