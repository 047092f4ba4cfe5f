"""Concurrent ``SET NX PX`` commands coalesced into one pipelined round trip.

Every DPoP-protected request spends its proof's ``jti`` in Redis. One command is one write
and one read on the socket, and on this machine those two system calls cost more than the
command itself: with redis-py's asyncio client a lone ``SET`` took about 220 µs of CPU
(bench/replicas.py, py-spy: half of it in the socket write). So the spends of requests that
arrive together go out as one pipeline (one write, one read), as the ledger group-commits
appends: while a batch is on the wire the next one gathers, and it is sent as soon as the
first returns. A lone request still costs one plain ``SET`` and waits for nothing.

A pipeline is not a transaction: each ``SET NX`` is atomic on its own (what the replay
check needs); one command's error fails only its caller.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis

__all__ = ["SetNXBatcher"]

#: The most commands one pipeline carries; more wait for the next round trip.
MAX_BATCH = 256


class SetNXBatcher:
    def __init__(self, client: Redis) -> None:
        self.client = client
        self._pending: list[tuple[str, int, asyncio.Future[bool]]] = []
        self._sending = False
        #: Round trips made and commands sent (for tests and the benchmark).
        self.round_trips = 0
        self.commands = 0

    async def set_nx(self, key: str, ms: int) -> bool:
        """``SET key 1 NX PX ms``: True if this call set it. Raises what Redis raised."""
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((key, ms, fut))
        if not self._sending:
            self._sending = True
            asyncio.get_running_loop().create_task(self._send())
        return await fut

    async def _send(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                live = [b for b in batch if not b[2].done()]  # a caller that gave up
                if not live:
                    continue
                self.round_trips += 1
                self.commands += len(live)
                try:
                    results = await self._round_trip(live)
                except BaseException as e:  # handed to every caller below
                    for _, _, fut in live:
                        if not fut.done():
                            fut.set_exception(e)
                    if isinstance(e, asyncio.CancelledError):
                        raise
                    continue
                for (_, _, fut), result in zip(live, results, strict=True):
                    if fut.done():
                        continue
                    if isinstance(result, BaseException):
                        fut.set_exception(result)
                    else:
                        fut.set_result(bool(result))
        finally:
            self._sending = False
            # A caller that queued while the last batch failed with CancelledError is not
            # left waiting: its future is failed too.
            for _, _, fut in self._pending:
                if not fut.done():
                    fut.set_exception(asyncio.CancelledError())
            self._pending = []

    async def _round_trip(self, batch: list[tuple[str, int, asyncio.Future[bool]]]) -> list[Any]:
        if len(batch) == 1:
            key, ms, _ = batch[0]
            return [await self.client.set(key, b"1", nx=True, px=ms)]
        pipe = self.client.pipeline(transaction=False)
        for key, ms, _ in batch:
            pipe.set(key, b"1", nx=True, px=ms)
        return list(await pipe.execute(raise_on_error=False))
