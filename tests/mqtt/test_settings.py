"""TELEGATE_MQTT_URL: parsed once, its password never shown; the topic rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import Config
from gateway.errors import ConfigError
from gateway.mqtt.settings import parse_mqtt_url
from gateway.mqtt.topics import device_of, response_topic_allowed

DEV = "dev:" + "a" * 32
OTHER = "dev:" + "b" * 32


def test_the_url_gives_host_port_tls_and_credentials(tmp_path: Path) -> None:
    s = parse_mqtt_url("mqtts://gw:s3cret@broker.example?client_id=gw-1&session_expiry=600")
    assert (s.host, s.port, s.tls, s.username, s.password) == (
        "broker.example",
        8883,
        True,
        "gw",
        "s3cret",
    )
    assert s.client_id == "gw-1" and s.session_expiry == 600
    pw = tmp_path / "pw"
    pw.write_text("from-file\n")
    s = parse_mqtt_url(f"mqtt://gw@127.0.0.1:1884?password_file={pw}")
    assert (s.port, s.tls, s.password) == (1884, False, "from-file")


@pytest.mark.parametrize(
    "url",
    [
        "http://broker:1883",
        "mqtt://",
        "mqtt://broker:notaport",
        "mqtt://broker/path",
        "mqtt://broker?unknown=1",
        "mqtt://broker?client_id=a/b",
        "mqtt://broker?session_expiry=5",
        "mqtt://broker?ca=/etc/ca.pem",
        "mqtt://broker?password_file=/nonexistent/pw",
    ],
)
def test_bad_urls_are_refused_at_load(url: str) -> None:
    with pytest.raises(ConfigError):
        Config(mqtt_url=url)


def test_the_password_never_shows() -> None:
    c = Config.load({"TELEGATE_MQTT_URL": "mqtt://gw:hunter2@broker:1883"})
    assert c.mqtt_url is not None and "hunter2" not in repr(c)
    assert Config.load({"TELEGATE_MQTT_URL": "mqtt://gw:other@broker:1883"}).digest() == c.digest()
    assert Config.load({"TELEGATE_MQTT_URL": ""}).mqtt_url is None


def test_topics() -> None:
    assert device_of(f"telegate/v1/devices/{DEV}/vitals") == DEV
    assert device_of("telegate/v1/devices/pat:" + "a" * 32 + "/vitals") is None
    assert device_of(f"telegate/v1/devices/{DEV}/other") is None
    base = f"telegate/v1/devices/{DEV}/receipts"
    assert response_topic_allowed(DEV, base)
    assert response_topic_allowed(DEV, base + "/r-1")
    assert not response_topic_allowed(DEV, f"telegate/v1/devices/{OTHER}/receipts")
    assert not response_topic_allowed(DEV, base + "x")
    assert not response_topic_allowed(DEV, base + "/+")
    assert not response_topic_allowed(DEV, base + "/" + "x" * 300)
