"""The witness over HTTP: C2SP tlog-witness ``add-checkpoint`` and the monitoring endpoint.

``create_app(config)`` is the standalone ``telegate witness serve``; ``setup(app, config)``
adds the protocol routes (under an optional prefix) to any aiohttp application, so a
gateway can host a witness for a peer with no extra process. Every answer is plain text as
the specification gives it, never problem+json: witness clients parse status and body only.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from ledger.witness import (
    ForkDetected,
    Witness,
    WitnessRefusal,
    parse_add_checkpoint,
)

from .config import WitnessConfig
from .keys import init_witness_key
from .store import WitnessDatabase, WitnessStore

__all__ = ["WITNESS", "WitnessService", "create_app", "open_witness", "setup"]

log = logging.getLogger("telegate.witness")

_TEXT = "text/plain"


class WitnessService:
    """The pure :class:`Witness` joined to its store and clock. Methods block (the database)."""

    def __init__(
        self,
        witness: Witness,
        store: WitnessStore,
        *,
        clock: Callable[[], float] = time.time,
        max_body_size: int,
        database: WitnessDatabase | None = None,
    ) -> None:
        """``database``, if given, is closed with the service."""
        self.witness = witness
        self.store = store
        self.database = database
        self.clock = clock
        self.max_body_size = max_body_size
        # tlog-witness monitoring: logs are addressed by the lowercase hex SHA-256 of origin.
        self._by_hash = {hashlib.sha256(o.encode()).hexdigest(): o for o in witness.logs}

    def add_checkpoint(self, body: bytes) -> bytes:
        """Decide one add-checkpoint body; return the cosignature line(s) once persisted.

        Raises a WitnessRefusal carrying the HTTP status to answer.
        """
        req = parse_add_checkpoint(body, max_size=self.max_body_size)
        origin = req.checkpoint.origin
        state = self.store.latest(origin)
        try:
            accepted = self.witness.check(req, state)
        except ForkDetected as e:
            cp = req.checkpoint
            log.error("log %s forked: a second root for size %d was refused", origin, cp.size)
            self.store.record_fork(origin, cp.size, cp.root, int(self.clock()), e.evidence)
            raise
        cosigned = self.witness.cosign(accepted, state, int(self.clock()))
        # Compare-and-swap on the state checked above: a concurrent request that advanced
        # the log first turns this one into a 409, never a rollback.
        self.store.advance(origin, state, cosigned.state, cosigned.note)
        log.info("cosigned %s at size %d", origin, cosigned.state.size)
        return cosigned.lines

    def checkpoint(self, origin_hash: str) -> bytes | None:
        origin = self._by_hash.get(origin_hash)
        return None if origin is None else self.store.checkpoint(origin)

    def close(self) -> None:
        self.store.close()
        if self.database is not None:
            self.database.close()


def open_witness(
    config: WitnessConfig, *, clock: Callable[[], float] = time.time
) -> WitnessService:
    """Load (or create) the key and open the store: the embedded file is migrated (an old
    one adopted), a PostgreSQL schema only checked. Blocking. Raises ConfigError,
    SchemaMismatch, DatabaseUnavailable."""
    signer, _ = init_witness_key(config.key_path, config.name)
    witness = Witness(signer, config.witnessed_logs())
    db = WitnessDatabase(config)
    try:
        store = WitnessStore(db.open("witness"))
    except BaseException:
        db.close()
        raise
    return WitnessService(
        witness, store, clock=clock, max_body_size=config.max_body_size, database=db
    )


WITNESS = web.AppKey("witness", WitnessService)


def _text(status: int, body: bytes, content_type: str = _TEXT) -> web.Response:
    return web.Response(status=status, body=body, content_type=content_type, charset="utf-8")


async def _read_bounded(request: web.Request, limit: int) -> bytes | None:
    """The body, or None if it exceeds ``limit`` (checked as it streams, not after)."""
    if request.content_length is not None and request.content_length > limit:
        return None
    data = bytearray()
    while chunk := await request.content.read(limit + 1 - len(data)):
        data += chunk
        if len(data) > limit:
            return None
    return bytes(data)


async def add_checkpoint(request: web.Request) -> web.Response:
    service = request.app[WITNESS]
    body = await _read_bounded(request, service.max_body_size)
    if body is None:
        return _text(413, f"request body exceeds {service.max_body_size} bytes\n".encode())
    try:
        lines = await asyncio.to_thread(service.add_checkpoint, body)
    except WitnessRefusal as e:
        log.info("add-checkpoint refused (%d): %s", e.status, e)
        return _text(e.status, e.body(), e.content_type)
    return _text(200, lines)


async def monitor_checkpoint(request: web.Request) -> web.Response:
    service = request.app[WITNESS]
    note = await asyncio.to_thread(service.checkpoint, request.match_info["origin_hash"])
    if note is None:
        return _text(404, b"no checkpoint cosigned for this log\n")
    resp = _text(200, note)
    resp.headers["Cache-Control"] = "no-cache"
    return resp


def setup(
    app: web.Application,
    config: WitnessConfig,
    *,
    prefix: str = "",
    clock: Callable[[], float] = time.time,
) -> None:
    """Serve a witness from ``app`` at ``<prefix>/add-checkpoint`` (submission) and
    ``<prefix>/<origin hash>/checkpoint`` (monitoring). The key and store open on startup
    and close on cleanup, in ``app.cleanup_ctx``."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        service = await asyncio.to_thread(open_witness, config, clock=clock)
        app[WITNESS] = service
        try:
            yield
        finally:
            await asyncio.to_thread(service.close)

    app.cleanup_ctx.append(ctx)
    app.router.add_post(f"{prefix}/add-checkpoint", add_checkpoint)
    app.router.add_get(f"{prefix}/{{origin_hash:[0-9a-f]{{64}}}}/checkpoint", monitor_checkpoint)


async def index(request: web.Request) -> web.Response:
    service = request.app[WITNESS]
    logs = "".join(f"log {origin}\n" for origin in sorted(service.witness.logs))
    return _text(200, f"telegate witness\nvkey {service.witness.vkey}\n{logs}".encode())


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def create_app(config: WitnessConfig, *, clock: Callable[[], float] = time.time) -> web.Application:
    """The standalone witness: the protocol routes plus ``GET /`` and ``GET /healthz``."""
    app = web.Application(client_max_size=config.max_body_size)
    setup(app, config, clock=clock)
    app.router.add_get("/", index)
    app.router.add_get("/healthz", healthz)
    return app
