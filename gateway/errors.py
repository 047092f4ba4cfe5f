"""One error root for the gateway, and the middleware that renders every error as
RFC 9457 problem+json. Handlers raise; only this module decides what the client sees."""

from __future__ import annotations

import logging
import sqlite3
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ledger.errors import (
    EntryTooLarge,
    InvalidCheckpoint,
    InvalidNote,
    InvalidProof,
    InvalidTile,
    LedgerError,
    LedgerUnavailable,
)
from ledger.errors import NotFound as LedgerNotFound
from ledger.store import sqlite_transient

__all__ = [
    "OVERLOADED_TYPE",
    "BadRequest",
    "ConfigError",
    "GatewayError",
    "NotFound",
    "Overloaded",
    "problem_for",
    "problem_middleware",
    "problem_response",
    "retryable",
    "track_streams",
]

PROBLEM_BASE = "https://telegate.dev/problems/"
log = logging.getLogger("telegate.errors")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class GatewayError(Exception):
    """Root of every gateway error. ``slug`` names the problem type."""

    status = 500
    slug = "internal-error"
    title = "Internal server error"
    #: Set for an error whose detail is for the operator (it names a host, a database or a
    #: driver's message): the log gets the detail, the client this sentence instead.
    public_detail: str | None = None

    def __init__(
        self, detail: str | None = None, *, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail
        self.extra = extra
        self.headers = headers or {}


class ConfigError(GatewayError):
    slug = "invalid-config"
    title = "Invalid configuration"


class BadRequest(GatewayError):
    status = 400
    slug = "bad-request"
    title = "Malformed request"


class NotFound(GatewayError):
    status = 404
    slug = "not-found"
    title = "Not found"


class Conflict(GatewayError):
    status = 409
    slug = "conflict"
    title = "Conflicts with the current state"


class UnsupportedMediaType(GatewayError):
    status = 415
    slug = "unsupported-media-type"
    title = "Unsupported content type"


class PayloadTooLarge(GatewayError):
    status = 413
    slug = "payload-too-large"
    title = "Request body too large"


class Unavailable(GatewayError):
    status = 503
    slug = "unavailable"
    title = "Service unavailable"


class Overloaded(Unavailable):
    """Deliberate load shedding (gateway/limits): the gateway is healthy but at capacity and
    refuses this request at once rather than queue it. Its own problem type, so that a client
    or a benchmark can tell shedding from an outage (both 503 with ``Retry-After``)."""

    slug = "overloaded"
    title = "Overloaded: request shed"


#: The problem type of :class:`Overloaded`, for clients and benchmarks that count shedding.
OVERLOADED_TYPE = PROBLEM_BASE + Overloaded.slug


def problem_response(
    status: int, slug: str, title: str, detail: str | None = None, **extra: Any
) -> web.Response:
    body: dict[str, Any] = {"type": PROBLEM_BASE + slug, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extra)
    return web.json_response(body, status=status, content_type="application/problem+json")


_LEDGER_MAP: tuple[tuple[type[LedgerError], type[GatewayError]], ...] = (
    (LedgerNotFound, NotFound),
    (EntryTooLarge, PayloadTooLarge),
    (InvalidTile, BadRequest),
    (InvalidProof, BadRequest),
    (InvalidNote, BadRequest),
    (InvalidCheckpoint, BadRequest),
)

_HTTP_SLUGS = {
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    413: ("payload-too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported content type"),
    417: ("expectation-failed", "Expectation failed"),
}


#: The response of this request whose headers are (being) sent: set by ``track_streams``.
_STARTED = web.RequestKey("response_started", web.StreamResponse)


async def _started(request: web.Request, response: web.StreamResponse) -> None:
    request[_STARTED] = response


def track_streams(app: web.Application) -> None:
    """Let :func:`problem_middleware` know when a handler's response has begun (a streamed
    export, a WebSocket, a file): an error after that cannot become a problem+json."""
    app.on_response_prepare.append(_started)


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render GatewayError, ledger errors and aiohttp's own HTTP errors as problem+json; cut
    the connection of a response that had already begun."""
    try:
        return await handler(request)
    except Exception as e:
        started: web.StreamResponse | None = request.get(_STARTED)
        if started is None:
            if isinstance(e, web.RequestPayloadError):
                return _broken_body(request, e)
            return _problem(e)
        if isinstance(started, web.WebSocketResponse) and not started.closed:
            # A WebSocket is told, with 1011 (RFC 6455 7.4.1: an unexpected condition),
            # rather than cut: its page sees why, and reconnects.
            route = request.match_info.route.resource
            fields = {"route": route.canonical if route else "", "error": type(e).__name__}
            log.error("failed on an open WebSocket", extra={"fields": fields})
            await started.close(code=1011, message=b"internal error")
            return started
        # The status line, headers and maybe part of the body are sent: no problem+json can
        # follow. Cut the connection before the final chunk, so the client sees a failed
        # transfer, never a complete-looking one, and is not left waiting for the rest.
        # Logged by route and type only: the message may carry what was being streamed.
        route = request.match_info.route.resource
        fields = {
            "route": route.canonical if route is not None else "",
            "error": type(e).__name__,
        }
        log.error("failed after the response began", extra={"fields": fields})
        if request.transport is not None:
            request.transport.close()
        return started


def _broken_body(request: web.Request, e: web.RequestPayloadError) -> web.StreamResponse:
    """A body aiohttp could not decode (a bad chunk size, a Content-Encoding that does not
    decode): 400, and the connection closed after it, since where the next request would
    begin is unknown. The body is marked read to its end, or aiohttp, draining what is left
    of it after the answer, meets the error again and logs it as a crash."""
    log.warning("malformed request body", extra={"fields": {"error": type(e).__name__}})
    request.content.feed_eof()
    resp = problem_response(400, "malformed-body", "Malformed request body")
    resp.force_close()
    return resp


def _store_transient(e: BaseException) -> bool:
    """True for an embedded store's transient SQLite error (disk full, locked, I/O), also
    when it is hidden behind the error of a cleanup that followed it: SQLite itself rolls
    back on SQLITE_FULL and SQLITE_IOERR (https://sqlite.org/lang_transaction.html, "Response
    To Errors Within A Transaction"), so a store's unconditional ``ROLLBACK`` then fails with
    "cannot rollback - no transaction is active", raised while handling the real error."""
    if sqlite_transient(e):
        return True
    return (
        isinstance(e, sqlite3.Error)
        and e.__context__ is not None
        and sqlite_transient(e.__context__)
    )


#: Seconds a client is told to wait after a store or ledger outage (``Retry-After``).
OUTAGE_RETRY = 5


def retryable(e: BaseException) -> bool:
    """Whether ``e`` is an outage the client may retry: what :func:`problem_middleware`
    answers 503 with ``Retry-After`` (a GatewayError of status 503: a database, Redis or
    shedding; the ledger taking no appends; an embedded store's transient SQLite error). For
    the paths with no HTTP answer to give, a WebSocket's messages (gateway/sessions)."""
    if isinstance(e, GatewayError):
        return e.status == 503
    return isinstance(e, LedgerUnavailable) or _store_transient(e) or _database_down(e)


def _database_down(e: BaseException) -> bool:
    """A database error that says it cannot be used now (gateway.db.errors.unreachable)
    which reached the middleware unwrapped: a query made outside ``reaching``."""
    # Only an error SQLAlchemy raised can be one, and SQLAlchemy is then loaded: this module
    # must not load it (``gateway.config`` imports it, and every CLI command would pay).
    exc = sys.modules.get("sqlalchemy.exc")
    if exc is None or not isinstance(e, exc.SQLAlchemyError):
        return False
    from .db.errors import unreachable  # gateway.db imports this module

    return unreachable(e)


def problem_for(e: Exception) -> web.StreamResponse:
    """``e`` as :func:`problem_middleware` answers it, for the answers given outside it
    (gateway.limits.heads: what aiohttp raises before the middlewares run)."""
    return _problem(e)


def _problem(e: Exception) -> web.StreamResponse:
    """``e`` as problem+json; re-raised if it is an HTTP answer below 400 (a redirect)."""
    if isinstance(e, GatewayError):
        detail = e.detail
        if e.public_detail is not None:
            log.error(e.title, extra={"fields": {"error": e.detail}})
            detail = e.public_detail
        resp = problem_response(e.status, e.slug, e.title, detail, **e.extra)
        resp.headers.update(e.headers)
        if e.status == 401 and "WWW-Authenticate" not in resp.headers:
            # RFC 9449 7.1: tell the client which scheme and algorithms to use.
            resp.headers["WWW-Authenticate"] = 'DPoP algs="EdDSA ES256"'
        return resp
    if isinstance(e, LedgerUnavailable):
        # Devices and clients retry: say so, and when (RFC 9110 15.6.4, 10.2.3).
        log.error("ledger unavailable", extra={"fields": {"error": str(e)}})
        resp = problem_response(
            503, Unavailable.slug, Unavailable.title, "the ledger takes no appends now; retry later"
        )
        resp.headers["Retry-After"] = str(OUTAGE_RETRY)
        return resp
    if _store_transient(e):
        # An embedded store's SQLite file could not be written now: its file system is full,
        # another process holds its lock past the busy timeout, or a write failed. SQLite
        # rolled the transaction back, so nothing was kept and the client may retry; the
        # same answer as the database layer's DatabaseUnavailable (gateway/db/errors.py).
        why = e if sqlite_transient(e) else e.__context__
        log.error("store unavailable", extra={"fields": {"error": str(why)}})
        resp = problem_response(
            503, Unavailable.slug, Unavailable.title, "a store takes no writes now; retry later"
        )
        resp.headers["Retry-After"] = str(OUTAGE_RETRY)
        return resp
    if _database_down(e):
        # Every query is meant to go through gateway.db's ``reaching``, which makes this a
        # DatabaseUnavailable; one that did not is still a 503, never a 500.
        log.error("database unavailable", extra={"fields": {"error": type(e).__name__}})
        resp = problem_response(
            503, Unavailable.slug, Unavailable.title, "the database cannot be used now; retry later"
        )
        resp.headers["Retry-After"] = "1"
        return resp
    if isinstance(e, LedgerError):
        for src, dst in _LEDGER_MAP:
            if isinstance(e, src):
                return problem_response(dst.status, dst.slug, dst.title, str(e))
        log.exception("ledger error")
        return problem_response(500, "internal-error", "Internal server error")
    if isinstance(e, web.HTTPException):
        if e.status < 400:
            raise e
        slug, title = _HTTP_SLUGS.get(e.status, ("http-error", e.reason))
        resp = problem_response(e.status, slug, title)
        if e.status == 405 and "Allow" in e.headers:
            resp.headers["Allow"] = e.headers["Allow"]
        return resp
    # Never leak internals (or PHI in an exception message) to the client.
    log.exception("unhandled error")
    return problem_response(500, "internal-error", "Internal server error")
