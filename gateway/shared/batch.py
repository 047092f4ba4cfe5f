"""Concurrent calls of one Redis script coalesced into one pipelined round trip.

Every DPoP-protected request spends its proof's ``jti`` in Redis (the replay script of
:mod:`.replay`). One command is one write and one read on the socket, and on this machine
those two system calls cost more than the command itself: with redis-py's asyncio client a
lone command took about 220 µs of CPU (bench/replicas.py, py-spy: half of it in the socket
write). So the calls of requests that arrive together go out as one pipeline (one write, one
read), as the ledger group-commits appends: while a batch is on the wire the next one
gathers, and it is sent as soon as the first returns. A lone request still costs one plain
call and waits for nothing.

A pipeline is not a transaction: each script runs atomically on its own (what the replay
check needs); one call's error fails only its caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

__all__ = ["ScriptBatcher"]

#: The most calls one pipeline carries; more wait for the next round trip.
MAX_BATCH = 256

_Call = tuple[Sequence[str], Sequence[str], "asyncio.Future[Any]"]


class ScriptBatcher:
    def __init__(self, client: Redis, script: AsyncScript) -> None:
        self.client = client
        self.script = script
        self._pending: list[_Call] = []
        self._sending = False
        self._task: asyncio.Task[None] | None = None
        #: Round trips made and calls sent (for tests and the benchmark).
        self.round_trips = 0
        self.calls = 0

    async def call(self, keys: Sequence[str], args: Sequence[str]) -> Any:
        """The script's answer for ``keys`` and ``args``. Raises what Redis raised."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending.append((keys, args, fut))
        if not self._sending:
            self._sending = True
            self._task = loop.create_task(self._send())  # kept: a task nobody holds may go
        return await fut

    async def _send(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                live = [b for b in batch if not b[2].done()]  # a caller that gave up
                if not live:
                    continue
                self.round_trips += 1
                self.calls += len(live)
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
                        fut.set_result(result)
        finally:
            self._sending = False
            # Callers that queued behind a cancelled round trip (the app is stopping) are
            # not left waiting.
            for _, _, fut in self._pending:
                if not fut.done():
                    fut.set_exception(asyncio.CancelledError())
            self._pending = []

    async def _round_trip(self, batch: list[_Call]) -> list[Any]:
        if len(batch) == 1:
            keys, args, _ = batch[0]
            return [await self.script(keys=keys, args=args, client=self.client)]
        async with self.client.pipeline(transaction=False) as pipe:
            for keys, args, _ in batch:
                # Queued, not sent: the pipeline loads the script first if the server lacks it.
                await self.script(keys=keys, args=args, client=pipe)
            return list(await pipe.execute(raise_on_error=False))
