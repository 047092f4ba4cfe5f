"""Concurrent Redis commands coalesced into one pipelined round trip.

Every DPoP-protected request spends its proof's ``jti`` in Redis (the replay script of
:mod:`.replay`), and every signalling message for a party on another replica is a
``PUBLISH`` (:mod:`.hub`). One command is one write and one read on the socket plus a
checkout from the connection pool, and on this machine that costs more than the command
itself: with redis-py's asyncio client a lone command took about 220 µs of CPU
(bench/replicas.py, py-spy: half of it in the socket write, much of the rest in the pool's
checkout). So the commands of requests that arrive together go out as one pipeline (one
checkout, one write, one read), as the ledger group-commits appends: while a batch is on the
wire the next one gathers, and it is sent as soon as the first returns. A lone command is
sent at once from its caller's task, as one plain call, and waits for nothing.

A pipeline is not a transaction: each command (each script) runs atomically on its own,
which is all the callers need; one call's error fails only its caller. Commands go out in
the order they were called, so one sender's messages keep their order.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

__all__ = ["MAX_BATCH", "Batcher", "ScriptBatcher"]

#: The most calls one pipeline carries; more wait for the next round trip.
MAX_BATCH = 256

#: One command: given the client (a lone call) or a pipeline (a batched one), issue it.
#: On the client its answer is the command's; on a pipeline it only queues.
Op = Callable[[Any], Any]
_Call = tuple[Op, "asyncio.Future[Any]"]


async def _issued(op: Op, target: Any) -> Any:
    out = op(target)
    return await out if inspect.isawaitable(out) else out


class Batcher:
    def __init__(self, client: Redis) -> None:
        self.client = client
        self._pending: list[_Call] = []
        self._sending = False
        self._task: asyncio.Task[None] | None = None
        #: Round trips made and calls sent (for tests and the benchmark).
        self.round_trips = 0
        self.calls = 0

    async def run(self, op: Op) -> Any:
        """``op``'s answer. Raises what Redis raised."""
        loop = asyncio.get_running_loop()
        if not self._sending:
            # Nothing on the wire: this call goes out at once, from its own task (no task
            # to create, no loop turn to wait for: the lone request's latency is one round
            # trip). Calls that arrive meanwhile gather behind it and leave together.
            self._sending = True
            self.round_trips += 1
            self.calls += 1
            try:
                return await _issued(op, self.client)
            finally:
                if self._pending:
                    self._task = loop.create_task(self._send())  # kept: may go if unheld
                else:
                    self._sending = False
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending.append((op, fut))
        return await fut

    async def _send(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                live = [b for b in batch if not b[1].done()]  # a caller that gave up
                if not live:
                    continue
                self.round_trips += 1
                self.calls += len(live)
                try:
                    results = await self._round_trip(live)
                except BaseException as e:  # handed to every caller below
                    for _, fut in live:
                        if not fut.done():
                            fut.set_exception(e)
                    if isinstance(e, asyncio.CancelledError):
                        raise
                    continue
                for (_, fut), result in zip(live, results, strict=True):
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
            for _, fut in self._pending:
                if not fut.done():
                    fut.set_exception(asyncio.CancelledError())
            self._pending = []

    async def _round_trip(self, batch: list[_Call]) -> list[Any]:
        if len(batch) == 1:
            return [await _issued(batch[0][0], self.client)]
        async with self.client.pipeline(transaction=False) as pipe:
            for op, _ in batch:
                # Queued, not sent: a script is loaded first if the server lacks it.
                await _issued(op, pipe)
            return list(await pipe.execute(raise_on_error=False))


class ScriptBatcher(Batcher):
    """Calls of one script, batched."""

    def __init__(self, client: Redis, script: AsyncScript) -> None:
        super().__init__(client)
        self.script = script

    async def call(self, keys: Sequence[str], args: Sequence[str]) -> Any:
        """The script's answer for ``keys`` and ``args``. Raises what Redis raised."""
        return await self.run(lambda c: self.script(keys=keys, args=args, client=c))
