"""Calls and live vitals across replicas: :class:`RedisHub`, the signalling hub on Redis.

The in-process :class:`~gateway.sessions.signalling.Hub` holds this replica's sockets; this
one also reaches the sockets other replicas hold (docs/redis.md, "Calls and live vitals
across replicas"):

- **presence**: ``<prefix>presence:<session>:<party>`` holds the id of the party's one live
  socket (``Peer.owner``, ``<replica>.<random>``), with a TTL (``PRESENCE_TTL``) that the
  replica holding the socket refreshes every ``REFRESH_EVERY`` s while it lives: a replica
  killed with ``kill -9`` is forgotten within the TTL. A new socket takes the key with one
  atomic ``SET ... GET`` (newest wins, as on one replica) and tells the socket it replaced
  to close (4409 ``replaced``). A refresh finding another id there closes its socket too,
  should that message have been lost.
- **relay**: one channel per session and party, ``<prefix>call:<session>:<party>``, which
  the replica holding that party's socket subscribes to. A message for a party that is not
  here is published there; one sender's messages are published one after the other, so
  they arrive in order. ``PUBLISH`` answers how many replicas heard it: none means the
  party is not connected.
- **live vitals**: ``<prefix>vitals:<patient>``, subscribed by each replica holding a
  provider's socket of a call with the patient. The receiving replica's
  :class:`~gateway.vitals.stream.Streamer` decides, by its own consent check, whether its
  provider sees the reading.

Redis unreachable: a new socket is refused (503, ``Retry-After``) before it opens; a socket
whose message cannot cross Redis is told (``error``: ``shared state unavailable``) and
closed (1013): its page reconnects, and its ticket waits for Redis. A call with both sockets
on one replica goes on (its relay needs no Redis; the database still ends it when what
allowed it is revoked, gateway.shared.recheck). Nothing here waits on Redis longer than
``client.DEADLINE``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import secrets
from collections import OrderedDict
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web
from redis.exceptions import RedisError

from ..sessions.signalling import Hub, Peer
from .batch import MAX_BATCH, Batcher
from .client import DEADLINE, SharedUnavailable, guarded
from .subscription import listen

__all__ = ["PRESENCE_TTL", "REFRESH_EVERY", "RedisHub"]

log = logging.getLogger("telegate.shared.hub")

#: How long a socket's presence outlives its replica's last refresh (s).
PRESENCE_TTL = 6.0
REFRESH_EVERY = 2.0
#: A PING on the subscription this often (s); two unanswered are a lost link.
PING_EVERY = 2.0
BACKOFF_FIRST = 0.05
BACKOFF_MAX = 2.0
CLOSE_REPLACED = 4409
DISPLACED_MAX = 1000
#: Relayed messages after which this replica reads the session again (a state moved).
_MOVES = frozenset({"admitted", "waiting", "bye", "answer"})

# For each KEYS[i] and its socket's id ARGV[i + 1]: keep the key while it is this socket's,
# or take it back if it expired (a late refresh); 0 when another socket holds it. ARGV[1] is
# the TTL (ms). One command for many sockets: the refresh of 2,000 sockets is 8 commands.
_REFRESH = """
local kept = {}
for i, key in ipairs(KEYS) do
  local v = redis.call('GET', key)
  if v == ARGV[i + 1] then
    redis.call('PEXPIRE', key, ARGV[1])
    kept[i] = 1
  elseif not v then
    redis.call('SET', key, ARGV[i + 1], 'PX', ARGV[1])
    kept[i] = 1
  else
    kept[i] = 0
  end
end
return kept
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisHub(Hub):
    """:class:`Hub` shared by the replicas on one Redis. ``client`` is the app's command
    client (short timeouts); ``listener`` a client of its own for the subscription, which
    waits for messages indefinitely."""

    def __init__(
        self,
        client: aioredis.Redis,
        listener: aioredis.Redis,
        prefix: str,
        replica_id: str,
        *,
        ttl: float = PRESENCE_TTL,
        refresh_every: float = REFRESH_EVERY,
        ping_every: float = PING_EVERY,
    ) -> None:
        super().__init__()
        self.client, self.listener = client, listener
        self.prefix, self.replica_id = prefix, replica_id
        self.ttl_ms = int(ttl * 1000)
        self.refresh_every, self.ping_every = refresh_every, ping_every
        #: False from a loss of the subscription until it is made again.
        self.connected = False
        self._pubsub: Any = None
        self._refs: dict[str, int] = {}
        self._confirmed: dict[str, asyncio.Event] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[Any]] = set()
        #: Sockets replaced by another before they joined here (their owner ids).
        self._displaced: OrderedDict[str, None] = OrderedDict()
        self._ready = asyncio.Event()
        self._refresh = client.register_script(_REFRESH)
        self._release = client.register_script(_RELEASE)
        #: PUBLISHes of messages sent together share a round trip (.batch), in call order.
        self._publishes = Batcher(client)

    # -- names ---------------------------------------------------------------------------
    def presence_key(self, session: str, party: str) -> str:
        return f"{self.prefix}presence:{session}:{party}"

    def call_channel(self, session: str, party: str) -> str:
        return f"{self.prefix}call:{session}:{party}"

    def vitals_channel(self, patient: str) -> str:
        return f"{self.prefix}vitals:{patient}"

    # -- the Hub's shared side ---------------------------------------------------------------
    async def claim(self, session: str, party: str, patient: str) -> str:
        """Take the party's presence for a socket about to open, and tell the socket it
        replaces (on whichever replica) to close. Raises SharedUnavailable (503)."""
        if not self.connected:
            raise SharedUnavailable("the shared state (Redis) did not answer: signalling")
        owner = f"{self.replica_id}.{secrets.token_hex(8)}"
        channels = [self.call_channel(session, party)]
        if party == "provider":
            channels.append(self.vitals_channel(patient))
        taken: list[str] = []
        try:
            for ch in channels:
                await self._subscribe(ch)
                taken.append(ch)
            key = self.presence_key(session, party)
            got = await guarded(
                self.client.set(key, owner, px=self.ttl_ms, get=True), "presence claim"
            )
            old = got.decode() if isinstance(got, bytes) else None
            if old is not None and old != owner:
                self._displace(old)  # if it is one of ours still opening
                note = {"r": self.replica_id, "k": "replace", "s": session, "p": party}
                await self._publish(channels[0], {**note, "o": old}, "handover")
        except BaseException:
            for ch in taken:
                await self._unsubscribe(ch)
            raise
        return owner

    async def release(self, session: str, party: str, owner: str, patient: str) -> None:
        with contextlib.suppress(SharedUnavailable):
            key = self.presence_key(session, party)
            await guarded(self._release(keys=[key], args=[owner]), "presence release")
        await self._unsubscribe(self.call_channel(session, party))
        if party == "provider":
            await self._unsubscribe(self.vitals_channel(patient))

    async def reachable(self, session: str, party: str) -> bool:
        if await super().reachable(session, party):
            return True
        found = await guarded(self.client.exists(self.presence_key(session, party)), "presence")
        return bool(found)

    async def send(self, session: str, party: str, message: dict[str, Any]) -> bool:
        """To the party's socket here, or through Redis to the replica that holds it: True
        if a live socket (here) or a replica (there) took it. Raises SharedUnavailable."""
        if party in self.sessions.get(session, {}):
            return await super().send(session, party, message)
        note = {"r": self.replica_id, "k": "msg", "s": session, "p": party, "m": message}
        return await self._publish(self.call_channel(session, party), note, "relay") > 0

    async def close_room(self, session: str, code: int, why: str) -> None:
        await super().close_room(session, code, why)
        for party in ("patient", "provider"):
            note = {"r": self.replica_id, "k": "close", "s": session, "p": party}
            # Without Redis, a socket elsewhere is told at its next message (the call is
            # over: ``not admitted``); the end itself is stored and on the ledger.
            with contextlib.suppress(SharedUnavailable):
                await self._publish(
                    self.call_channel(session, party), {**note, "c": code, "w": why}, "close"
                )

    async def publish_vitals(self, patient: str, message: dict[str, Any]) -> None:
        note = {"r": self.replica_id, "k": "vitals", "m": message}
        await self._publish(self.vitals_channel(patient), note, "vitals")

    async def _publish(self, channel: str, note: dict[str, Any], what: str) -> int:
        data = json.dumps(note)
        return int(await guarded(self._publishes.run(lambda c: c.publish(channel, data)), what))

    # -- subscriptions -------------------------------------------------------------------------
    async def _subscribe(self, channel: str) -> None:
        n = self._refs.get(channel, 0)
        self._refs[channel] = n + 1
        if n:
            confirmed = self._confirmed.get(channel)
            if confirmed is not None and not confirmed.is_set():
                await self._confirm(channel, confirmed)
            return
        confirmed = self._confirmed[channel] = asyncio.Event()
        try:
            if self._pubsub is None:
                raise SharedUnavailable("the shared state (Redis) did not answer: subscribe")
            await guarded(self._pubsub.subscribe(channel), "subscribe")
            await self._confirm(channel, confirmed)
        except BaseException:
            await self._unsubscribe(channel)
            raise

    async def _confirm(self, channel: str, confirmed: asyncio.Event) -> None:
        """Wait until Redis confirms a subscription: a message published after it reaches
        this replica."""
        try:
            async with asyncio.timeout(DEADLINE):
                await confirmed.wait()
        except TimeoutError as e:
            raise SharedUnavailable(f"the shared state (Redis) did not answer: {channel}") from e

    async def _unsubscribe(self, channel: str) -> None:
        n = self._refs.get(channel, 0) - 1
        if n > 0:
            self._refs[channel] = n
            return
        self._refs.pop(channel, None)
        self._confirmed.pop(channel, None)
        if self._pubsub is not None and self.connected:
            # A subscription lost meanwhile is made again without this channel.
            with contextlib.suppress(Exception):
                await guarded(self._pubsub.unsubscribe(channel), "unsubscribe")

    # -- running ---------------------------------------------------------------------------
    async def start(self, wait: float = 5.0) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._run()), loop.create_task(self._refresher())]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), wait)

    async def close(self) -> None:
        for task in [*self._tasks, *self._background]:
            task.cancel()
        for task in [*self._tasks, *self._background]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    def status(self) -> dict[str, Any]:
        return {"connected": self.connected, "channels": len(self._refs)}

    async def _run(self) -> None:
        delay, lost = BACKOFF_FIRST, False
        while True:
            pubsub = self.listener.pubsub()
            try:
                again = list(self._refs)
                for ch in again:
                    self._confirmed[ch] = asyncio.Event()
                await pubsub.ping()  # the connection is made now, not at the first SUBSCRIBE
                if again:
                    await pubsub.subscribe(*again)
                self._pubsub = pubsub
                self.connected = True
                self._ready.set()
                delay = BACKOFF_FIRST
                if lost:
                    lost = False
                    log.info("signalling: Redis subscription restored")
                await listen(pubsub, self.ping_every, self._message)
            except (RedisError, OSError) as e:
                if not lost:
                    log.warning(
                        "signalling: Redis subscription lost; relays to other replicas fail",
                        extra={"fields": {"error": type(e).__name__}},
                    )
                lost, self.connected, self._pubsub = True, False, None
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(delay * (0.5 + random.random() / 2))  # noqa: S311
            delay = min(delay * 2, BACKOFF_MAX)

    async def _message(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind == "subscribe":
            ch = msg["channel"]
            confirmed = self._confirmed.get(ch.decode() if isinstance(ch, bytes) else ch)
            if confirmed is not None:
                confirmed.set()
        elif kind == "message":
            try:
                await self._heard(msg["data"])
            except Exception:
                log.exception("signalling: a relayed message could not be delivered")

    async def _heard(self, data: bytes | str) -> None:
        try:
            note = json.loads(data)
            if not isinstance(note, dict):
                raise ValueError("not an object")
        except ValueError:
            log.warning("signalling: a malformed message on a channel was dropped")
            return
        if note.get("r") == self.replica_id:
            return  # done here when it was sent
        kind, sid, party = note.get("k"), note.get("s"), note.get("p")
        if kind == "vitals":
            m = note.get("m")
            if isinstance(m, dict) and self.vitals_listener is not None:
                await self.vitals_listener(m)
            return
        if not isinstance(sid, str) or not isinstance(party, str):
            return
        peer = self.sessions.get(sid, {}).get(party)
        if kind == "msg":
            m = note.get("m")
            if not isinstance(m, dict):
                return
            if m.get("type") in _MOVES:
                self.current.pop(sid, None)  # moved on another replica: read it again
            if peer is not None and peer.closed is None and not peer.ws.closed:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await peer.ws.send_json(m)
        elif kind == "replace":
            if peer is not None and peer.owner == note.get("o"):
                self._spawn(self.drop(sid, party, peer, CLOSE_REPLACED, "replaced"))
            else:
                self._displace(str(note.get("o")))
        elif kind == "close" and peer is not None:
            self.current.pop(sid, None)
            code, why = note.get("c"), note.get("w")
            self._spawn(self.drop(sid, party, peer, int(code or 1000), str(why or "")))

    def _displace(self, owner: str) -> None:
        """A socket displaced while it may still be opening (claimed, not joined yet): it
        is closed as it joins, not at its first refresh (and never replaces the newer
        one here)."""
        self._displaced[owner] = None
        while len(self._displaced) > DISPLACED_MAX:
            self._displaced.popitem(last=False)

    def join(
        self,
        session: str,
        party: str,
        ws: web.WebSocketResponse,
        sub: str,
        jti: str = "",
        owner: str = "",
    ) -> tuple[Peer, Peer | None]:
        """As :meth:`Hub.join`; but a socket another one displaced while it was opening
        does not join: its peer comes back closed (``replaced``), for the caller to close."""
        if owner in self._displaced:
            del self._displaced[owner]
            return Peer(ws, sub, jti, closed="replaced", owner=owner), None
        return super().join(session, party, ws, sub, jti, owner)

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _refresher(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_every)
            try:
                await self.refresh()
            except SharedUnavailable:
                pass  # logged by guarded; a key Redis lost meanwhile is set again next time
            except Exception:
                log.exception("signalling: presence refresh failed")

    async def refresh(self) -> None:
        """Keep the presence of every socket here; close those another socket replaced.
        One script call per ``MAX_BATCH`` sockets: at 2,000 sockets, a round trip each
        took the event loop about 0.2 s every ``refresh_every``, which the relay's p99
        paid (bench/replicas.py)."""
        mine = [(s, p, peer) for s, p, peer in self.peers() if peer.closed is None and peer.owner]
        for i in range(0, len(mine), MAX_BATCH):
            chunk = mine[i : i + MAX_BATCH]
            keys = [self.presence_key(sid, party) for sid, party, _ in chunk]
            owners = [peer.owner for _, _, peer in chunk]
            kept = await guarded(
                self._refresh(keys=keys, args=[self.ttl_ms, *owners]), "presence refresh"
            )
            for (sid, party, peer), ok in zip(chunk, kept, strict=True):
                if not ok and peer.closed is None:
                    await self.drop(sid, party, peer, CLOSE_REPLACED, "replaced")
