"""``TELEGATE_MQTT_URL``: where the broker is and how this replica signs in. Pure parsing,
no network: gateway/config.py checks the URL with it at load time."""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from ..db.url import redact
from ..errors import ConfigError

__all__ = ["SCHEMES", "MqttSettings", "check_mqtt_url", "parse_mqtt_url"]

SCHEMES = {"mqtt": 1883, "mqtts": 8883}
#: Query parameters the URL may carry.
_PARAMS = frozenset({"client_id", "password_file", "ca", "cert", "key", "session_expiry"})
#: MQTT 5 client identifiers: brokers must accept 1-23 of these; Mosquitto takes longer.
_CLIENT_ID = re.compile(r"[0-9A-Za-z._-]{1,64}")
#: One day by default: a replica down for less gets what was published meanwhile.
SESSION_EXPIRY = 86_400


@dataclass(frozen=True, slots=True)
class MqttSettings:
    """The broker connection of one replica."""

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None
    #: Fixed client identifier (the persistent session's name); None: one made per data
    #: directory (gateway/mqtt/app.py).
    client_id: str | None = None
    #: CA bundle for ``mqtts://`` (default: the system's trust store).
    ca: Path | None = None
    #: Client certificate and its key (PEM) for ``mqtts://`` brokers that require one
    #: (docker/mosquitto: the certificate's CN is the MQTT username).
    cert: Path | None = None
    key: Path | None = None
    #: Seconds the broker keeps this replica's session (its queue) after a disconnect.
    session_expiry: int = SESSION_EXPIRY


def parse_mqtt_url(url: str) -> MqttSettings:
    """``mqtt[s]://[user[:password]@]host[:port][?client_id=..&password_file=..&ca=..
    &cert=..&key=..&session_expiry=..]``. A password in ``password_file`` (first line)
    wins over one in the URL, so the URL itself can stay free of secrets. Raises
    ConfigError (showing no password); reads ``password_file``."""
    shown = redact(url)
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise ConfigError(f"mqtt_url is not a URL: {shown}") from e
    if parts.scheme not in SCHEMES:
        raise ConfigError("mqtt_url must be mqtt://host:port or mqtts://host:port")
    if not parts.hostname:
        raise ConfigError("mqtt_url must name a host: mqtt://host:port")
    if parts.path not in ("", "/"):
        raise ConfigError("mqtt_url has no path: mqtt://host:port")
    query = urllib.parse.parse_qs(parts.query, keep_blank_values=True, strict_parsing=False)
    if unknown := set(query) - _PARAMS:
        raise ConfigError(f"mqtt_url: unknown parameters {', '.join(sorted(unknown))}")
    if any(len(v) != 1 for v in query.values()):
        raise ConfigError("mqtt_url: each parameter at most once")
    q = {k: v[0] for k, v in query.items()}
    client_id = q.get("client_id")
    if client_id is not None and not _CLIENT_ID.fullmatch(client_id):
        raise ConfigError("mqtt_url: client_id is 1-64 of A-Z a-z 0-9 . _ -")
    try:
        expiry = int(q.get("session_expiry", SESSION_EXPIRY))
    except ValueError as e:
        raise ConfigError("mqtt_url: session_expiry is a number of seconds") from e
    if not 60 <= expiry <= 30 * 86_400:
        raise ConfigError("mqtt_url: session_expiry must be 60 s .. 30 days")
    password = urllib.parse.unquote(parts.password) if parts.password is not None else None
    if pw_file := q.get("password_file"):
        try:
            lines = Path(pw_file).read_text().splitlines()
        except (OSError, ValueError) as e:
            raise ConfigError(f"mqtt_url: cannot read password_file {pw_file}: {e}") from e
        password = lines[0] if lines else ""
    ca, cert, key = q.get("ca"), q.get("cert"), q.get("key")
    if parts.scheme != "mqtts" and (ca or cert or key):
        raise ConfigError("mqtt_url: ca, cert and key are for mqtts://")
    if bool(cert) != bool(key):
        raise ConfigError("mqtt_url: cert and key go together")
    return MqttSettings(
        host=parts.hostname,
        port=port or SCHEMES[parts.scheme],
        tls=parts.scheme == "mqtts",
        username=urllib.parse.unquote(parts.username) if parts.username else None,
        password=password,
        client_id=client_id,
        ca=Path(ca) if ca else None,
        cert=Path(cert) if cert else None,
        key=Path(key) if key else None,
        session_expiry=expiry,
    )


def check_mqtt_url(url: str) -> None:
    """Raise ConfigError unless ``url`` is a usable ``TELEGATE_MQTT_URL``."""
    parse_mqtt_url(url)
