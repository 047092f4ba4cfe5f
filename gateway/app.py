"""``create_app(config)``: the aiohttp application, its typed keys and its resources."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ledger.events import Event, EventType
from ledger.log import Log, Receipt
from ledger.store import SQLiteStore

from . import __version__, ledger_api, openapi
from .appkeys import CONFIG, LOG, METRICS
from .config import Config
from .errors import Unavailable, problem_middleware
from .ledger_keys import init_log_key
from .observability import Metrics, observe_middleware

__all__ = ["CONFIG", "LOG", "METRICS", "create_app", "record"]


log = logging.getLogger("telegate.app")
GATEWAY_ACTOR = "gw:self"


async def record(app: web.Application, event: Event) -> Receipt:
    """Append an event to the ledger and wait for its durable, signed receipt."""
    t0 = time.perf_counter()
    receipt = await app[LOG].append(event)
    app[METRICS].append_latency.observe(time.perf_counter() - t0)
    return receipt


def _open_log(config: Config, metrics: Metrics) -> Log:
    signer, created = init_log_key(config.key_dir, config.log_origin)
    if created:
        log.info("generated log key", extra={"fields": {"vkey": signer.vkey}})
    store = SQLiteStore(config.db_path)
    try:
        return Log(
            store,
            signer,
            max_batch=config.ledger_max_batch,
            max_wait=config.ledger_max_wait_ms / 1000,
            on_commit=lambda n, _secs: metrics.commit_batch.observe(n),
        )
    except BaseException:
        store.close()
        raise


async def _ledger_ctx(app: web.Application) -> AsyncIterator[None]:
    config, metrics = app[CONFIG], app[METRICS]
    ledger = await asyncio.to_thread(_open_log, config, metrics)
    ledger.start()
    app[LOG] = ledger
    metrics.ledger_size.set_function(lambda: ledger.size)
    data = {
        "version": __version__,
        "config_sha256": config.digest(),
        "log_vkey": ledger.signer.vkey,
    }
    await record(app, Event.now(EventType.GATEWAY_STARTED, GATEWAY_ACTOR, data=data))
    log.info("ledger open", extra={"fields": {"size": ledger.size, "origin": ledger.origin}})
    try:
        yield
    finally:
        try:
            await record(app, Event.now(EventType.GATEWAY_STOPPED, GATEWAY_ACTOR, data=data))
        finally:
            await asyncio.to_thread(ledger.close)


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the ledger writer is running and can take appends."""
    ledger = request.app.get(LOG)
    if ledger is None or not ledger.healthy:
        raise Unavailable("the ledger is not accepting appends")
    return web.json_response({"status": "ready", "ledger_size": ledger.size})


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    resp = web.Response(body=body)
    resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return resp


def create_app(config: Config) -> web.Application:
    """Build the gateway. Resources (ledger, keys) open on startup and close on cleanup."""
    m = Metrics.create()
    app = web.Application(
        client_max_size=config.max_body_size,
        middlewares=[observe_middleware(m), problem_middleware],
    )
    app[CONFIG] = config
    app[METRICS] = m
    app.cleanup_ctx.append(_ledger_ctx)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    ledger_api.setup(app)
    openapi.setup(app)
    return app
