"""Deadlines: call back when the injected clock passes a time.

Live access that is allowed until a time (a break-the-glass access, a consent's ``until``,
the ``exp`` of the attestation a socket was opened with) must end at that time, not at the
next message or reading. One task watches every deadline of the process. It sleeps at most
``tick`` real seconds at a time and then reads the clock again, because the clock is
injected: a test moves it instead of sleeping, and a wall clock may jump.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Hashable

__all__ = ["Deadlines"]

log = logging.getLogger("telegate.deadlines")

Due = Callable[[], Awaitable[None]]


class Deadlines:
    """Callbacks by key, each due at a time of ``clock``. Coroutines run on one loop."""

    def __init__(self, clock: Callable[[], float], tick: float = 0.5) -> None:
        self.clock = clock
        self.tick = tick
        self._due: dict[Hashable, tuple[float, Due]] = {}
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._due)

    def set(self, key: Hashable, at: float, due: Due) -> None:
        """Call ``due()`` once the clock reads ``at`` or later (replacing ``key``'s)."""
        self._due[key] = (at, due)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def cancel(self, key: Hashable) -> None:
        self._due.pop(key, None)

    async def close(self) -> None:
        self._due.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while self._due:
            now = self.clock()
            for key in [k for k, (at, _) in self._due.items() if at <= now]:
                hit = self._due.pop(key, None)
                if hit is None:
                    continue  # cancelled by an earlier callback of this round
                try:
                    await hit[1]()
                except Exception:
                    # A failed enforcement is logged; the per-message and per-reading checks
                    # still refuse what is no longer allowed.
                    log.exception("a deadline callback failed", extra={"fields": {"key": str(key)}})
            if self._due:
                earliest = min(at for at, _ in self._due.values())
                await asyncio.sleep(min(self.tick, max(0.0, earliest - self.clock())))
