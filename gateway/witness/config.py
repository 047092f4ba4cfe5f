"""Witness configuration: a frozen dataclass read once from a TOML file.

```toml
name = "witness.example.org/w1"   # the witness key name (no spaces, no '+')
data_dir = "witness-data"          # state.db lives here; relative paths are from this file
key_file = "witness.skey"          # optional; default <data_dir>/witness.skey
host = "127.0.0.1"
port = 8190
# database_url = "postgresql://user:password@host:5432/witness"  # optional: several witness
#   processes sharing one state; env TELEGATE_WITNESS_DATABASE_URL overrides it

[[logs]]
origin = "hospital-a.example/telegate/log"
vkeys = ["hospital-a.example/telegate/log+1b2c3d4e+AY...="]
```
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ledger.errors import LedgerError
from ledger.note import Verifier
from ledger.witness import MAX_REQUEST_SIZE, WitnessedLog

from ..db.url import check_url, redact
from ..errors import ConfigError

__all__ = ["DATABASE_URL_ENV", "LogConfig", "WitnessConfig"]

#: The environment variable that gives the witness its database (as ``database_url``).
DATABASE_URL_ENV = "TELEGATE_WITNESS_DATABASE_URL"


@dataclass(frozen=True, slots=True)
class LogConfig:
    """A witnessed log: its checkpoint origin and the Ed25519 vkeys trusted to sign it."""

    origin: str
    vkeys: tuple[str, ...]

    def witnessed(self) -> WitnessedLog:
        """Parse the vkeys. Raises ConfigError."""
        try:
            return WitnessedLog(self.origin, tuple(Verifier.from_vkey(k) for k in self.vkeys))
        except LedgerError as e:
            raise ConfigError(f"log {self.origin!r}: {e}") from e


@dataclass(frozen=True, slots=True)
class WitnessConfig:
    """Every witness setting, checked on construction. Raises ConfigError."""

    name: str
    data_dir: Path
    logs: tuple[LogConfig, ...] = ()
    key_file: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8190
    #: Largest add-checkpoint body accepted, bytes (a signed note plus 63 proof lines).
    max_body_size: int = MAX_REQUEST_SIZE
    #: ``postgresql://...``: the state in that database (docs/database.md), shared by every
    #: witness process given it; None: ``state.db`` in ``data_dir``.
    database_url: str | None = None

    def __post_init__(self) -> None:
        # signed-note: key names are non-empty, without Unicode spaces or '+'.
        if not self.name or "+" in self.name or any(c.isspace() for c in self.name):
            raise ConfigError("name must be non-empty, without spaces or '+'")
        if not 0 < self.port < 65536:
            raise ConfigError("port must be 1..65535")
        if not 1024 <= self.max_body_size <= MAX_REQUEST_SIZE:
            raise ConfigError(f"max_body_size must be 1024..{MAX_REQUEST_SIZE}")
        origins = [log.origin for log in self.logs]
        if len(set(origins)) != len(origins):
            raise ConfigError("each log origin may appear once")
        for log in self.logs:
            if not log.origin or "\n" in log.origin:
                raise ConfigError("a log origin must be one non-empty line")
            log.witnessed()
        if self.database_url is not None:
            check_url(self.database_url)  # raises ConfigError, with the password masked

    def __repr__(self) -> str:
        # The generated repr would print the database password into any log or traceback.
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        if self.database_url is not None:
            shown["database_url"] = redact(self.database_url)
        return f"WitnessConfig({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    @property
    def key_path(self) -> Path:
        return self.key_file if self.key_file is not None else self.data_dir / "witness.skey"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "state.db"

    def witnessed_logs(self) -> list[WitnessedLog]:
        return [log.witnessed() for log in self.logs]

    @classmethod
    def load(cls, path: str | Path, env: Mapping[str, str] | None = None) -> WitnessConfig:
        """Read a TOML file; relative paths in it are taken from the file's directory.
        ``TELEGATE_WITNESS_DATABASE_URL`` (from ``env``, default the process environment)
        overrides its ``database_url``; set but empty, it means the embedded file."""
        path = Path(path)
        env = os.environ if env is None else env
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"cannot read witness config {path}: {e}") from e
        if (url := env.get(DATABASE_URL_ENV)) is not None:
            raw["database_url"] = url
        return cls.from_dict(raw, base=path.parent)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], *, base: Path = Path()) -> WitnessConfig:
        known = {"name", "data_dir", "logs", "key_file", "host", "port", "max_body_size"}
        known.add("database_url")
        if unknown := set(raw) - known:
            raise ConfigError(f"unknown witness settings: {', '.join(sorted(unknown))}")
        for required in ("name", "data_dir"):
            if not isinstance(raw.get(required), str):
                raise ConfigError(f"{required} is required (a string)")
        kw: dict[str, Any] = {"name": raw["name"], "data_dir": base / raw["data_dir"]}
        if "key_file" in raw:
            kw["key_file"] = base / _typed(raw, "key_file", str)
        if "host" in raw:
            kw["host"] = _typed(raw, "host", str)
        for key in ("port", "max_body_size"):
            if key in raw:
                kw[key] = _typed(raw, key, int)
        if "database_url" in raw:
            kw["database_url"] = _typed(raw, "database_url", str) or None  # "": unset
        kw["logs"] = tuple(_log(entry) for entry in _typed(raw, "logs", list, []))
        return cls(**kw)


_KINDS = {str: "a string", int: "an integer", list: "a list"}


def _typed(raw: dict[str, Any], key: str, kind: type, default: Any = None) -> Any:
    value = raw.get(key, default)
    # bool is an int in Python; TOML's true is no port number.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{key} must be {_KINDS[kind]}")
    return value


def _log(entry: Any) -> LogConfig:
    if not isinstance(entry, dict) or set(entry) - {"origin", "vkey", "vkeys"}:
        raise ConfigError("each [[logs]] entry has origin and vkey (or vkeys) only")
    origin = _typed(entry, "origin", str)
    vkeys = list(_typed(entry, "vkeys", list, []))
    if "vkey" in entry:
        vkeys.append(_typed(entry, "vkey", str))
    if not vkeys or not all(isinstance(k, str) for k in vkeys):
        raise ConfigError(f"log {origin!r} needs vkey (a string) or vkeys (strings)")
    return LogConfig(origin, tuple(vkeys))
