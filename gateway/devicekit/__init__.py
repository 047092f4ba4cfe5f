"""A device's side of telegate (docs/mqtt.md, "Device SDK"): enrollment with a key kept on
disk, signed batches, and an offline queue that delivers them over HTTP or MQTT."""

from __future__ import annotations

from .device import Device, Flushed
from .queue import OfflineQueue, QueueFull
from .transport import HttpTransport, MqttTransport, Offline

__all__ = [
    "Device",
    "Flushed",
    "HttpTransport",
    "MqttTransport",
    "Offline",
    "OfflineQueue",
    "QueueFull",
]
