"""WebSocket signalling: single-use tickets, the per-session hub, SDP fingerprint checks.

Relays ``offer``, ``answer``, ``candidate`` and ``bye`` only between the two admitted
parties of one session. A bad message gets an ``error`` reply and is dropped; the other side
never sees it and the socket stays open.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from ..errors import Unavailable

__all__ = [
    "CLOSE_UNAVAILABLE",
    "Hub",
    "LocalTickets",
    "Peer",
    "Ticket",
    "Tickets",
    "fingerprints",
]

MAX_MESSAGE = 64 * 1024
RELAYED = frozenset({"offer", "answer", "candidate", "bye"})
# RFC 8122 section 5: a=fingerprint:<hash-func> <hex pairs separated by colons>
_FINGERPRINT = re.compile(
    r"^a=fingerprint:(sha-1|sha-224|sha-256|sha-384|sha-512|md5|md2) "
    r"((?:[0-9A-Fa-f]{2}:)+[0-9A-Fa-f]{2})\s*$",
    re.MULTILINE,
)


def fingerprints(sdp: str) -> list[dict[str, str]]:
    """The ``a=fingerprint`` values of an SDP (session or media level), in order."""
    return [
        {"algorithm": m.group(1).lower(), "value": m.group(2).upper()}
        for m in _FINGERPRINT.finditer(sdp)
    ]


@dataclass(frozen=True, slots=True)
class Ticket:
    session: str
    sub: str
    jti: str
    jkt: str
    expires: float


class Tickets(Protocol):
    """Single-use, short-lived WebSocket tickets, bound to the attestation that asked: in
    process (:class:`LocalTickets`) or shared by every replica (gateway.shared.RedisTickets).
    Both raise a 503 GatewayError when they cannot be reached."""

    async def issue(self, session: str, sub: str, jti: str, jkt: str) -> tuple[str, float]:
        """A fresh ticket code and when it expires (clock seconds)."""
        ...

    async def redeem(self, code: str, session: str) -> Ticket | None:
        """Spend a ticket; None if unknown, spent, expired or for another session."""
        ...


class LocalTickets:
    """:class:`Tickets` in this process (one gateway process)."""

    def __init__(self, clock: Callable[[], float], ttl: int = 60, max_live: int = 100_000) -> None:
        self.clock = clock
        self.ttl = ttl
        self.max_live = max_live
        self._live: dict[str, Ticket] = {}

    async def issue(self, session: str, sub: str, jti: str, jkt: str) -> tuple[str, float]:
        now = self.clock()
        if len(self._live) >= self.max_live:
            self._live = {k: t for k, t in self._live.items() if t.expires > now}
        code = secrets.token_urlsafe(24)
        expires = now + self.ttl
        self._live[code] = Ticket(session, sub, jti, jkt, expires)
        return code, expires

    async def redeem(self, code: str, session: str) -> Ticket | None:
        """Spend a ticket; None if unknown, spent, expired or for another session."""
        t = self._live.pop(code, None)
        if t is None or t.session != session or t.expires <= self.clock():
            return None
        return t


@dataclass
class Peer:
    ws: web.WebSocketResponse
    sub: str
    #: The attestation the socket's ticket was bound to: a revocation of it ends the socket.
    jti: str = ""
    window_start: float = 0.0
    count: int = 0
    #: Why the gateway closed this socket (``revoked``, ``consent``, ...), once it has.
    closed: str | None = None
    #: Which socket of the party this is among the replicas (:meth:`Hub.claim`).
    owner: str = ""


#: A socket closed because the shared state (Redis) cannot be reached: the page reconnects
#: (RFC 6455 7.4.1: 1013, try again later), and its new ticket waits for Redis.
CLOSE_UNAVAILABLE = 1013


@dataclass
class Hub:
    """Live sockets by session and party; a per-socket message rate limit.

    In process: both parties of a call meet on this replica. With ``redis_url``,
    :class:`gateway.shared.hub.RedisHub` relays to the parties on other replicas; the
    ``async`` methods below are where the two differ."""

    rate: int = 50  # messages per second per socket
    sessions: dict[str, dict[str, Peer]] = field(default_factory=dict)
    #: Sessions with a live room, (session, when read), see sessions.http.current_session.
    current: dict[str, Any] = field(default_factory=dict)

    #: Told each batch of readings another replica relays, as it was published (set by
    #: :class:`gateway.vitals.stream.Streamer`, which reads it).
    vitals_listener: Callable[[dict[str, Any]], Awaitable[Any]] | None = None

    async def claim(self, session: str, party: str, patient: str) -> str:
        """Make the socket about to open the party's one socket, before it opens: an id for
        it (``Peer.owner``). In process: nothing to tell anyone (``join`` replaces)."""
        return secrets.token_hex(8)

    async def release(self, session: str, party: str, owner: str, patient: str) -> None:
        """The socket ``owner`` of the party is gone (after ``leave``)."""

    async def reachable(self, session: str, party: str) -> bool:
        """Whether the party has a live socket (on any replica)."""
        other = self.sessions.get(session, {}).get(party)
        return other is not None and not other.ws.closed and other.closed is None

    async def publish_vitals(self, patient: str, message: dict[str, Any]) -> None:
        """Carry a reading to the providers' streams on the other replicas (none here)."""

    async def close_room(self, session: str, code: int, why: str) -> None:
        """Close every socket of a session (on every replica)."""
        for party, peer in list(self.sessions.get(session, {}).items()):
            await self.drop(session, party, peer, code, why)

    def join(
        self,
        session: str,
        party: str,
        ws: web.WebSocketResponse,
        sub: str,
        jti: str = "",
        owner: str = "",
    ) -> tuple[Peer, Peer | None]:
        """The new peer, and the one it replaced, if any. A reconnect with a fresh ticket
        replaces the party's old socket; the caller closes that one (left open, it would
        go on relaying beside the new one)."""
        peer = Peer(ws, sub, jti, owner=owner)
        room = self.sessions.setdefault(session, {})
        old = room.get(party)
        room[party] = peer
        if old is not None and old.closed is None:
            old.closed = "replaced"
            return peer, old
        return peer, None

    def leave(self, session: str, party: str, peer: Peer) -> None:
        room = self.sessions.get(session, {})
        if room.get(party) is peer:
            del room[party]
        if not room:
            self.sessions.pop(session, None)
            self.current.pop(session, None)

    def peers(self) -> list[tuple[str, str, Peer]]:
        """Every live socket: (session, party, peer)."""
        return [(sid, party, p) for sid, room in self.sessions.items() for party, p in room.items()]

    async def drop(
        self,
        session: str,
        party: str,
        peer: Peer,
        code: int,
        why: str,
        farewell: dict[str, Any] | None = None,
    ) -> bool:
        """Close a socket for a reason (after a last message, if given); False if it was not
        live any more. From the first line on, nothing else is sent to or relayed from it."""
        if peer.closed is not None or self.sessions.get(session, {}).get(party) is not peer:
            return False
        peer.closed = why
        self.leave(session, party, peer)
        if farewell is not None and not peer.ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await peer.ws.send_json(farewell)
        await peer.ws.close(code=code, message=why.encode())
        return True

    def other(self, session: str, party: str) -> Peer | None:
        room = self.sessions.get(session, {})
        return room.get("provider" if party == "patient" else "patient")

    def allow(self, peer: Peer) -> bool:
        now = time.monotonic()
        if now - peer.window_start >= 1.0:
            peer.window_start, peer.count = now, 0
        peer.count += 1
        return peer.count <= self.rate

    async def send(self, session: str, party: str, message: dict[str, Any]) -> bool:
        room = self.sessions.get(session, {})
        peer = room.get(party)
        if peer is None or peer.ws.closed or peer.closed is not None:
            return False
        await peer.ws.send_json(message)
        return True

    async def tell(self, session: str, party: str, message: dict[str, Any]) -> bool:
        """:meth:`send` for news the gateway gives (admitted, bye, ...) after a change that
        is already stored: a party the shared state (Redis) cannot reach now is not told
        (False), and what comes after still happens (closing the sockets here, recording
        the close). Its page learns the state from ``hello`` when it reconnects."""
        try:
            return await self.send(session, party, message)
        except Unavailable:
            return False

    async def close_all(self) -> None:
        for room in list(self.sessions.values()):
            for peer in list(room.values()):
                await peer.ws.close(code=1001, message=b"gateway shutting down")
        self.sessions.clear()
