"""Writing events to the ledger from request handlers."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from ledger.events import Event, EventType
from ledger.log import Receipt

from .appkeys import CLOCK, LOG, METRICS
from .clock import stamped

__all__ = ["event", "record", "stamped"]


def event(app: web.Application, kind: EventType, actor: str, **kw: Any) -> Event:
    """An event timed by the application's clock."""
    return stamped(app[CLOCK], kind, actor, **kw)


async def record(app: web.Application, event: Event | bytes) -> Receipt:
    """Append an event (or its encoded bytes) to the ledger and wait for its durable,
    signed receipt."""
    t0 = time.perf_counter()
    receipt = await app[LOG].append(event)
    app[METRICS].append_latency.observe(time.perf_counter() - t0)
    return receipt
