"""A program as published: its canonical text (RFC 8785 JSON) and the hash that names it.

A program never changes: its id is the SHA-256 of its canonical text, so a new version is a
new program. Pure: no I/O.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from typing import Any

import rfc8785

from ..errors import BadRequest
from .aggregates import DAY
from .rules import Rule, compile_rule

__all__ = ["MAX_PERIODS", "Program", "parse_program"]

MAX_NAME = 120
MAX_PERIOD_DAYS = 31
MAX_PERIODS = 104
MAX_POINTS = 1000
FIELDS = frozenset({"name", "start", "period_days", "periods", "rule", "points"})
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
VERSION = "telegate-incentives/v1"


@dataclass(frozen=True, slots=True)
class Program:
    """A published program. Period ``k`` (0-based) covers ``[start + k * period_days days,
    start + (k + 1) * period_days days)`` in UTC."""

    name: str
    start: str  # a UTC date, YYYY-MM-DD
    period_days: int
    periods: int
    rule_text: str
    points: int
    publisher: str

    def canonical(self) -> bytes:
        """The program's canonical text: what its id hashes and the ledger event names."""
        out: bytes = rfc8785.dumps(
            {
                "v": VERSION,
                "name": self.name,
                "start": self.start,
                "period_days": self.period_days,
                "periods": self.periods,
                "rule": self.rule_text,
                "points": self.points,
                "publisher": self.publisher,
            }
        )
        return out

    @property
    def id(self) -> str:
        return hashlib.sha256(self.canonical()).hexdigest()

    @property
    def start_epoch(self) -> int:
        d = dt.date.fromisoformat(self.start)
        return int(dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC).timestamp())

    def period_bounds(self, k: int) -> tuple[int, int]:
        """Epoch seconds ``[from, to)`` of period ``k``. Raises BadRequest if out of range."""
        if not 0 <= k < self.periods:
            raise BadRequest(f"period is 0..{self.periods - 1}")
        lo = self.start_epoch + k * self.period_days * DAY
        return lo, lo + self.period_days * DAY

    @property
    def end_epoch(self) -> int:
        return self.start_epoch + self.periods * self.period_days * DAY

    def period_at(self, t: int) -> int | None:
        """The period that ``t`` falls in, or None before the start or after the end."""
        if not self.start_epoch <= t < self.end_epoch:
            return None
        return (t - self.start_epoch) // (self.period_days * DAY)

    def rule(self) -> Rule:
        return compile_rule(self.rule_text, self.period_days)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "start": self.start,
            "period_days": self.period_days,
            "periods": self.periods,
            "rule": self.rule_text,
            "points": self.points,
            "publisher": self.publisher,
        }

    @classmethod
    def from_canonical(cls, raw: bytes | str) -> Program:
        """Parse a canonical text (as ``canonical`` made it); raises BadRequest otherwise."""
        import json

        try:
            d = json.loads(raw)
            if d.get("v") != VERSION:
                raise ValueError("version")
            p = parse_program({k: d[k] for k in FIELDS}, str(d["publisher"]))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise BadRequest("not a telegate program's canonical text") from e
        if p.canonical() != (raw.encode() if isinstance(raw, str) else raw):
            raise BadRequest("the program text is not in canonical form")
        return p


def _int(body: dict[str, Any], key: str, lo: int, hi: int) -> int:
    v = body.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise BadRequest(f"{key} is an integer {lo}..{hi}")
    return v


def parse_program(body: Any, publisher: str) -> Program:
    """Check a ``POST /v1/programs`` body. Raises BadRequest, or RuleError for the rule."""
    if (
        not isinstance(body, dict)
        or set(body) - FIELDS
        or not {"name", "start", "rule"} <= set(body)
    ):
        raise BadRequest(f"send {', '.join(sorted(FIELDS))} (name, start and rule required)")
    name = body.get("name")
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= MAX_NAME:
        raise BadRequest(f"name is 1..{MAX_NAME} characters")
    start = body.get("start")
    try:
        if not isinstance(start, str) or not DATE.fullmatch(start):
            raise ValueError(start)
        dt.date.fromisoformat(start)
    except ValueError:
        raise BadRequest("start is a UTC date, YYYY-MM-DD") from None
    days = _int({"period_days": 7, **body}, "period_days", 1, MAX_PERIOD_DAYS)
    periods = _int({"periods": 1, **body}, "periods", 1, MAX_PERIODS)
    points = _int({"points": 1, **body}, "points", 0, MAX_POINTS)
    rule = compile_rule(body.get("rule"), days)
    return Program(name.strip(), start, days, periods, rule.text, points, publisher)
