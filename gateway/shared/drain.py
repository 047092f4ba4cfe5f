"""Graceful shutdown for rolling restarts: ``telegate serve`` drains before it exits.

On SIGTERM (or SIGINT) a replica

1. reports not ready on ``/readyz`` at once (503), so the load balancer stops sending it
   work at its next health check;
2. answers every new request 503 with ``Retry-After: 1`` and ``Connection: close``
   (``/healthz``, ``/readyz`` and ``/metrics`` excepted): a client, or a load balancer that
   retries, goes to another replica;
3. closes its WebSockets with 1001 (going away), so the call page reconnects elsewhere;
4. waits for the requests already running to finish, at most ``drain_seconds``;
5. then closes its listener and its resources (the app's cleanup) and exits 0.

A second signal ends the wait at once. Running the server here rather than through
``aiohttp.web.run_app`` also keeps shutdown out of a cancelled task: ``run_app`` turns
SIGTERM into ``GracefulExit`` and cancels the main task, whose cleanup then runs the
cleanup contexts inside that cancelled task; an exit status 1 with
``CleanupError(CancelledError)`` on SIGTERM was seen now and then under it (not
reproduced in 40 tries here, at rest, under requests and during startup).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry, Gauge

from ..errors import Unavailable, problem_response
from ..limits.heads import Runner

__all__ = ["DRAIN", "Drain", "drain_middleware", "serve"]

log = logging.getLogger("telegate.drain")

#: Paths answered while draining: liveness, readiness (503 from the handler), metrics.
EXEMPT = frozenset({"/healthz", "/readyz", "/metrics"})
#: How long aiohttp may still wait for handlers after the drain (they are done by then, or
#: the drain time is spent and they are cut).
SHUTDOWN_TIMEOUT = 0.5
#: While waiting, the close hooks run again this often: a WebSocket whose handshake was in
#: flight when the drain began is closed too.
REPEAT = 0.25


class Drain:
    """Whether this replica is draining, and the requests still running in it."""

    def __init__(self) -> None:
        self.draining = False
        self.inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        #: Awaited when the drain begins (and again while waiting): close the WebSockets.
        self.hooks: list[Callable[[], Awaitable[None]]] = []

    def export(self, registry: CollectorRegistry) -> None:
        """``telegate_requests_in_flight`` and ``telegate_draining`` on ``/metrics``."""
        Gauge(
            "telegate_requests_in_flight",
            "Requests being handled (WebSockets too)",
            registry=registry,
        ).set_function(lambda: self.inflight)
        Gauge("telegate_draining", "1 from SIGTERM until exit", registry=registry).set_function(
            lambda: float(self.draining)
        )

    def enter(self) -> None:
        self.inflight += 1
        self._idle.clear()

    def leave(self) -> None:
        self.inflight -= 1
        if self.inflight == 0:
            self._idle.set()

    async def _hooks(self) -> None:
        for hook in self.hooks:
            try:
                await hook()
            except Exception:
                log.exception("drain hook failed")

    async def run(self, seconds: float, hurry: asyncio.Event) -> bool:
        """Drain: not ready, new work refused, sockets closed, in-flight requests awaited
        for at most ``seconds`` (or until ``hurry`` is set). True if every request ended."""
        self.draining = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        log.warning("draining", extra={"fields": {"inflight": self.inflight, "seconds": seconds}})
        await self._hooks()
        while self.inflight and not hurry.is_set():
            left = deadline - loop.time()
            if left <= 0:
                break
            waits = [asyncio.ensure_future(self._idle.wait()), asyncio.ensure_future(hurry.wait())]
            _, pending = await asyncio.wait(
                waits, timeout=min(REPEAT, left), return_when=asyncio.FIRST_COMPLETED
            )
            for w in pending:
                w.cancel()
            if self.inflight:
                await self._hooks()
        if self.inflight:
            log.warning("drain time over", extra={"fields": {"inflight": self.inflight}})
            return False
        log.info("drained")
        return True


DRAIN = web.AppKey("drain", Drain)


@web.middleware
async def drain_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Counts the requests in flight; while draining, refuses new ones (503)."""
    drain = request.app[DRAIN]
    if drain.draining and request.path not in EXEMPT:
        resp = problem_response(
            Unavailable.status,
            Unavailable.slug,
            Unavailable.title,
            "this replica is shutting down; retry, another replica will answer",
        )
        resp.headers["Retry-After"] = "1"
        resp.force_close()  # the client's next request opens a connection elsewhere
        return resp
    drain.enter()
    try:
        return await handler(request)
    finally:
        drain.leave()


def serve(app: web.Application, host: str, port: int, drain_seconds: float, **server: Any) -> int:
    """Run ``app`` on ``host:port`` until SIGTERM or SIGINT, drain, clean up; exit 0.
    ``server``: aiohttp's request handler arguments (header limits, keep-alive timeout:
    gateway/limits ``server_args``)."""
    return asyncio.run(_serve(app, host, port, drain_seconds, server))


async def _serve(
    app: web.Application, host: str, port: int, drain_seconds: float, server: dict[str, Any]
) -> int:
    loop = asyncio.get_running_loop()
    stop, hurry = asyncio.Event(), asyncio.Event()

    def on_signal() -> None:
        if stop.is_set():
            hurry.set()  # a second signal: stop waiting for in-flight requests
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    # gateway.limits.Runner: aiohttp's own refusals of a request head are problem+json too.
    runner = Runner(
        app, handle_signals=False, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT, **server
    )
    try:
        await runner.setup()  # the app's startup: a failure here is the exit status
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
            await stop.wait()
            await app[DRAIN].run(drain_seconds, hurry)
        finally:
            # Closes the listener and idle connections, then the app's resources.
            await runner.cleanup()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return 0
