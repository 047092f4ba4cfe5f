"""Typed application keys of federation, shared by its HTTP modules."""

from __future__ import annotations

from aiohttp import web

from .exchange import Federation
from .trust import TrustList

__all__ = ["FEDERATION", "TRUST"]

FEDERATION = web.AppKey("federation", Federation)
TRUST = web.AppKey("trust_list", TrustList)
