"""How a device's batches reach the gateway: ``POST /v1/vitals`` (DPoP-bound token) or an
MQTT 5 publish answered on the device's receipts topic (docs/mqtt.md). Either gives the
HTTP status and the JSON body, or raises Offline when the gateway could not be asked.

Each answer also tells the time on the gateway (HTTP's ``Date`` header; the ``date`` user
property of an MQTT answer, in the same format): ``server_time`` holds the last one seen,
from which the device learns how far its clock is off (gateway/devicekit/device.py)."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import secrets
import time
from collections.abc import Callable
from typing import Any, Protocol

from ..client import ClientError, Credentials, Session, _request

__all__ = ["HttpTransport", "MqttTransport", "Offline", "Transport"]

JOSE = "application/jose"


class Offline(ClientError):
    """The gateway (or the broker) could not be reached, or did not answer in time."""


class Transport(Protocol):
    #: The gateway's time (epoch seconds) told by the last answer, with the local
    #: ``time.time()`` when it came: ``(server, local)``; None until one told it.
    server_time: tuple[float, float] | None

    async def send(self, jws: str) -> tuple[int, dict[str, Any]]: ...

    async def close(self) -> None: ...


def http_date(value: str | None) -> float | None:
    """Epoch seconds of an HTTP-date (RFC 9110 IMF-fixdate), or None. The date has whole
    seconds: half a second is added, the middle of the second it names."""
    if not value or len(value) > 64:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp() + 0.5
    except (TypeError, ValueError, IndexError):
        return None


def _body(raw: bytes) -> dict[str, Any]:
    try:
        out = json.loads(raw)
    except ValueError:
        return {}
    return out if isinstance(out, dict) else {}


class HttpTransport:
    """``POST /v1/vitals`` with the device's own token and a DPoP proof per request."""

    def __init__(self, creds: Credentials, now: Callable[[], float] = time.time) -> None:
        self.session = Session(creds, now)
        self.server_time: tuple[float, float] | None = None

    def _told(self, headers: dict[str, str]) -> None:
        date = http_date(headers.get("Date") or headers.get("date"))
        if date is not None:
            self.server_time = (date, time.time())

    def _send(self, jws: str) -> tuple[int, dict[str, Any]]:
        url = f"{self.session.server}/v1/vitals"
        try:
            token = self.session.token()
        except ClientError as e:
            # Refused, perhaps for a proof dated off the gateway's clock: ask its time, so
            # the next proof is dated right.
            with contextlib.suppress(ClientError):
                self._told(_request("GET", f"{self.session.server}/readyz")[1])
            raise Offline(str(e)) from e
        headers = {
            "Authorization": f"DPoP {token}",
            "DPoP": self.session._proof("POST", url, token),
            "Content-Type": JOSE,
        }
        try:
            status, got, out = _request("POST", url, body=jws.encode("ascii"), headers=headers)
        except ClientError as e:
            raise Offline(str(e)) from e
        self._told(got)
        if status == 401:
            self.session._token = None  # expired or revoked: a new one next time
        return status, _body(out)

    async def send(self, jws: str) -> tuple[int, dict[str, Any]]:
        return await asyncio.to_thread(self._send, jws)

    async def close(self) -> None:
        return None


class MqttTransport:
    """Publishes to ``telegate/v1/devices/{id}/vitals`` (QoS 1) on one kept connection and
    waits for the answer that carries its correlation data."""

    def __init__(
        self,
        device: str,
        host: str,
        port: int = 1883,
        *,
        username: str | None = None,
        password: str | None = None,
        answer_timeout: float = 30.0,
        tls_context: Any = None,
    ) -> None:
        self.device = device
        self.host, self.port = host, port
        self.username = username or device
        self.password = password
        self.answer_timeout = answer_timeout
        self.tls_context = tls_context
        self._client: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._waiting: dict[bytes, asyncio.Future[tuple[int, dict[str, Any]]]] = {}
        self.server_time: tuple[float, float] | None = None

    async def _connect(self) -> Any:
        import aiomqtt

        from ..mqtt.topics import receipts_topic

        if self._client is not None and (self._reader is None or not self._reader.done()):
            return self._client
        await self.close()
        client = aiomqtt.Client(
            self.host,
            self.port,
            username=self.username,
            password=self.password,
            identifier=f"{self.device.replace(':', '-')}-{secrets.token_hex(4)}",
            protocol=aiomqtt.ProtocolVersion.V5,
            tls_context=self.tls_context,
            timeout=10,
        )
        try:
            await client.__aenter__()
            await client.subscribe(receipts_topic(self.device), qos=1)
        except aiomqtt.MqttError as e:
            raise Offline(f"cannot reach the broker: {e}") from e
        self._client = client
        self._reader = asyncio.create_task(self._read(client))
        return client

    async def _read(self, client: Any) -> None:
        import aiomqtt

        with contextlib.suppress(aiomqtt.MqttError):
            async for m in client.messages:
                props = m.properties
                corr = getattr(props, "CorrelationData", None)
                fut = self._waiting.pop(bytes(corr), None) if corr is not None else None
                if fut is None or fut.done():
                    continue
                users = dict(getattr(props, "UserProperty", None) or [])
                date = http_date(users.get("date"))
                if date is not None:
                    self.server_time = (date, time.time())
                try:
                    status = int(users.get("status", "0"))
                except ValueError:
                    status = 0
                payload = m.payload if isinstance(m.payload, bytes) else b""
                fut.set_result((status, _body(payload)))
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(Offline("the broker connection was lost"))
        self._waiting.clear()

    async def send(self, jws: str) -> tuple[int, dict[str, Any]]:
        import aiomqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        from ..mqtt.topics import vitals_topic

        client = await self._connect()
        corr = secrets.token_bytes(12)
        fut: asyncio.Future[tuple[int, dict[str, Any]]] = asyncio.get_running_loop().create_future()
        self._waiting[corr] = fut
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.CorrelationData = corr
        props.ContentType = JOSE
        try:
            await client.publish(
                vitals_topic(self.device), jws.encode("ascii"), qos=1, properties=props
            )
            async with asyncio.timeout(self.answer_timeout):
                return await fut
        except (aiomqtt.MqttError, TimeoutError) as e:
            raise Offline(f"no answer from the gateway: {e}") from e
        finally:
            self._waiting.pop(corr, None)

    async def close(self) -> None:
        client, self._client = self._client, None
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.__aexit__(None, None, None)
