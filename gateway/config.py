"""Gateway configuration: a frozen dataclass read once from ``TELEGATE_*`` env or TOML."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = ["Config"]


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

    @property
    def db_path(self) -> Path:
        return self.data_dir / "ledger.db"

    @property
    def key_dir(self) -> Path:
        return self.data_dir / "keys"

    def digest(self) -> str:
        """SHA-256 of the canonical settings: recorded in ``gateway.started`` events."""
        d = {f.name: str(getattr(self, f.name)) for f in fields(self)}
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
            except (OSError, tomllib.TOMLDecodeError) as e:
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
            kind = type(getattr(defaults, name))
            try:
                kwargs[name] = Path(raw) if kind is type(Path()) else kind(raw)
            except (TypeError, ValueError) as e:
                raise ConfigError(f"{name}: {raw!r} is not a valid {kind.__name__}") from e
        return dataclasses.replace(defaults, **kwargs)
