"""Writing events to the ledger from request handlers."""

from __future__ import annotations

import time

from aiohttp import web

from ledger.events import Event
from ledger.log import Receipt

from .appkeys import LOG, METRICS

__all__ = ["record"]


async def record(app: web.Application, event: Event) -> Receipt:
    """Append an event to the ledger and wait for its durable, signed receipt."""
    t0 = time.perf_counter()
    receipt = await app[LOG].append(event)
    app[METRICS].append_latency.observe(time.perf_counter() - t0)
    return receipt
