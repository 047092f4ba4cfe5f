"""Anonymous refusals, counted instead of logged one by one: the pure core.

A caller nobody authenticated can send refused requests as fast as the network carries
them; were each one a ledger entry, a stranger could fill the ledger's disk. So refusals
without an authenticated caller are counted here, per source and per time window, and
each closed window becomes ONE ``auth.refused_summary`` entry per source holding exact
counts by (route, method, status, problem, error). Memory and ledger growth are bounded:
at most ``max_sources`` sources a window, later ones counted together as ``other``, and at
most ``MAX_KINDS`` distinct kinds a source. A token bucket per source limits how many
refusals a source gets served before it is answered 429 without any work.

No I/O and no clock of its own: every method takes ``now`` (epoch seconds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["MAX_KINDS", "OTHER", "Refusal", "Summary", "Tally"]

#: The source name under which sources beyond ``max_sources`` are counted together.
OTHER = "other"
#: Distinct kinds counted for one source; further kinds share one catch-all row. Routes,
#: problems and errors are fixed by the code, so this only guards against a future route
#: whose kinds a client could multiply.
MAX_KINDS = 64


@dataclass(frozen=True, slots=True, order=True)
class Refusal:
    """What was refused: a route template (never the raw path), method, status, problem
    type and, on the token endpoint, the OAuth ``error`` code (or a federation reason)."""

    route: str
    method: str
    status: int
    problem: str
    error: str = ""

    def as_json(self, count: int) -> dict[str, object]:
        out: dict[str, object] = {
            "route": self.route,
            "method": self.method,
            "status": self.status,
            "problem": self.problem,
        }
        if self.error:
            out["error"] = self.error
        out["count"] = count
        return out


#: The row that kinds beyond MAX_KINDS are counted in.
_OTHER_KIND = Refusal("*", "*", 0, "other")


@dataclass(frozen=True, slots=True)
class Summary:
    """One source's refusals in one window: what a summary ledger entry records."""

    source: str
    start: int
    seconds: int
    first: float
    last: float
    counts: tuple[tuple[Refusal, int], ...]
    #: Of the counts, how many were answered 429 (the source was over its rate).
    limited: int

    @property
    def total(self) -> int:
        return sum(n for _, n in self.counts)


@dataclass(slots=True)
class _Source:
    tokens: float
    seen: float
    counts: dict[Refusal, int] = field(default_factory=dict)
    first: float | None = None
    last: float = 0.0
    limited: int = 0

    def add(self, kind: Refusal, now: float, limited: bool) -> bool:
        """Count one refusal; True if it is this source's first in the window."""
        if kind not in self.counts and len(self.counts) >= MAX_KINDS:
            kind = _OTHER_KIND
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.limited += limited
        first = self.first is None
        if first:
            self.first = now
        self.last = now
        return first


class Tally:
    """Counts per source and window, and the sources' token buckets.

    ``rate`` tokens a second refill a bucket of ``burst``; each anonymous refusal spends
    one. A source whose bucket is empty is limited (``retry_after``) until one refills.
    Windows are aligned on multiples of ``window`` seconds since the epoch, so every
    replica's windows line up and an auditor can match summaries across them.
    """

    def __init__(self, *, window: int, max_sources: int, rate: float, burst: int) -> None:
        self.window = window
        self.max_sources = max_sources
        self.rate = rate
        self.burst = burst
        self._start: int | None = None
        self._sources: dict[str, _Source] = {}
        self._other = _Source(tokens=0.0, seen=0.0)
        self._closed: list[Summary] = []

    def retry_after(self, source: str, now: float) -> float | None:
        """Seconds until ``source`` has a token again, or None if it has one now.

        A source past ``max_sources`` this window is never limited: one bucket shared by
        all of them would let an attacker with many addresses lock out every newcomer.
        What bounds the ledger is the summary, not the limit."""
        self._roll(now)
        s = self._sources.get(source)
        if s is None:
            return None
        self._refill(s, now)
        return None if s.tokens >= 1 else (1 - s.tokens) / self.rate

    def count(self, source: str, kind: Refusal, now: float, *, limited: bool = False) -> bool:
        """Count one refusal of ``source`` (a limited one, answered 429, spends no token).
        True if it is the first this window of a source tracked on its own."""
        self._roll(now)
        s = self._sources.get(source)
        if s is None:
            if len(self._sources) >= self.max_sources:
                self._other.add(kind, now, limited)
                return False
            s = self._sources[source] = _Source(tokens=float(self.burst), seen=now)
        self._refill(s, now)
        if not limited:
            s.tokens = max(0.0, s.tokens - 1)
        return s.add(kind, now, limited)

    def close_due(self, now: float) -> list[Summary]:
        """Summaries of the windows that have ended by ``now``; each is returned once."""
        self._roll(now)
        out, self._closed = self._closed, []
        return out

    def close_all(self, now: float) -> list[Summary]:
        """Summaries of every count held, the open window's too (at shutdown)."""
        self._roll(now)
        if self._start is not None:
            self._close(self._start, max(1, min(self.window, math.ceil(now - self._start))))
        out, self._closed = self._closed, []
        return out

    @property
    def tracked(self) -> int:
        """Sources held in memory (at most ``max_sources``)."""
        return len(self._sources)

    def _refill(self, s: _Source, now: float) -> None:
        if now > s.seen:
            s.tokens = min(float(self.burst), s.tokens + (now - s.seen) * self.rate)
            s.seen = now

    def _roll(self, now: float) -> None:
        start = int(now // self.window) * self.window
        if self._start is None:
            self._start = start
        elif start > self._start:
            self._close(self._start, self.window)
            self._start = start

    def _close(self, start: int, seconds: int) -> None:
        end = start + seconds
        for name, s in [*self._sources.items(), (OTHER, self._other)]:
            if s.first is not None:
                counts = tuple(sorted(s.counts.items()))
                self._closed.append(
                    Summary(name, start, seconds, s.first, s.last, counts, s.limited)
                )
            s.counts, s.first, s.limited = {}, None, 0
        # A source whose bucket will be full again by the end of the window is forgotten:
        # it would start from a full bucket anyway. A still-limited one is kept, so a
        # window boundary does not hand an attacker a fresh burst.
        for name, s in list(self._sources.items()):
            self._refill(s, end)
            if s.tokens >= self.burst:
                del self._sources[name]
