"""Typed application keys shared by the gateway's modules."""

from __future__ import annotations

from aiohttp import web

from ledger.log import Log

from .config import Config
from .observability import Metrics

__all__ = ["CONFIG", "LOG", "METRICS"]

CONFIG = web.AppKey("config", Config)
LOG = web.AppKey("log", Log)
METRICS = web.AppKey("metrics", Metrics)
