"""Request and connection limits against floods and slow clients (docs/reliability.md,
"Overload"): token buckets per address and per client, caps on WebSockets and on
requests under way (load shedding), and deadlines for slow heads, bodies and readers."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from ..appkeys import CONFIG, METRICS, TICKETS
from ..errors import problem_middleware
from .buckets import Buckets
from .guard import (
    GUARD,
    Guard,
    Limited,
    cap_tickets,
    claimed_subject,
    limits_middleware,
    socket_opened,
)
from .heads import Runner
from .slow import BodyTimeout, StallWatch, install_watch, server_args

__all__ = [
    "GUARD",
    "BodyTimeout",
    "Buckets",
    "Guard",
    "Limited",
    "Runner",
    "StallWatch",
    "cap_tickets",
    "claimed_subject",
    "limits_middleware",
    "server_args",
    "setup",
]


async def _guard_ctx(app: web.Application) -> AsyncIterator[None]:
    guard = app[GUARD]
    # Added last, so the signalling tickets exist by now (app.py's _sessions_ctx).
    if TICKETS in app:
        cap_tickets(app[TICKETS], guard)
    lag = asyncio.create_task(guard.lag.run())
    try:
        yield
    finally:
        lag.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await lag


def setup(app: web.Application, *, clock: Callable[[], float] = time.monotonic) -> None:
    """Put ``app``'s limits in place: the admission middleware right after the problem
    middleware (so its refusals are problem+json, and come before any other middleware's
    work), the WebSocket caps on the signalling tickets, and the watch on slow readers.
    Call it once every other cleanup context is added. ``clock``: monotonic seconds for
    the token buckets."""
    config = app[CONFIG]
    metrics = app.get(METRICS)
    guard = Guard(config, clock, metrics.registry if metrics is not None else None)
    app[GUARD] = guard
    app.middlewares.insert(app.middlewares.index(problem_middleware) + 1, limits_middleware)
    app.on_response_prepare.append(socket_opened)
    app.cleanup_ctx.append(_guard_ctx)
    install_watch(app, config.send_timeout, lambda: guard.refused.labels("stalled_reader").inc())
