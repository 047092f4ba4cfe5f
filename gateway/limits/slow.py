"""Slow clients: a request head, a body or a reader that takes too long is cut off.

aiohttp bounds the head itself once told to: its keep-alive timer runs from a connection's
opening (and from each response) and closes a connection that has not delivered a whole
request head by then, however slowly its bytes trickle in. The body and the reader are
bounded here: :class:`BodyDeadline` fails a body read that has not finished in time, and
:class:`StallWatch` aborts a connection whose unread response has not moved in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from ..config import Config
from ..errors import GatewayError

__all__ = ["BodyTimeout", "StallWatch", "server_args", "watch_ctx"]

log = logging.getLogger("telegate.limits")


def server_args(config: Config) -> dict[str, Any]:
    """aiohttp server (RequestHandler) arguments for ``config``: for ``web.run_app`` or
    ``web.AppRunner``. A request line or header field over ``max_header_size`` bytes, or more
    than ``max_headers`` fields, is answered 400 by aiohttp before any handler runs."""
    return {
        "keepalive_timeout": config.header_timeout,
        "max_line_size": config.max_header_size,
        "max_field_size": config.max_header_size,
        "max_headers": config.max_headers,
    }


class BodyTimeout(GatewayError, TimeoutError):
    """The body did not arrive in time. A TimeoutError too: aiohttp, draining what is left of
    the body after the answer, takes it as the end of the connection rather than a crash."""

    status = 408
    slug = "request-timeout"
    title = "Request body too slow"


class BodyDeadline:
    """Fails the reads of ``request``'s body with :class:`BodyTimeout` if it has not arrived
    whole ``seconds`` after :meth:`arm`; a handler blocked on a read is woken with it."""

    def __init__(self, request: web.Request, seconds: float, on_expiry: Callable[[], None]) -> None:
        self.request = request
        self.seconds = seconds
        self.on_expiry = on_expiry
        self.expired = False
        self._handle: asyncio.TimerHandle | None = None

    def arm(self) -> None:
        content = self.request.content
        if self.request.body_exists and not content.is_eof():
            self._handle = asyncio.get_running_loop().call_later(self.seconds, self._expire)

    def disarm(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _expire(self) -> None:
        self._handle = None
        content = self.request.content
        if content.is_eof():
            return
        self.expired = True
        self.on_expiry()
        content.set_exception(BodyTimeout(f"the body did not arrive within {self.seconds:g} s"))


class StallWatch:
    """Connections with a response under way, checked every ``poll`` seconds: one whose send
    buffer has held data without shrinking for ``timeout`` seconds (a client that stopped
    reading) is aborted. A client that reads, however slowly, keeps its connection."""

    def __init__(
        self,
        timeout: float,
        clock: Callable[[], float],
        on_cut: Callable[[], None] = lambda: None,
    ) -> None:
        self.timeout = timeout
        self.clock = clock
        self.on_cut = on_cut
        # transport -> (smallest buffer size seen since it last shrank, since when)
        self._seen: dict[asyncio.BaseTransport, tuple[int, float] | None] = {}

    def __len__(self) -> int:
        return len(self._seen)

    def watch(self, transport: asyncio.BaseTransport | None) -> None:
        if transport is not None and transport not in self._seen:
            self._seen[transport] = None

    def sweep(self) -> int:
        """Check every watched connection once; how many were cut."""
        now, cut = self.clock(), 0
        for transport, seen in list(self._seen.items()):
            if transport.is_closing():
                del self._seen[transport]
                continue
            size = transport.get_write_buffer_size()  # type: ignore[attr-defined]
            if size == 0:
                self._seen[transport] = None
            elif seen is None or size < seen[0]:
                self._seen[transport] = (size, now)  # data waits, or less than before: moving
            elif now - seen[1] >= self.timeout:
                del self._seen[transport]
                transport.abort()  # type: ignore[attr-defined]
                cut += 1
                self.on_cut()
        if cut:
            log.warning("cut off clients that stopped reading", extra={"fields": {"count": cut}})
        return cut

    async def run(self, poll: float) -> None:
        while True:
            await asyncio.sleep(poll)
            self.sweep()


STALL_WATCH = web.AppKey("stall_watch", StallWatch)


async def _watch_response(request: web.Request, response: web.StreamResponse) -> None:
    if (watch := request.app.get(STALL_WATCH)) is not None:
        watch.watch(request.transport)


@contextlib.asynccontextmanager
async def _running(watch: StallWatch) -> AsyncIterator[None]:
    task = asyncio.create_task(watch.run(min(1.0, watch.timeout / 4)))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def watch_ctx(
    timeout: float, on_cut: Callable[[], None] = lambda: None
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context that runs a :class:`StallWatch` over every response of the app
    (it registers the app's ``on_response_prepare`` hook when added, before startup)."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        watch = StallWatch(timeout, loop.time, on_cut)
        app[STALL_WATCH] = watch
        async with _running(watch):
            yield

    return ctx


def install_watch(
    app: web.Application, timeout: float, on_cut: Callable[[], None] = lambda: None
) -> None:
    """Cut off the clients of ``app`` that stop reading its responses for ``timeout`` s."""
    app.on_response_prepare.append(_watch_response)
    app.cleanup_ctx.append(watch_ctx(timeout, on_cut))
