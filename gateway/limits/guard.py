"""Admission: who may start a request now, and how many may be under way.

In the order they are checked, before any handler (and before the refusal middleware's
work): the source address's token bucket, the client's token bucket (429 with
Retry-After), then either the WebSocket caps (in total: 503; per subject: 429) or the cap
on requests under way (load shedding: 503 with Retry-After). Health, readiness and
metrics are exempt from all of them, so that probes still see a shedding gateway.

The client is known for sure only once its handler has authenticated it. So a request
is *charged* to the client its handler authenticated (``PRINCIPAL``, or ``CALLER`` at
the token endpoint), and *checked* against the subject its access token claims, read
without verification: a forged claim can only be refused while the real client has
spent its own bucket, never spend it. A WebSocket's subject is its ticket's: the tickets
are capped (:func:`cap_tickets`) so that redeeming one for a subject with every
socket it may have is refused.
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import ipaddress
import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry, Counter, Gauge

from ..appkeys import PRINCIPAL
from ..auth.refusals import CALLER
from ..auth.sources import Networks, parse_networks, source_address
from ..auth.tokens import MAX_TOKEN_SIZE
from ..config import Config
from ..errors import GatewayError, Overloaded
from ..sessions.signalling import Ticket, Tickets
from .buckets import Buckets
from .lag import LoopLag
from .slow import BodyDeadline

__all__ = [
    "GUARD",
    "Guard",
    "Limited",
    "cap_tickets",
    "claimed_subject",
    "limits_middleware",
    "socket_opened",
]

#: Never limited: probes must see a shedding gateway as alive, and operators its metrics.
EXEMPT = frozenset({"/healthz", "/readyz", "/metrics"})
#: Retry-After of a shed request (capacity frees within milliseconds), and of a refused
#: WebSocket (a socket frees when a call ends).
SHED_RETRY = 1
SOCKET_RETRY = 10


class Limited(GatewayError):
    status = 429
    slug = "rate-limited"
    title = "Request limit reached"


def _retry(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


def claimed_subject(authorization: str | None) -> str | None:
    """The ``sub`` an ``Authorization: DPoP <JWT>`` (or Bearer) header's token claims, read
    without verifying anything; None when there is none to read."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() not in ("dpop", "bearer") or len(token) > MAX_TOKEN_SIZE:
        return None
    parts = token.strip().split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    sub = claims.get("sub") if isinstance(claims, dict) else None
    return sub if isinstance(sub, str) and 0 < len(sub) <= 256 else None


def _loopback(source: str) -> bool:
    # source_address gives an IPv4 address or an IPv6 /64; ::1 is in ::/64.
    try:
        net = ipaddress.ip_network(source, strict=False)
    except ValueError:
        return False
    return net.network_address.is_loopback or str(net) == "::/64"


@dataclass
class _Socket:
    """The WebSocket of one upgrade request: whose, once its ticket is redeemed."""

    sub: str | None = None


_SOCKET: contextvars.ContextVar[_Socket | None] = contextvars.ContextVar("socket", default=None)


@dataclass
class Guard:
    """The limits of one gateway process and what they count."""

    config: Config
    clock: Callable[[], float]
    registry: CollectorRegistry | None = None
    trusted: Networks = ()
    addresses: Buckets = field(init=False)
    clients: Buckets = field(init=False)
    pending: int = 0
    sockets: int = 0
    by_subject: dict[str, int] = field(default_factory=dict)
    lag: LoopLag = field(default_factory=LoopLag)
    random: Callable[[], float] = field(default=random.random)
    #: Told of every token spent (kind "address" or "client", key, cost): with Redis, the
    #: replicas' shared buckets (gateway/shared/rates.py).
    noted: Callable[[str, str, float], None] | None = None

    def __post_init__(self) -> None:
        c = self.config
        self.trusted = parse_networks(c.trusted_proxies)
        self.addresses = Buckets(c.address_rate, c.address_burst, c.rate_max_keys)
        self.clients = Buckets(c.client_rate, c.client_burst, c.rate_max_keys)
        self.refused = Counter(
            "telegate_limited_total",
            "Requests and connections refused or cut by a limit",
            ["limit"],
            registry=self.registry,
        )
        Gauge(
            "telegate_requests_pending", "Requests under way", registry=self.registry
        ).set_function(lambda: self.pending)
        Gauge("telegate_websockets_open", "WebSockets open", registry=self.registry).set_function(
            lambda: self.sockets
        )
        Gauge(
            "telegate_loop_lag_seconds",
            "How late the event loop runs, smoothed",
            registry=self.registry,
        ).set_function(lambda: self.lag.seconds)

    def lagging(self) -> bool:
        """Whether to shed this request for the loop's lateness: never at or under
        ``shed_lag_ms``, always at twice it, and in between with the probability of how far
        over it is (as Node's toobusy does), so that admissions fall off smoothly instead of
        stopping whenever the limit is crossed."""
        limit = self.config.shed_lag_ms / 1000
        over = (self.lag.seconds - limit) / limit if limit else 0.0
        return over > 0 and (over >= 1 or self.random() < over)

    def source(self, request: web.Request) -> str:
        fwd = request.headers.getall("X-Forwarded-For", []) if self.trusted else []
        return source_address(request.remote, fwd, self.trusted)

    def admit(self, request: web.Request) -> None:
        """Raise Limited if the request's address or claimed client has spent its bucket."""
        source = self.source(request)
        if self.config.rate_exempt_loopback and _loopback(source):
            return
        now = self.clock()
        if (wait := self.addresses.take(source, now)) is not None:
            self.refused.labels("address").inc()
            raise Limited("too many requests from this address", headers=_retry(wait))
        if self.noted is not None:
            self.noted("address", source, 1.0)
        sub = claimed_subject(request.headers.get("Authorization"))
        if sub is not None and (wait := self.clients.wait(sub, now)) is not None:
            self.refused.labels("client").inc()
            raise Limited("too many requests from this client", headers=_retry(wait))

    def charge(self, request: web.Request) -> None:
        """Charge the request to the client its handler authenticated, if any."""
        if self.config.rate_exempt_loopback and _loopback(self.source(request)):
            return
        principal = request.get(PRINCIPAL)
        sub = principal.sub if principal is not None else request.get(CALLER)
        if sub:
            self.clients.charge(sub, self.clock())
            if self.noted is not None:
                self.noted("client", sub, 1.0)

    def claim_socket(self, sub: str) -> None:
        """Count the WebSocket being opened in this request as ``sub``'s; raise Limited if
        ``sub`` has every socket it may have open. Outside an upgrade request: nothing."""
        socket = _SOCKET.get()
        if socket is None:
            return
        self.release_socket(socket)
        if self.by_subject.get(sub, 0) >= self.config.max_websockets_per_subject:
            self.refused.labels("websockets_subject").inc()
            raise Limited(
                "this subject has the most WebSockets it may open at once",
                headers=_retry(SOCKET_RETRY),
            )
        self.by_subject[sub] = self.by_subject.get(sub, 0) + 1
        socket.sub = sub

    def release_socket(self, socket: _Socket) -> None:
        if socket.sub is None:
            return
        left = self.by_subject[socket.sub] - 1
        if left:
            self.by_subject[socket.sub] = left
        else:
            del self.by_subject[socket.sub]
        socket.sub = None

    async def handle(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Run ``handler`` within the caps: every request counts as under way until it ends
        or its WebSocket opens (:func:`socket_opened`); an upgrade request also holds one of
        the WebSockets from the start, so the total cap refuses it before its handler."""
        if self.pending >= self.config.max_pending:
            self.refused.labels("pending").inc()
            raise Overloaded("the gateway is at capacity; retry later", headers=_retry(SHED_RETRY))
        if self.lagging():
            self.refused.labels("lag").inc()
            raise Overloaded("the gateway is at capacity; retry later", headers=_retry(SHED_RETRY))
        upgrade = _upgrade(request)
        if upgrade and self.sockets >= self.config.max_websockets:
            self.refused.labels("websockets").inc()
            raise Overloaded(
                "the gateway has all the WebSockets it takes open", headers=_retry(SOCKET_RETRY)
            )
        state = request[_STATE] = _State()
        self.pending += 1
        self.sockets += upgrade
        deadline = BodyDeadline(
            request, self.config.body_timeout, lambda: self.refused.labels("body_timeout").inc()
        )
        deadline.arm()
        token = _SOCKET.set(state.socket) if upgrade else None
        try:
            return await handler(request)
        finally:
            if token is not None:
                _SOCKET.reset(token)
            deadline.disarm()
            self.release_socket(state.socket)
            self.sockets -= upgrade
            if not state.opened:
                self.pending -= 1
            self.charge(request)

    def socket_opened(self, request: web.Request) -> None:
        """The request's WebSocket is open: it no longer counts as a request under way (a
        socket lives for a call; its own caps count it)."""
        state = request.get(_STATE)
        if state is not None and not state.opened:
            state.opened = True
            self.pending -= 1


@dataclass
class _State:
    """What the caps hold for one request."""

    socket: _Socket = field(default_factory=_Socket)
    opened: bool = False


_STATE = web.RequestKey("limits_state", _State)


GUARD = web.AppKey("limits_guard", Guard)


def _upgrade(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


@web.middleware
async def limits_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    guard = request.app.get(GUARD)
    if guard is None or request.path in EXEMPT:
        return await handler(request)
    guard.admit(request)
    return await guard.handle(request, handler)


async def socket_opened(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: a WebSocket's handshake answer is going out."""
    if isinstance(response, web.WebSocketResponse) and (guard := request.app.get(GUARD)):
        guard.socket_opened(request)


def cap_tickets(tickets: Tickets, guard: Guard) -> None:
    """Make redeeming one of ``tickets`` in a WebSocket upgrade claim one of the ticket
    subject's sockets (:meth:`Guard.claim_socket`, which raises Limited). The instance's
    ``redeem`` is replaced rather than the tickets wrapped, so ``app[TICKETS]`` stays the
    in-process or Redis tickets it was (what the replicas' checks look for)."""
    inner = tickets.redeem

    async def redeem(code: str, session: str) -> Ticket | None:
        ticket = await inner(code, session)
        if ticket is not None:
            guard.claim_socket(ticket.sub)
        return ticket

    tickets.redeem = redeem  # type: ignore[method-assign]
