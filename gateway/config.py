"""Gateway configuration: a frozen dataclass read once from ``TELEGATE_*`` env or TOML."""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
import os
import tomllib
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ledger.errors import LedgerError
from ledger.note import ALG_COSIGNATURE_V1, Verifier

from .auth.sources import parse_networks
from .db.url import check_url, redact
from .db.url import redact as redact_url
from .errors import ConfigError
from .mqtt.settings import check_mqtt_url

__all__ = [
    "VITALS_FUTURE_SKEW_CAP",
    "VITALS_MAX_AGE_CAP",
    "Config",
    "WitnessPeer",
    "parse_witnesses",
    "redact_url",
]

#: Caps on the vitals time window. The vitals read path relies on them to bound the
#: arrival times it searches for a range of reading times, whatever a deployment set.
VITALS_MAX_AGE_CAP = 90 * 86400
VITALS_FUTURE_SKEW_CAP = 3600


@dataclass(frozen=True, slots=True)
class WitnessPeer:
    """A witness this log submits its checkpoints to: its base URL (``POST <url>/add-checkpoint``,
    C2SP tlog-witness) and its tlog-cosignature/v1 vkey, pinned."""

    url: str
    vkey: str

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")) or any(
            c.isspace() or c in ",=" for c in self.url
        ):
            raise ConfigError(f"witness URL {self.url!r} must be http(s), without ',' or '='")
        if self.verifier.alg != ALG_COSIGNATURE_V1:
            raise ConfigError(f"witness vkey {self.vkey!r} is not a cosignature/v1 (0x04) key")

    @property
    def verifier(self) -> Verifier:
        try:
            return Verifier.from_vkey(self.vkey)
        except LedgerError as e:
            raise ConfigError(f"witness vkey {self.vkey!r}: {e}") from e

    @property
    def name(self) -> str:
        """The witness's key name: how logs, metrics and alarms refer to it."""
        return self.vkey.split("+", 1)[0]


def parse_witnesses(raw: Any) -> tuple[WitnessPeer, ...]:
    """``URL=VKEY`` items, comma-separated (the env form), or a TOML list of tables with
    ``url`` and ``vkey``. Raises ConfigError."""
    if isinstance(raw, tuple) and all(isinstance(w, WitnessPeer) for w in raw):
        return raw
    if isinstance(raw, str):
        items = [i.strip() for i in raw.split(",") if i.strip()]
        if any("=" not in i for i in items):
            raise ConfigError("witnesses are URL=VKEY items, comma-separated")
        return tuple(WitnessPeer(*i.split("=", 1)) for i in items)
    if isinstance(raw, list) and all(
        isinstance(t, dict) and set(t) == {"url", "vkey"} for t in raw
    ):
        return tuple(WitnessPeer(str(t["url"]), str(t["vkey"])) for t in raw)
    raise ConfigError("witnesses: a string of URL=VKEY items or [[witnesses]] url/vkey tables")


REDIS_SCHEMES = ("redis", "rediss", "unix")


def check_redis_url(url: str) -> None:
    """Raise ConfigError unless ``url`` is one redis-py's ``from_url`` takes (the error
    shows no password)."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError as e:
        raise ConfigError(f"redis_url is not a URL: {redact(url)}") from e
    if parts.scheme not in REDIS_SCHEMES:
        raise ConfigError("redis_url must be redis://host:port/db, rediss://... or unix://path")
    if parts.scheme == "unix" and not parts.path:
        raise ConfigError("a unix:// redis_url names the socket: unix:///run/redis.sock")
    if parts.scheme != "unix" and not parts.hostname:
        raise ConfigError("redis_url must name a host: redis://host:port/db")


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name (or "", every address): it may resolve anywhere


@dataclass(frozen=True, slots=True)
class Config:
    """Every setting, with safe limits as defaults. Env var: ``TELEGATE_<FIELD>``."""

    host: str = "127.0.0.1"
    port: int = 8443
    data_dir: Path = Path("data")
    #: Checkpoint origin and log key name; DESIGN.md: ``<host>/telegate/log``.
    log_origin: str = "localhost/telegate/log"
    #: Largest request body accepted, in bytes.
    max_body_size: int = 1024 * 1024
    #: Group commit bounds: entries per commit, and how long the writer lingers for more.
    ledger_max_batch: int = 4096
    ledger_max_wait_ms: float = 0.0
    log_level: str = "INFO"
    #: The gateway's public origin (``https://gw.example``): token ``iss``/``aud``, DPoP
    #: ``htu`` and the token endpoint URL. Empty: taken from each request (development only).
    public_url: str = ""
    #: Attestation signing algorithm: EdDSA (Ed25519) or ES256.
    signing_alg: str = "EdDSA"
    #: Access token lifetime, seconds (short: minutes).
    token_lifetime: int = 300
    #: Accepted clock skew for token and proof times, seconds.
    clock_skew: int = 30
    #: How old a DPoP proof may be, seconds.
    dpop_window: int = 60
    #: Require RFC 9449 server nonces in DPoP proofs.
    dpop_require_nonce: bool = False
    #: Most DPoP proof ids remembered at once (the replay cache refuses beyond it).
    dpop_replay_max: int = 500_000
    #: Longest invite validity, seconds.
    invite_max_ttl: int = 7 * 86400
    #: How long a declared emergency (break-the-glass) grants access, minutes.
    break_glass_minutes: int = 60
    #: TURN/STUN URIs handed to call participants, comma-separated.
    turn_uris: str = "turn:127.0.0.1:3478?transport=udp,turn:127.0.0.1:3478?transport=tcp"
    #: Lifetime of TURN credentials, seconds.
    turn_ttl: int = 3600
    #: Most readings in one device batch.
    vitals_max_readings: int = 1000
    #: Oldest reading accepted, seconds before now (devices buffer while offline).
    vitals_max_age: int = 7 * 86400
    #: How far ahead of the gateway's clock a reading time may be, seconds.
    vitals_future_skew: int = 300
    #: Witnesses cosigning this log's checkpoints (C2SP tlog-witness), see parse_witnesses.
    witnesses: tuple[WitnessPeer, ...] = ()
    #: How many witnesses must cosign a checkpoint before it is served as witnessed;
    #: -1: all of them (0 when there are none). See the ``quorum`` property.
    witness_quorum: int = -1
    #: Most add-checkpoint submissions a second to each witness; newer checkpoints coalesce.
    witness_rate: float = 10.0
    #: Longest wait between retries to a witness that is down or refusing, seconds.
    witness_backoff_max: float = 60.0
    #: A witness TOML file (docs/witness.md): host a witness for peers under ``/witness``.
    witness_config: str = ""
    #: A trust list TOML file (docs/federation.md): peer organizations whose providers'
    #: attestations this gateway accepts by token exchange. Needs ``public_url``.
    trust_file: str = ""
    #: Refusals of anonymous callers are counted per source and window of this many
    #: seconds, one ``auth.refused_summary`` ledger entry per source a window.
    refusal_window: int = 60
    #: Most sources counted apart in one window; further ones share an ``other`` entry.
    refusal_max_sources: int = 1000
    #: Token bucket on each source's anonymous refusals: refill a second, and burst.
    #: Beyond it the source is answered 429 with Retry-After. Loopback is not exempt.
    refusal_rate: float = 1.0
    refusal_burst: int = 60
    #: Reverse proxies (addresses or CIDR networks, comma-separated) whose
    #: X-Forwarded-For names the source; empty: the TCP peer is the source.
    trusted_proxies: str = ""
    #: ``postgresql://user[:password]@host:port/database``: every converted store in that
    #: one database (docs/database.md). Unset: SQLite files under ``data_dir``. Its password
    #: never reaches a log, ``/metrics`` or the config digest.
    database_url: str | None = None
    #: ``redis://[:password@]host:port/db`` (``rediss://`` for TLS, ``unix://`` a socket):
    #: the state every replica must share (DPoP replay cache, signalling tickets) lives
    #: there (docs/redis.md). Unset: in process, for one gateway process. Its password is
    #: masked like the database URL's.
    redis_url: str | None = None
    #: On SIGTERM, how long (s) a replica drains before it exits: not ready at once, new
    #: requests 503, in-flight ones finished, WebSockets closed with 1001 (README
    #: "Running several replicas").
    drain_seconds: float = 20.0
    #: Request limits (docs/reliability.md, "Overload"). Token bucket on every request of
    #: each source address (after trusted_proxies; an IPv6 source is its /64): refill a
    #: second, and burst. Beyond it: 429 with Retry-After. Sized for a clinic behind one NAT.
    address_rate: float = 100.0
    address_burst: int = 400
    #: Token bucket on the requests of each authenticated client (an access token's
    #: subject, or the client proving its key at the token endpoint): refill a second, burst.
    client_rate: float = 20.0
    client_burst: int = 200
    #: Most addresses and clients with a bucket at once; the least recently seen go first.
    rate_max_keys: int = 100_000
    #: Exempt loopback sources from both buckets (development, benchmarks). Refused unless
    #: ``host`` is loopback: behind a reverse proxy on the same host with no
    #: ``trusted_proxies``, every client would come from loopback and go unlimited.
    rate_exempt_loopback: bool = False
    #: Most requests handled at once (WebSockets apart); beyond it: 503 with Retry-After
    #: (load shedding). /healthz, /readyz and /metrics are exempt.
    max_pending: int = 128
    #: Shed (503 with Retry-After) while the event loop runs later than this on average, ms
    #: (a share of requests growing to all at twice it): the queue of a gateway out of CPU
    #: is where no count of requests sees it. 0: off, the default: a loop shared with other
    #: work (an app embedded in tests or another program) runs late for reasons of its own.
    shed_lag_ms: float = 0.0
    #: Most WebSockets open at once: in total (503 beyond), and per subject (429 beyond).
    max_websockets: int = 1000
    max_websockets_per_subject: int = 4
    #: Longest request line and longest header field, bytes, and most header fields.
    max_header_size: int = 8190
    max_headers: int = 64
    #: Seconds a connection may take to send a whole request head, from its opening or its
    #: previous response; it is closed after (slowloris). aiohttp's keepalive_timeout: an idle
    #: keep-alive connection is closed after this too, so a reverse proxy's upstream idle
    #: timeout must be shorter.
    header_timeout: float = 30.0
    #: Seconds a request body may take to arrive whole, from the handler's start: 408 and
    #: the connection closes after.
    body_timeout: float = 30.0
    #: Seconds a response may sit in the send buffer without the client reading any of it:
    #: the connection is cut after.
    send_timeout: float = 60.0
    #: ``mqtt://[user[:password]@]host:port`` (``mqtts://`` for TLS; query parameters in
    #: docs/mqtt.md): devices' batches are taken from that broker too, through a shared
    #: subscription (gateway/mqtt). Unset: no MQTT. Its password is masked like the
    #: database URL's.
    mqtt_url: str | None = None
    #: A device enrolls only with its UDI, and only when the supply chain recorded on this
    #: ledger shows the unit genuine (docs/supply.md). Off: a UDI given is checked all the same.
    device_provenance: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ConfigError("port must be 1..65535")
        if not 1024 <= self.max_body_size <= 64 * 1024 * 1024:
            raise ConfigError("max_body_size must be between 1 KiB and 64 MiB")
        if not 1 <= self.ledger_max_batch <= 65536:
            raise ConfigError("ledger_max_batch must be 1..65536")
        if not 0 <= self.ledger_max_wait_ms <= 1000:
            raise ConfigError("ledger_max_wait_ms must be 0..1000")
        if not self.log_origin or any(c.isspace() or c == "+" for c in self.log_origin):
            raise ConfigError("log_origin must be non-empty, without spaces or '+'")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError("log_level must be DEBUG, INFO, WARNING or ERROR")
        if self.public_url and not self.public_url.startswith(("https://", "http://")):
            raise ConfigError("public_url must be an http(s) origin such as https://gw.example")
        if self.signing_alg not in ("EdDSA", "ES256"):
            raise ConfigError("signing_alg must be EdDSA or ES256")
        if not 30 <= self.token_lifetime <= 3600:
            raise ConfigError("token_lifetime must be 30..3600 seconds")
        if not 0 <= self.clock_skew <= 120:
            raise ConfigError("clock_skew must be 0..120 seconds")
        if not 5 <= self.dpop_window <= 600:
            raise ConfigError("dpop_window must be 5..600 seconds")
        if not 1000 <= self.dpop_replay_max <= 10_000_000:
            raise ConfigError("dpop_replay_max must be 1000..10000000")
        uris = [u for u in self.turn_uris.split(",") if u]
        if any(not u.startswith(("turn:", "turns:", "stun:")) for u in uris):
            raise ConfigError("turn_uris are turn:, turns: or stun: URIs, comma-separated")
        if not 60 <= self.turn_ttl <= 86400:
            raise ConfigError("turn_ttl must be 60..86400 seconds")
        if not 5 <= self.break_glass_minutes <= 24 * 60:
            raise ConfigError("break_glass_minutes must be 5..1440")
        if not 1 <= self.vitals_max_readings <= 10_000:
            raise ConfigError("vitals_max_readings must be 1..10000")
        # The read path relies on these caps to bound the arrival-time window it searches.
        if not 60 <= self.vitals_max_age <= VITALS_MAX_AGE_CAP:
            raise ConfigError("vitals_max_age must be 60 s .. 90 days")
        if not 0 <= self.vitals_future_skew <= VITALS_FUTURE_SKEW_CAP:
            raise ConfigError("vitals_future_skew must be 0..3600 seconds")
        if not 60 <= self.invite_max_ttl <= 30 * 86400:
            raise ConfigError("invite_max_ttl must be 60 s .. 30 days")
        if not 0 <= self.drain_seconds <= 600:
            raise ConfigError("drain_seconds must be 0..600 seconds")
        self._check_witnessing()
        self._check_refusals()
        self._check_limits()
        if self.database_url is not None:
            check_url(self.database_url)  # raises ConfigError, with the password masked
        if self.redis_url is not None:
            check_redis_url(self.redis_url)
        if self.mqtt_url is not None:
            check_mqtt_url(self.mqtt_url)

    def _check_witnessing(self) -> None:
        names = [w.name for w in parse_witnesses(self.witnesses)]
        # Cosignatures are counted by key name (ledger.checkpoint.verify_cosignatures).
        if len(set(names)) != len(names):
            raise ConfigError("each witness may appear once (by key name)")
        if not (self.witness_quorum == -1 or 0 <= self.witness_quorum <= len(names)):
            raise ConfigError(f"witness_quorum must be -1 (all) or 0..{len(names)}")
        if names and self.witness_quorum == 0:
            raise ConfigError("witness_quorum must be at least 1 when witnesses are configured")
        if not 0.01 <= self.witness_rate <= 1000:
            raise ConfigError("witness_rate must be 0.01..1000 submissions a second")
        if not 0.01 <= self.witness_backoff_max <= 3600:
            raise ConfigError("witness_backoff_max must be 0.01..3600 seconds")

    def check_serving(self) -> None:
        """Raises ConfigError when this is unsafe to serve: listening beyond loopback with no
        ``public_url``, token ``iss``/``aud`` and DPoP ``htu`` would follow whatever Host
        header a client sends. On loopback (development, ``make demo``) that is harmless."""
        if self.public_url or _is_loopback(self.host):
            return
        raise ConfigError(
            f"listening on {self.host or 'every address'!r} (not loopback) needs the public "
            "origin: set TELEGATE_PUBLIC_URL (or public_url), e.g. https://gw.example"
        )

    def _check_refusals(self) -> None:
        if not 1 <= self.refusal_window <= 3600:
            raise ConfigError("refusal_window must be 1..3600 seconds")
        if not 1 <= self.refusal_max_sources <= 1_000_000:
            raise ConfigError("refusal_max_sources must be 1..1000000")
        if not 0.001 <= self.refusal_rate <= 10_000:
            raise ConfigError("refusal_rate must be 0.001..10000 refusals a second")
        if not 1 <= self.refusal_burst <= 1_000_000:
            raise ConfigError("refusal_burst must be 1..1000000")
        parse_networks(self.trusted_proxies)

    def _check_limits(self) -> None:
        for name in ("address", "client"):
            if not 0.01 <= getattr(self, f"{name}_rate") <= 100_000:
                raise ConfigError(f"{name}_rate must be 0.01..100000 requests a second")
            if not 1 <= getattr(self, f"{name}_burst") <= 1_000_000:
                raise ConfigError(f"{name}_burst must be 1..1000000")
        if not 100 <= self.rate_max_keys <= 10_000_000:
            raise ConfigError("rate_max_keys must be 100..10000000")
        if self.rate_exempt_loopback and not _is_loopback(self.host):
            raise ConfigError("rate_exempt_loopback is for development: only when host is loopback")
        if not 1 <= self.max_pending <= 100_000:
            raise ConfigError("max_pending must be 1..100000")
        if not (self.shed_lag_ms == 0 or 10 <= self.shed_lag_ms <= 60_000):
            raise ConfigError("shed_lag_ms must be 0 (off) or 10..60000")
        if not 1 <= self.max_websockets <= 1_000_000:
            raise ConfigError("max_websockets must be 1..1000000")
        if not 1 <= self.max_websockets_per_subject <= min(1000, self.max_websockets):
            raise ConfigError("max_websockets_per_subject must be 1..1000, <= max_websockets")
        if not 1024 <= self.max_header_size <= 65536:
            raise ConfigError("max_header_size must be 1024..65536 bytes")
        if not 16 <= self.max_headers <= 1024:
            raise ConfigError("max_headers must be 16..1024")
        for name in ("header_timeout", "body_timeout", "send_timeout"):
            if not 0.1 <= getattr(self, name) <= 3600:
                raise ConfigError(f"{name} must be 0.1..3600 seconds")

    def __repr__(self) -> str:
        # The generated repr would print the database password into any log or traceback.
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        if self.database_url is not None:
            shown["database_url"] = redact(self.database_url)
        if self.redis_url is not None:
            shown["redis_url"] = redact(self.redis_url)
        if self.mqtt_url is not None:
            shown["mqtt_url"] = redact(self.mqtt_url)
        return f"Config({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    @property
    def quorum(self) -> int:
        """Cosignatures a checkpoint needs to count as witnessed (k of n)."""
        return len(self.witnesses) if self.witness_quorum == -1 else self.witness_quorum

    @property
    def db_path(self) -> Path:
        return self.data_dir / "ledger.db"

    @property
    def key_dir(self) -> Path:
        return self.data_dir / "keys"

    def digest(self) -> str:
        """SHA-256 of the canonical settings: recorded in ``gateway.started`` events."""
        d = {f.name: str(getattr(self, f.name)) for f in fields(self)}
        if self.database_url is not None:
            # The same settings with another password are the same settings; and a digest
            # of a secret this short would let anyone with the event guess it offline.
            d["database_url"] = redact(self.database_url)
        if self.redis_url is not None:
            d["redis_url"] = redact(self.redis_url)
        if self.mqtt_url is not None:
            d["mqtt_url"] = redact(self.mqtt_url)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        """Defaults, then the TOML file named by ``TELEGATE_CONFIG``, then ``TELEGATE_*``
        variables, then ``overrides`` (CLI flags). Raises ConfigError on a bad value."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        if path := env.get("TELEGATE_CONFIG"):
            try:
                values.update(tomllib.loads(Path(path).read_text()))
            except (OSError, ValueError) as e:  # ValueError: not UTF-8, or not TOML
                raise ConfigError(f"cannot read config file {path}: {e}") from e
        for f in fields(cls):
            if (raw := env.get(f"TELEGATE_{f.name.upper()}")) is not None:
                values[f.name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}")
        kwargs: dict[str, Any] = {}
        defaults = cls()
        for name, raw in values.items():
            if name == "witnesses":
                kwargs[name] = parse_witnesses(raw)
                continue
            if name in ("database_url", "redis_url", "mqtt_url"):
                kwargs[name] = str(raw) or None  # an empty variable means unset
                continue
            kind = type(getattr(defaults, name))
            try:
                # TOML has lists, tables and booleans that int() and str() would coerce.
                if isinstance(raw, list | dict) or (isinstance(raw, bool) and kind is not bool):
                    raise TypeError(raw)
                if kind is bool and isinstance(raw, str):
                    if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                        raise ValueError(raw)
                    kwargs[name] = raw.lower() in ("1", "true", "yes")
                    continue
                kwargs[name] = Path(raw) if kind is type(Path()) else kind(raw)
            except (TypeError, ValueError, OverflowError) as e:  # OverflowError: int(inf)
                raise ConfigError(f"{name}: {raw!r} is not a valid {kind.__name__}") from e
        return dataclasses.replace(defaults, **kwargs)
