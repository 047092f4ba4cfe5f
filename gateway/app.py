"""``create_app(config)``: the aiohttp application, its typed keys and its resources."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ledger.atomic import create_exclusive
from ledger.events import Event, EventType
from ledger.log import Log
from ledger.pgstore import PGStore
from ledger.store import LogStore, SQLiteStore

from . import __version__, fhir, ledger_api, openapi, pages
from .appkeys import (
    AUDIT_INDEX,
    AUTHORITY,
    CLOCK,
    CONFIG,
    CONSENT_GUARD,
    CONSENTS,
    DATABASE,
    HUB,
    INVALIDATIONS,
    LIVE,
    LOG,
    METRICS,
    SESSIONS,
    TICKETS,
    TURN_SECRET,
    VITALS,
)
from .audit import http as audit_http
from .audit.index import EventIndex
from .auth import http as auth_http
from .auth.dpop import NonceSource, ReplayCache, Replays
from .auth.keys import KeyRing
from .auth.recovery import ASSERTION_LIFETIME, rebuild_issuance
from .auth.refusals import refusal_middleware, refusals_ctx
from .auth.store import IdentityStore
from .auth.tokens import Authority
from .config import Config
from .consent import http as consent_http
from .consent.guard import ConsentGuard
from .consent.store import ConsentStore
from .cosignatures import CosignatureStore
from .db import Database
from .deadlines import Deadlines
from .errors import ConfigError, Unavailable, problem_middleware, track_streams
from .federation.http import setup as federation_setup
from .incentives import http as incentives_http
from .invalidation import LocalInvalidations
from .ledger_keys import init_log_key
from .limits import setup as limits_setup
from .mqtt.app import mqtt_ctx
from .observability import Metrics, observe_middleware
from .recorder import event, record
from .sessions import http as sessions_http
from .sessions import turn
from .sessions.live import LiveAccess
from .sessions.signalling import Hub, LocalTickets, Tickets
from .sessions.store import SessionStore
from .shared import REDIS, RedisReplays, RedisTickets, fanout, key_prefix, redis_ctx
from .shared.drain import DRAIN, Drain, drain_middleware
from .shared.replay import replay_watch_ctx
from .supply import http as supply_http
from .vitals import http as vitals_http
from .vitals.batch import Limits
from .vitals.intake import Intake, Vitals
from .vitals.store import VitalsStore
from .vitals.stream import Streamer
from .witness.app import setup as witness_setup
from .witness.config import WitnessConfig
from .witnessing import COMMIT_SIGNAL, WITNESSING, CommitSignal, Witnessing

__all__ = ["CONFIG", "LOG", "METRICS", "create_app", "record"]


log = logging.getLogger("telegate.app")
GATEWAY_ACTOR = "gw:self"


def _open_log(config: Config, metrics: Metrics, signal: CommitSignal | None) -> Log:
    signer, created = init_log_key(config.key_dir, config.log_origin)
    if created:
        log.info("generated log key", extra={"fields": {"vkey": signer.vkey}})
    # One PostgreSQL log shared by every replica, or the embedded single-writer file.
    store: LogStore = (
        PGStore(config.database_url) if config.database_url else SQLiteStore(config.db_path)
    )

    def on_commit(n: int, _secs: float) -> None:
        metrics.commit_batch.observe(n)
        if signal is not None:
            signal()

    try:
        return Log(
            store,
            signer,
            max_batch=config.ledger_max_batch,
            max_wait=config.ledger_max_wait_ms / 1000,
            on_commit=on_commit,
        )
    except BaseException:
        store.close()
        raise


async def _ledger_ctx(app: web.Application) -> AsyncIterator[None]:
    config, metrics = app[CONFIG], app[METRICS]
    signal = None
    if config.witnesses:
        signal = app[COMMIT_SIGNAL] = CommitSignal(asyncio.get_running_loop())
    ledger = await asyncio.to_thread(_open_log, config, metrics, signal)
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


async def _witnessing_ctx(app: web.Application) -> AsyncIterator[None]:
    """Submit checkpoints to the configured witnesses (after the ledger opens, and stopped
    before it closes)."""
    config = app[CONFIG]
    if not config.witnesses:
        yield
        return
    store = CosignatureStore(await asyncio.to_thread(app[DATABASE].open, "cosignatures"))

    async def on_alarm(data: dict[str, object]) -> None:
        await record(app, event(app, EventType.WITNESS_ALARM, GATEWAY_ACTOR, data=data))

    witnessing = Witnessing(
        app[LOG],
        store,
        config.witnesses,
        quorum=config.quorum,
        rate=config.witness_rate,
        backoff_max=config.witness_backoff_max,
        metrics=app[METRICS],
        signal=app[COMMIT_SIGNAL],
        on_alarm=on_alarm,
    )
    try:
        await witnessing.start()
        app[WITNESSING] = witnessing
        yield
    finally:
        await witnessing.close()
        await asyncio.to_thread(store.close)


def _open_authority(
    config: Config, clock: Callable[[], float], ledger: Log, db: Database, replay: Replays
) -> Authority:
    now = int(clock())
    store = IdentityStore(db.open("identity"))
    horizon = config.token_lifetime + config.clock_skew + ASSERTION_LIFETIME + 600
    rebuild_issuance(store, ledger, now, horizon)
    keys = KeyRing.open(
        config.key_dir / "signing",
        now,
        alg=config.signing_alg,
        keep_seconds=config.token_lifetime + config.clock_skew,
    )
    nonces = None
    if config.dpop_require_nonce:
        nonces = NonceSource(_secret(config.key_dir / "dpop-nonce.key"))
    return Authority(
        keys=keys,
        store=store,
        clock=clock,
        lifetime=config.token_lifetime,
        skew=config.clock_skew,
        dpop_window=config.dpop_window,
        replay=replay,
        nonces=nonces,
    )


def _secret(path: Path, make: Callable[[], bytes] = lambda: secrets.token_bytes(32)) -> bytes:
    """A secret kept in a 0600 file, created with ``make()`` on first use.

    Replicas sharing the key dir may start at once: the secret is written whole under a
    temporary name, then linked into place, which fails if another process got there
    first. So the file appears whole or not at all, and every replica uses the first one
    made; creating it in place let a replica read it empty (tests/replicas/
    test_shared_key_dir.py). Raises ConfigError for an empty file."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        create_exclusive(path, make(), 0o600)  # fsynced, linked, its directory fsynced
    secret = path.read_bytes()
    if not secret.strip():
        raise ConfigError(f"the secret file {path} is empty: restore it from a backup")
    return secret


def _turn_secret(path: Path) -> bytes:
    # coturn's static-auth-secret is a string used as the HMAC key as is: keep it printable
    # (hex) so the same file configures both.
    return _secret(path, lambda: secrets.token_hex(32).encode() + b"\n").strip()


async def _identity_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    # Several replicas spend each DPoP proof once between them (Redis); one process alone
    # keeps the spent ids in memory.
    replay: Replays = (
        RedisReplays(app[REDIS], key_prefix(config.log_origin), config.clock_skew)
        if REDIS in app
        else ReplayCache(config.dpop_replay_max)
    )
    authority = await asyncio.to_thread(
        _open_authority, config, app[CLOCK], app[LOG], app[DATABASE], replay
    )
    app[AUTHORITY] = authority
    try:
        yield
    finally:
        await asyncio.to_thread(authority.store.close)


async def _audit_ctx(app: web.Application) -> AsyncIterator[None]:
    index = await asyncio.to_thread(EventIndex, app[CONFIG].data_dir / "audit-index.db")
    app[AUDIT_INDEX] = index
    ledger = app[LOG]
    # Start indexing now, on the index's own thread, so the first audit query does not pay
    # for a whole log; a failure here surfaces (503) on that query instead.
    warm = asyncio.ensure_future(index.run(index.catch_up, ledger.store, ledger.size))
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            await warm
        await asyncio.to_thread(index.close)


async def _database_ctx(app: web.Application) -> AsyncIterator[None]:
    """The stores' database (gateway.db). A shared PostgreSQL schema is checked before
    anything else opens: a replica of another release refuses to start (SchemaMismatch)."""
    db = Database.from_config(app[CONFIG])
    try:
        if not db.embedded:
            await asyncio.to_thread(db.check)
        log.info("database", extra={"fields": {"where": db.describe()}})
        app[DATABASE] = db
        yield
    finally:
        await asyncio.to_thread(db.close)


async def _consent_ctx(app: web.Application) -> AsyncIterator[None]:
    engine = await asyncio.to_thread(app[DATABASE].open, "consent")
    store = ConsentStore(engine)
    app[CONSENTS] = store
    app[TURN_SECRET] = await asyncio.to_thread(_turn_secret, app[CONFIG].key_dir / "turn.secret")
    app[CONSENT_GUARD] = ConsentGuard(store, app[CLOCK], lambda ev: record(app, ev))
    try:
        yield
    finally:
        await asyncio.to_thread(store.close)


async def _sessions_ctx(app: web.Application) -> AsyncIterator[None]:
    store = SessionStore(await asyncio.to_thread(app[DATABASE].open, "sessions"))
    app[SESSIONS] = store
    tickets: Tickets = (
        RedisTickets(app[REDIS], key_prefix(app[CONFIG].log_origin), app[CLOCK])
        if REDIS in app
        else LocalTickets(app[CLOCK])
    )
    app[TICKETS] = tickets
    if REDIS not in app:
        app[HUB] = Hub()  # with redis_url, fanout.hub_ctx's RedisHub (next)
    try:
        yield
    finally:
        await asyncio.to_thread(store.close)


async def _vitals_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    master = await asyncio.to_thread(_secret, config.key_dir / "vitals-master.key")
    engine = await asyncio.to_thread(app[DATABASE].open, "vitals")
    store = VitalsStore(engine, master, app[CLOCK])
    limits = Limits(config.vitals_max_readings, config.vitals_max_age, config.vitals_future_skew)
    intake = Intake(store, app[LOG], lambda ev: record(app, ev), app[CLOCK], limits)
    settled = await intake.reconcile()  # batches or erasures a crash left half-done
    if settled:
        log.warning("settled pending vitals records", extra={"fields": {"count": settled}})
    intake.start_sweeping()
    deadlines = Deadlines(app[CLOCK])
    streamer = Streamer(
        app[HUB],
        app[CONSENT_GUARD],
        lambda sid: sessions_http.current_session(app, sid),
        deadlines,
        relay_key=master if REDIS in app else None,  # readings sealed across replicas
    )
    app[VITALS] = Vitals(intake, streamer)
    live = app[LIVE] = LiveAccess(
        hub=app[HUB],
        streamer=streamer,
        guard=app[CONSENT_GUARD],
        session=lambda sid: sessions_http.current_session(app, sid),
        end_call=lambda sid, why: sessions_http.end_call(app, sid, why),
        cancel_unfounded=lambda pat, grantee: sessions_http.cancel_unfounded(app, pat, grantee),
        append=lambda ev: record(app, ev),
        deadlines=deadlines,
    )
    stop = app[INVALIDATIONS].subscribe(live.hear)
    try:
        yield
    finally:
        stop()
        await deadlines.close()
        await intake.close()


async def _close_websockets(app: web.Application) -> None:
    # Live signalling sockets are closed cleanly (1001) before the resources go.
    if HUB in app:
        await app[HUB].close_all()


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the ledger writer is running and can take appends. With witnesses, also
    how far witnessing is behind: a log whose witnesses lag still serves (it is ready)."""
    ledger = request.app.get(LOG)
    if ledger is None or not ledger.healthy:
        raise Unavailable("the ledger is not accepting appends")
    if (drain := request.app.get(DRAIN)) is not None and drain.draining:
        raise Unavailable("shutting down", headers={"Retry-After": "1"})
    body: dict[str, object] = {"status": "ready", "ledger_size": ledger.size}
    if (witnessing := request.app.get(WITNESSING)) is not None:
        body["witnessing"] = witnessing.status()
    return web.json_response(body)


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    resp = web.Response(body=body)
    resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return resp


def create_app(config: Config, *, clock: Callable[[], float] = time.time) -> web.Application:
    """Build the gateway. Resources (ledger, keys) open on startup and close on cleanup.

    ``clock`` gives wall-clock seconds to everything that checks a time (tokens, proofs,
    invites); tests pass a fake one instead of sleeping.
    """
    m = Metrics.create()
    # drain_middleware: in-flight requests counted, new ones refused while a SIGTERM drains
    # (gateway/shared/drain.py).
    middlewares = [observe_middleware(m), problem_middleware, drain_middleware, refusal_middleware]
    # /fhir answers errors as OperationOutcome: outside problem_middleware, it rewrites them.
    middlewares.insert(1, fhir.fhir_outcome_middleware)
    if config.redis_url is not None:
        # The shared replay check is awaited before the handler (auth/http.py).
        middlewares.append(auth_http.shared_auth_middleware)
    app = web.Application(client_max_size=config.max_body_size, middlewares=middlewares)
    track_streams(app)  # an error after a response began cuts it (gateway/errors.py)
    app[CONFIG] = config
    app[METRICS] = m
    app[CLOCK] = clock
    # Several replicas (issue 15, gateway/shared/fanout.py): with redis_url, invalidations
    # travel over Redis pub/sub; without, in process (one gateway process).
    shared = fanout.redis_url(app) is not None
    if not shared:
        app[INVALIDATIONS] = LocalInvalidations()
    app.cleanup_ctx.append(redis_ctx)  # first: whatever is shared opens on it
    app.cleanup_ctx.append(_database_ctx)
    # A heartbeat row per replica on PostgreSQL: a second replica without Redis is refused.
    app.cleanup_ctx.append(fanout.heartbeat_ctx)
    app.cleanup_ctx.append(_ledger_ctx)
    # Right after the ledger: anonymous refusals are flushed to it before it closes.
    app.cleanup_ctx.append(refusals_ctx)
    app.cleanup_ctx.append(_witnessing_ctx)
    app.cleanup_ctx.append(_identity_ctx)
    if shared:
        # The data-loss marker of the Redis replay cache, watched (gateway/shared/replay.py).
        app.cleanup_ctx.append(replay_watch_ctx)
    app.cleanup_ctx.append(_audit_ctx)
    app.cleanup_ctx.append(_consent_ctx)
    app.cleanup_ctx.append(_sessions_ctx)
    app.cleanup_ctx.append(sessions_http.refresh_ctx)  # the live calls' state, read together
    if shared:
        app.cleanup_ctx.append(fanout.hub_ctx)  # calls and live vitals across replicas
        app.cleanup_ctx.append(fanout.invalidations_ctx)
    app.cleanup_ctx.append(_vitals_ctx)
    if shared:
        app.cleanup_ctx.append(fanout.recheck_ctx)
        app.cleanup_ctx.append(fanout.rates_ctx)  # the request limits, shared
    # Devices' batches from an MQTT broker (gateway/mqtt), with mqtt_url: after the vitals
    # intake opens, stopped before it closes.
    app.cleanup_ctx.append(mqtt_ctx)
    app.on_shutdown.append(_close_websockets)
    app[DRAIN] = Drain()
    app[DRAIN].export(m.registry)
    app[DRAIN].hooks.append(lambda: _close_websockets(app))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    ledger_api.setup(app)
    auth_http.setup(app)
    audit_http.setup(app)
    consent_http.setup(app)
    turn.setup(app)
    sessions_http.setup(app)
    vitals_http.setup(app)
    supply_http.setup(app)  # custody events (docs/supply.md); opens the supply store
    fhir.setup(app)
    incentives_http.setup(app)  # its store opens after the consent and vitals stores
    openapi.setup(app)
    pages.setup(app)
    if config.trust_file:
        # Peers' providers (docs/federation.md): the token exchange and RFC 8707 resources.
        federation_setup(app, config.trust_file)
    if config.witness_config:
        # A witness for peers' logs in this process (docs/witness.md): C2SP tlog-witness
        # routes under /witness, plain text, outside /openapi.json like the pages.
        witness = WitnessConfig.load(config.witness_config)
        if witness.database_url is None and config.database_url is not None:
            # Every replica hosts this witness, with one key: its state must be one too, or
            # two replicas could each cosign another root for one size (docs/witness.md).
            witness = dataclasses.replace(witness, database_url=config.database_url)
        witness_setup(app, witness, prefix="/witness", clock=clock)
    limits_setup(app)  # last: admission after problem_middleware, socket caps (gateway/limits)
    return app
