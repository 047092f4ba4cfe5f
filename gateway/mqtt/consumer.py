"""The broker side of MQTT ingestion: one replica's connection, its shared subscription,
and acknowledgements that follow durability.

- MQTT 5, a persistent session (``clean_start`` never, a session expiry): what the broker
  sent and this replica did not acknowledge is sent again when it reconnects, also after
  a crash (the broker sets DUP).
- Manual acknowledgement: a QoS 1 message is acknowledged (PUBACK) only after its handler
  returned, that is after the batch is durable (or refused for good) and its answer was
  published. aiomqtt 2.5 has no manual-ack API: the paho-mqtt client it wraps has
  (``manual_ack_set``, ``ack``), reached through ``aiomqtt.Client._client`` (pinned:
  aiomqtt>=2.5,<3; tests/mqtt/test_resilience.py fails if this stops holding).
- PUBACKs go out in the order the messages came (MQTT 5 section 4.6), while the handlers
  run concurrently: a finished message waits for the ones before it. ``Receive Maximum``
  bounds what the broker has in flight to this replica, so memory does not grow with load.
- A handler that raises :class:`Retry` (the ledger or a store takes no writes now) is run
  again with backoff while the connection lasts; the message stays unacknowledged.
- A lost broker: reconnect with capped exponential backoff and jitter, subscribe again.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import email.utils
import logging
import random
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from .settings import MqttSettings
from .topics import SUBSCRIPTION

__all__ = ["Answer", "Consumer", "Inbound", "Retry"]

log = logging.getLogger("telegate.mqtt")

#: Messages in flight from the broker to one replica at once (MQTT 5 Receive Maximum).
RECEIVE_MAXIMUM = 64
KEEPALIVE = 15


class Retry(Exception):
    """The message could not be handled now, for a reason that passes (its batch is not
    durable): leave it unacknowledged and try again later."""


@dataclass(frozen=True, slots=True)
class Inbound:
    """A message as the handler sees it: no MQTT library types."""

    topic: str
    payload: bytes
    response_topic: str | None
    correlation: bytes | None
    content_type: str | None


@dataclass(frozen=True, slots=True)
class Answer:
    """What to publish back (QoS 1) before the message is acknowledged; ``status`` goes
    in a ``status`` user property (the HTTP status the same request would have had)."""

    topic: str
    body: bytes
    content_type: str
    correlation: bytes | None
    status: int


Handler = Callable[[Inbound], Awaitable[Answer | None]]


class _InOrder:
    """PUBACKs in arrival order: ``done`` marks a message finished and sends the
    acknowledgements of every finished message at the head of the line."""

    def __init__(self, ack: Callable[[int, int], object]) -> None:
        self._ack = ack
        self._line: deque[list[int | bool]] = deque()

    def arrived(self, mid: int, qos: int) -> list[int | bool]:
        slot: list[int | bool] = [mid, qos, False]
        if qos > 0:
            self._line.append(slot)
        return slot

    def done(self, slot: list[int | bool]) -> None:
        slot[2] = True
        while self._line and self._line[0][2]:
            mid, qos, _ = self._line.popleft()
            self._ack(int(mid), int(qos))


def _inbound(m: aiomqtt.Message) -> Inbound:
    props = m.properties
    response = getattr(props, "ResponseTopic", None) if props is not None else None
    corr = getattr(props, "CorrelationData", None) if props is not None else None
    ctype = getattr(props, "ContentType", None) if props is not None else None
    payload = m.payload if isinstance(m.payload, bytes | bytearray) else b""
    return Inbound(
        topic=m.topic.value,
        payload=bytes(payload),
        response_topic=response,
        correlation=bytes(corr) if corr is not None else None,
        content_type=ctype,
    )


class _AnswerProperties:
    """The properties of an answer without building paho's ``Properties`` (a few dozen
    dicts and lists) for each: one per content type, status and second is made, and each
    answer gets a shallow copy of it to add its correlation data to (paho keeps the
    object of an unacknowledged publish to send it again, so each answer has its own)."""

    def __init__(self) -> None:
        self._second = -1
        self._made: dict[tuple[str, int], Properties] = {}

    def get(self, content_type: str, status: int) -> Properties:
        now = int(time.time())
        if now != self._second:
            self._second, self._made = now, {}
        made = self._made.get((content_type, status))
        if made is None:
            made = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            made.ContentType = content_type
            # The gateway's time, as HTTP's Date header: a device learns its clock's
            # offset from it (gateway/devicekit).
            date = email.utils.formatdate(now, usegmt=True)
            made.UserProperty = [("status", str(status)), ("date", date)]
            if len(self._made) < 64:
                self._made[(content_type, status)] = made
        return copy.copy(made)


class Consumer:
    """Run with :meth:`run` (a task); stop by cancelling it. ``handler`` turns a message
    into the answer to publish (or None); it is called again for a redelivered message."""

    def __init__(
        self,
        settings: MqttSettings,
        client_id: str,
        handler: Handler,
        *,
        max_packet: int,
        subscription: str = SUBSCRIPTION,
        backoff_max: float = 30.0,
        retry_max: float = 5.0,
    ) -> None:
        self.settings = settings
        self.client_id = client_id
        self.handler = handler
        self.max_packet = max_packet
        self.subscription = subscription
        self.backoff_max = backoff_max
        self.retry_max = retry_max
        #: Set while subscribed; cleared when the link is lost (tests and /readyz-style
        #: checks wait on it).
        self.subscribed = asyncio.Event()
        #: Connections made so far (each one subscribes again).
        self.connections = 0
        #: Messages this replica handled and acknowledged (how replicas split the load).
        self.acknowledged = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._current: aiomqtt.Client | None = None
        self._tls: ssl.SSLContext | None = None
        self._answer_props = _AnswerProperties()

    def _tls_context(self) -> ssl.SSLContext:
        s = self.settings
        tls = ssl.create_default_context(cafile=str(s.ca) if s.ca else None)
        if s.cert is not None and s.key is not None:
            tls.load_cert_chain(s.cert, s.key)
        return tls

    def _client(self) -> aiomqtt.Client:
        s = self.settings
        connect = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        connect.SessionExpiryInterval = s.session_expiry
        connect.ReceiveMaximum = RECEIVE_MAXIMUM
        # The broker drops (for this client) what exceeds it, rather than sending it: a
        # few KiB above the payload limit leave room for the topic and properties, so a
        # payload just over the limit still arrives and is answered with a problem.
        connect.MaximumPacketSize = self.max_packet
        client = aiomqtt.Client(
            s.host,
            s.port,
            username=s.username,
            password=s.password,
            identifier=self.client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            keepalive=KEEPALIVE,
            properties=connect,
            tls_context=self._tls,
            timeout=10,
        )
        # See the module docstring: aiomqtt exposes no manual acknowledgement.
        client._client.manual_ack_set(True)
        return client

    async def run(self) -> None:
        """Connect, subscribe and handle messages; on a lost link, reconnect with backoff.
        Returns only by cancellation."""
        delay = 0.1
        while True:
            made = self.connections
            try:
                await self._session()
            except aiomqtt.MqttError as e:
                log.warning("mqtt link lost", extra={"fields": {"error": str(e)}})
            except OSError as e:
                log.warning("mqtt broker unreachable", extra={"fields": {"error": str(e)}})
            finally:
                self.subscribed.clear()
                self._current = None
            if self._stopping:
                return
            # Capped exponential backoff with jitter: replicas do not reconnect in step.
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 - not a secret
            delay = 0.1 if self.connections > made else min(delay * 2, self.backoff_max)

    async def _session(self) -> None:
        if self.settings.tls and self._tls is None:
            self._tls = await asyncio.to_thread(self._tls_context)  # reads files
        client = self._client()
        async with client:
            self._current = client
            self.connections += 1
            acks = _InOrder(client._client.ack)
            await client.subscribe(self.subscription, qos=1)
            self.subscribed.set()
            log.info("mqtt subscribed", extra={"fields": {"filter": self.subscription}})
            link = asyncio.get_running_loop().create_future()
            try:
                async for message in client.messages:
                    slot = acks.arrived(message.mid, message.qos)
                    task = asyncio.ensure_future(self._one(client, message, acks, slot, link))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            finally:
                # What is under way for this link is not acknowledged on another: the broker
                # sends those messages again on the next connection.
                link.cancel()

    async def _one(
        self,
        client: aiomqtt.Client,
        message: aiomqtt.Message,
        acks: _InOrder,
        slot: list[int | bool],
        link: asyncio.Future[None],
    ) -> None:
        inbound = _inbound(message)
        delay = 0.05
        while True:
            if link.done():
                return
            try:
                answer = await self.handler(inbound)
                break
            except Retry as e:
                log.warning("mqtt message not durable yet", extra={"fields": {"error": str(e)}})
            except Exception:
                # A bug: never let it end the loop of the others. The message stays
                # unacknowledged (sent again on the next connection) and is tried again.
                log.exception("mqtt handler failed")
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.retry_max)
        if link.done():
            return
        try:
            if answer is not None:
                props = self._answer_props.get(answer.content_type, answer.status)
                if answer.correlation is not None:
                    props.CorrelationData = answer.correlation
                await client.publish(answer.topic, answer.body, qos=1, properties=props)
        except aiomqtt.MqttError as e:
            log.warning("mqtt answer not published", extra={"fields": {"error": str(e)}})
            return  # unacknowledged: the message comes again, and its repeat is answered
        if not link.done():
            acks.done(slot)
            self.acknowledged += 1

    async def close(self, runner: asyncio.Task[None], grace: float = 5.0) -> None:
        """Stop cleanly: leave the shared subscription (the broker routes no more messages
        to this replica's session, also while it is down), give the handlers under way
        ``grace`` seconds to finish and acknowledge, cancel what remains (unacknowledged:
        the broker sends it again when this replica's session reconnects), then disconnect
        by cancelling ``runner`` (the :meth:`run` task). The session itself is kept."""
        self._stopping = True
        client = self._current
        if client is not None and self.subscribed.is_set():
            try:
                await client.unsubscribe(self.subscription, timeout=grace)
            except aiomqtt.MqttError as e:
                log.warning("mqtt unsubscribe failed", extra={"fields": {"error": str(e)}})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self._tasks and (left := deadline - loop.time()) > 0:
            await asyncio.wait(list(self._tasks), timeout=left)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
