"""Events timed by an injected clock. No application state here: anything may import it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from ledger.events import Event, EventType

__all__ = ["stamped"]


def stamped(clock: Callable[[], float], kind: EventType, actor: str, **kw: Any) -> Event:
    """An event timed by an injected clock (epoch seconds, whole seconds as the gateway's
    token and proof checks use), so tests that move time see it in the ledger too."""
    at = dt.datetime.fromtimestamp(int(clock()), dt.UTC)
    return Event.now(kind, actor, clock=lambda: at, **kw)
