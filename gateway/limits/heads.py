"""aiohttp's own answers as problem+json: a request head its parser refuses (a request line
or a header field over the limits of :func:`gateway.limits.server_args`, too many fields,
bytes that are not HTTP) never reaches the application, so the problem middleware cannot
answer it. aiohttp answers those in ``RequestHandler.handle_error``, in plain text that
echoes 100 bytes of the offending line, and logs a traceback at ERROR for each.

aiohttp has no hook for that answer (aio-libs/aiohttp#3287): :class:`Runner` is an
``AppRunner`` whose server builds :class:`ProblemRequestHandler`, which answers such a head
with an RFC 9457 problem (414 for a request line over the limit, 431 for header fields,
400 for anything else malformed), echoes nothing, and logs one line without a traceback,
at most once a second (a client can send a malformed head per connection as fast as it
likes)."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong, PayloadEncodingError
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from ..errors import problem_for, problem_response

__all__ = ["ProblemRequestHandler", "ProblemServer", "Runner", "head_problem"]

log = logging.getLogger("telegate.limits")

#: How aiohttp's pure-Python parser quotes an overlong request line: the whole line, from
#: its method ("GET /..."; a header line is quoted "Name: value").
_PY_REQUEST_LINE = re.compile(rb"^[A-Z]+ (?:/|\*|[A-Za-z][A-Za-z0-9+.\-]*://)")

#: (status, slug, title) by what was wrong with the head.
URI_TOO_LONG = (414, "uri-too-long", "Request line too long")
HEADERS_TOO_LARGE = (431, "header-fields-too-large", "Request header fields too large")
MALFORMED_HEAD = (400, "malformed-request", "Malformed request")
#: A chunk size or a Content-Length the parser cannot read (as gateway.errors answers a
#: body that does not decode).
MALFORMED_BODY = (400, "malformed-body", "Malformed request body")


def head_problem(exc: BaseException) -> tuple[int, str, str]:
    """(status, problem slug, title) for the parser's refusal ``exc`` of a request head."""
    if isinstance(exc, LineTooLong):
        quoted = exc.args[0] if exc.args else b""
        # aiohttp's C parser gathers the request target in a bytearray and quotes it so; a
        # header's name or value it quotes as bytes. The pure-Python parser quotes lines as
        # bytes: the request line from its method on.
        if isinstance(quoted, bytearray) or (
            isinstance(quoted, bytes) and _PY_REQUEST_LINE.match(quoted)
        ):
            return URI_TOO_LONG
        return HEADERS_TOO_LARGE
    if isinstance(exc, PayloadEncodingError):
        return MALFORMED_BODY
    if isinstance(exc, BadHttpMessage) and "Too many headers" in str(exc.message):
        return HEADERS_TOO_LARGE
    return MALFORMED_HEAD


class _Throttle:
    """At most one log line a second; the lines it held back are counted in the next."""

    def __init__(self) -> None:
        self.last = float("-inf")
        self.held = 0

    def due(self) -> int | None:
        now = time.monotonic()
        if now - self.last < 1.0:
            self.held += 1
            return None
        self.last, held, self.held = now, self.held, 0
        return held


_THROTTLE = _Throttle()


class ProblemRequestHandler(RequestHandler):
    """aiohttp's connection handler, with its own error answers as problem+json."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if not isinstance(exc, BadHttpMessage):
            # A handler timeout (504) or an exception past every middleware (500): aiohttp
            # logs it as it would; the client gets a problem, never a traceback.
            super().handle_error(request, status, exc, message)
            if status == 504:
                resp = problem_response(504, "handler-timeout", "Request handler timed out")
            else:
                resp = problem_response(status, "internal-error", "Internal server error")
            resp.force_close()
            return resp
        if request.writer.output_size > 0:
            raise ConnectionError("a response was sent already; the connection is broken")
        status, slug, title = head_problem(exc)
        if (held := _THROTTLE.due()) is not None:
            # Not the bytes (they may carry a token or health data): what was wrong.
            fields = {"status": status, "problem": slug, "error": type(exc).__name__}
            log.warning(
                "refused a malformed request head", extra={"fields": fields | {"held": held}}
            )
        resp = problem_response(status, slug, title)
        resp.force_close()
        return resp


class ProblemServer(web.Server):
    """An aiohttp server whose connections are handled by :class:`ProblemRequestHandler`."""

    def __call__(self) -> RequestHandler:
        return ProblemRequestHandler(self, loop=self._loop, **self._kwargs)


def _outermost(handler: Callable[[BaseRequest], Awaitable[web.StreamResponse]]) -> Any:
    """``handler`` (the app's), with an HTTP error raised before its middlewares run (an
    ``Expect`` other than ``100-continue``: 417) answered as problem+json too; aiohttp
    would send it as it is, in plain text."""

    async def handle(request: BaseRequest) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as e:
            if e.status < 400:
                raise
            resp = problem_for(e)
            resp.force_close()
            return resp

    return handle


class Runner(web.AppRunner):
    """``web.AppRunner`` whose server answers refused request heads as problem+json. Takes
    the same arguments (pass it :func:`gateway.limits.server_args`)."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # aiohttp builds its Server inside the app (Application._make_handler); only the
        # class that makes each connection's handler changes, nothing of its state.
        server.__class__ = ProblemServer
        server.request_handler = _outermost(server.request_handler)
        return server
