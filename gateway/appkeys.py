"""Typed application keys shared by the gateway's modules."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from ledger.log import Log

from .audit.index import EventIndex
from .auth.tokens import Authority, Principal
from .config import Config
from .consent.guard import ConsentGuard
from .consent.store import ConsentStore
from .db import Database
from .invalidation import Invalidations
from .observability import Metrics
from .sessions.live import LiveAccess
from .sessions.signalling import Hub, Tickets
from .sessions.store import SessionStore
from .vitals.intake import Vitals

__all__ = [
    "AUDIT_INDEX",
    "AUTHORITY",
    "CLOCK",
    "CONFIG",
    "CONSENTS",
    "CONSENT_GUARD",
    "DATABASE",
    "HUB",
    "INVALIDATIONS",
    "LIVE",
    "LOG",
    "METRICS",
    "PRINCIPAL",
    "SESSIONS",
    "TICKETS",
    "TURN_SECRET",
    "VITALS",
]

Clock = Callable[[], float]

CONFIG = web.AppKey("config", Config)
LOG = web.AppKey("log", Log)
METRICS = web.AppKey("metrics", Metrics)
AUTHORITY = web.AppKey("authority", Authority)
AUDIT_INDEX = web.AppKey("audit_index", EventIndex)
#: The stores' database layer (gateway.db): engines by store, SQLite files or PostgreSQL.
DATABASE = web.AppKey("database", Database)
CONSENTS = web.AppKey("consents", ConsentStore)
SESSIONS = web.AppKey("sessions", SessionStore)
TICKETS: web.AppKey[Tickets] = web.AppKey("tickets")
HUB = web.AppKey("hub", Hub)
#: Where revocations are published, so that live access that depended on them ends.
INVALIDATIONS: web.AppKey[Invalidations] = web.AppKey("invalidations")
#: Ends live sockets and streams when what allowed them ends.
LIVE = web.AppKey("live", LiveAccess)
#: coturn's static-auth-secret, from <data_dir>/keys/turn.secret.
TURN_SECRET = web.AppKey("turn_secret", bytes)
CONSENT_GUARD = web.AppKey("consent_guard", ConsentGuard)
VITALS = web.AppKey("vitals", Vitals)
#: Wall-clock seconds; injected so tests move time instead of sleeping.
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
#: The authenticated caller of the current request, once known.
PRINCIPAL = web.RequestKey("principal", Principal)
