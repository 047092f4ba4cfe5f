"""MQTT ingestion through a real broker: a private mosquitto per test module, the gateway
in process (aiohttp's test client) with ``mqtt_url`` pointing at it, devices enrolled over
HTTP as in tests/gateway/vitals, and each device's own MQTT client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from aiohttp.test_utils import TestClient
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.app import create_app
from gateway.appkeys import CONFIG
from gateway.config import Config
from gateway.mqtt.app import MQTT
from gateway.mqtt.topics import receipts_topic, vitals_topic
from tests.gateway.vitals.world import World
from tests.mqtt.broker import Broker, running

ORIGIN = "mqtt.example/telegate/log"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    with running(tmp_path_factory.mktemp("mosquitto")) as b:
        yield b


def gateway_config(data: Path, broker: Broker, **kw: Any) -> Config:
    return Config(
        data_dir=data, log_origin=ORIGIN, rate_exempt_loopback=True, mqtt_url=broker.url, **kw
    )


async def subscribed(app: Any, seconds: float = 10) -> None:
    await asyncio.wait_for(app[MQTT].subscribed.wait(), seconds)


@pytest.fixture
async def gw(aiohttp_client: Any, tmp_path: Path, broker: Broker) -> TestClient[Any, Any]:
    """The gateway, subscribed to the broker."""
    c: TestClient[Any, Any] = await aiohttp_client(
        create_app(gateway_config(tmp_path / "data", broker))
    )
    await subscribed(c.app)
    return c


@pytest.fixture
async def world(gw: TestClient[Any, Any]) -> World:
    return await World(gw).setup(gw.app[CONFIG])


@dataclass
class Reply:
    topic: str
    body: dict[str, Any]
    status: int
    correlation: bytes | None
    content_type: str | None


class DeviceLink:
    """A device's own MQTT 5 connection: it publishes under its topic and reads answers
    on its receipts topic (and anything under it)."""

    def __init__(self, client: aiomqtt.Client, device: str) -> None:
        self.client = client
        self.device = device
        self._replies: asyncio.Queue[Reply] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.client.subscribe(receipts_topic(self.device) + "/#", qos=1)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for m in self.client.messages:
            props = m.properties
            users = dict(getattr(props, "UserProperty", []) or [])
            assert isinstance(m.payload, bytes)
            await self._replies.put(
                Reply(
                    m.topic.value,
                    json.loads(m.payload),
                    int(users.get("status", 0)),
                    getattr(props, "CorrelationData", None),
                    getattr(props, "ContentType", None),
                )
            )

    async def publish(
        self,
        payload: bytes | str,
        *,
        topic: str | None = None,
        response_topic: str | None = None,
        correlation: bytes | None = None,
        content_type: str | None = "application/jose",
    ) -> None:
        props = Properties(PacketTypes.PUBLISH)
        if response_topic is not None:
            props.ResponseTopic = response_topic
        if correlation is not None:
            props.CorrelationData = correlation
        if content_type is not None:
            props.ContentType = content_type
        data = payload.encode() if isinstance(payload, str) else payload
        await self.client.publish(topic or vitals_topic(self.device), data, qos=1, properties=props)

    async def reply(self, seconds: float = 15) -> Reply:
        return await asyncio.wait_for(self._replies.get(), seconds)

    async def ask(self, payload: bytes | str, **kw: Any) -> Reply:
        """Publish with a fresh correlation id; the answer that carries it."""
        corr = secrets.token_bytes(8)
        await self.publish(payload, correlation=corr, **kw)
        r = await self.reply()
        assert r.correlation == corr
        return r

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await self._reader


@pytest.fixture
async def link(broker: Broker, world: World) -> AsyncIterator[DeviceLink]:
    """The world's device (``world.dev``) connected to the broker."""
    async with device_link(broker, world.dev.sub) as d:
        yield d


def device_link(broker: Broker, device: str, username: str | None = None) -> Any:
    @contextlib.asynccontextmanager
    async def cm() -> AsyncIterator[DeviceLink]:
        async with aiomqtt.Client(
            "127.0.0.1",
            broker.port,
            identifier=f"d-{secrets.token_hex(6)}",
            username=username or device,
            protocol=aiomqtt.ProtocolVersion.V5,
        ) as c:
            d = DeviceLink(c, device)
            await d.start()
            try:
                yield d
            finally:
                await d.close()

    return cm()
