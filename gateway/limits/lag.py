"""How far behind the event loop runs: the overload signal of a CPU-bound server.

A cap on requests under way sees only requests whose handlers await something. When the
gateway runs out of CPU, the queue is elsewhere: in the sockets' buffers and the loop's
ready queue, where no middleware counts it. What grows with that queue is how late the
loop runs a timer, so that is measured (as Node's toobusy does): a sample every
``interval`` seconds, smoothed, and requests are shed while it is over the limit.
"""

from __future__ import annotations

import asyncio

__all__ = ["LoopLag"]


class LoopLag:
    """The loop's lateness in seconds, an exponentially weighted average of samples."""

    def __init__(self, interval: float = 0.05, weight: float = 1 / 3) -> None:
        self.interval = interval
        self.weight = weight
        self.seconds = 0.0

    def sample(self, late: float) -> None:
        self.seconds += self.weight * (max(0.0, late) - self.seconds)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t0 = loop.time()
            await asyncio.sleep(self.interval)
            self.sample(loop.time() - t0 - self.interval)
