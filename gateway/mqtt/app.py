"""Starting and stopping MQTT ingestion with the application (``TELEGATE_MQTT_URL``)."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from ledger.atomic import create_exclusive

from ..appkeys import CONFIG
from ..db.url import redact
from .consumer import Consumer
from .ingest import Ingest
from .settings import parse_mqtt_url

__all__ = ["MQTT", "client_id", "mqtt_ctx"]

log = logging.getLogger("telegate.mqtt")

MQTT = web.AppKey("mqtt", Consumer)
#: Room for the topic and properties above the payload limit in one MQTT packet.
PACKET_OVERHEAD = 64 * 1024


def client_id(data_dir: Path) -> str:
    """This replica's MQTT client identifier, made once per data directory and kept in
    ``mqtt-client-id``: the name of its persistent session, so a restarted replica gets
    back what the broker holds for it (and replicas with their own data directories
    never take each other's sessions over)."""
    path = data_dir / "mqtt-client-id"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        create_exclusive(path, f"telegate-{secrets.token_hex(8)}\n".encode(), 0o600)
    return path.read_text().strip()


async def mqtt_ctx(app: web.Application) -> AsyncIterator[None]:
    """With ``mqtt_url``: consume device batches from the broker while the app runs (after
    the vitals intake opens; stopped, its handlers finished, before it closes)."""
    config = app[CONFIG]
    if config.mqtt_url is None:
        yield
        return
    settings = await asyncio.to_thread(parse_mqtt_url, config.mqtt_url)  # reads password_file
    ident = settings.client_id
    if ident is None:
        ident = await asyncio.to_thread(client_id, config.data_dir)
    consumer = Consumer(
        settings, ident, Ingest(app), max_packet=config.max_body_size + PACKET_OVERHEAD
    )
    app[MQTT] = consumer
    log.info("mqtt", extra={"fields": {"broker": redact(config.mqtt_url), "client_id": ident}})
    runner = asyncio.create_task(consumer.run())
    try:
        yield
    finally:
        await consumer.close(runner)
