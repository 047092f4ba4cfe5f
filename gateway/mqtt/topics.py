"""The topic tree devices and the gateway share (docs/mqtt.md). Pure functions."""

from __future__ import annotations

from ..auth.enroll import is_subject_id

__all__ = [
    "PREFIX",
    "SHARE_GROUP",
    "SUBSCRIPTION",
    "device_of",
    "receipts_topic",
    "response_topic_allowed",
    "vitals_topic",
]

PREFIX = "telegate/v1/devices"
SHARE_GROUP = "telegate"
#: Every replica subscribes with this filter: the broker hands each message to one of them.
SUBSCRIPTION = f"$share/{SHARE_GROUP}/{PREFIX}/+/vitals"
#: Longest topic accepted (device ids are far shorter; a response topic is bounded too).
MAX_TOPIC = 256


def vitals_topic(device: str) -> str:
    return f"{PREFIX}/{device}/vitals"


def receipts_topic(device: str) -> str:
    return f"{PREFIX}/{device}/receipts"


def device_of(topic: str) -> str | None:
    """The device id a vitals topic names, or None when the topic is not
    ``telegate/v1/devices/{device_id}/vitals`` with a well-formed device id."""
    if len(topic) > MAX_TOPIC:
        return None
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:3]) != PREFIX or parts[4] != "vitals":
        return None
    return parts[3] if is_subject_id(parts[3], "device") else None


def response_topic_allowed(device: str, topic: str) -> bool:
    """A device may name its own receipts topic, or a topic under it, as its MQTT 5
    response topic, and nothing else: the gateway, which may write every device's
    receipts, must not be a way for one device to write into another's."""
    base = receipts_topic(device)
    return len(topic) <= MAX_TOPIC and (
        topic == base or (topic.startswith(base + "/") and not any(c in topic for c in "+#\0"))
    )
