"""Token buckets by key: the arithmetic only, on a clock the caller passes in."""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["Buckets"]


class Buckets:
    """One token bucket per key, each refilled at ``rate`` tokens a second up to ``burst``.

    At most ``max_keys`` buckets are kept, the least recently charged forgotten first: a
    forgotten bucket comes back full, so the table's size is bounded however many keys
    (addresses, subjects) a flood brings, at the price of forgiving the oldest of them.
    """

    def __init__(self, rate: float, burst: int, max_keys: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.max_keys = max_keys
        self._b: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def __len__(self) -> int:
        return len(self._b)

    def level(self, key: str, now: float) -> float:
        """Tokens in ``key``'s bucket at ``now`` (``burst`` for a key never charged)."""
        got = self._b.get(key)
        if got is None:
            return self.burst
        tokens, at = got
        return min(self.burst, tokens + max(0.0, now - at) * self.rate)

    def wait(self, key: str, now: float) -> float | None:
        """Seconds until ``key`` has a whole token; None if it has one now. Spends nothing
        and remembers nothing."""
        tokens = self.level(key, now)
        return None if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def take(self, key: str, now: float) -> float | None:
        """Spend one token of ``key``: None when there was one, else the seconds until
        there will be (and nothing is spent)."""
        wait = self.wait(key, now)
        if wait is None:
            self._set(key, self.level(key, now) - 1.0, now)
        return wait

    def charge(self, key: str, now: float, cost: float = 1.0) -> None:
        """Spend ``cost`` tokens of ``key`` whatever its level: it may go into debt (down to
        ``-burst``), which later requests then wait out. For work that was admitted before
        its key was known, such as a request whose caller was authenticated by its handler."""
        self._set(key, max(-self.burst, self.level(key, now) - cost), now)

    def _set(self, key: str, tokens: float, now: float) -> None:
        self._b[key] = (tokens, now)
        self._b.move_to_end(key)
        while len(self._b) > self.max_keys:
            self._b.popitem(last=False)
