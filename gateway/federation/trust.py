"""The trust list: peer organizations whose attestations this gateway accepts.

A TOML file (``trust_file``); relative paths in it are taken from the file's directory.

```toml
[[peers]]
name = "clinic-b"                          # this gateway's name for the peer (events, logs)
issuer = "https://gw.clinic-b.example"     # the peer's public_url: its tokens' iss
log_vkey = "clinic-b.example/telegate/log+1b2c3d4e+AY..."  # `telegate keys show` there
witnesses = [                              # tlog-cosignature/v1 vkeys (type 0x04)
  "witness.example/w1+5ac2e9b1+BA...",
  "hospital-a.example/witness+0c71d3aa+BK...",   # this gateway's own embedded witness
]
min_witnesses = 2                          # k of those; default: all of them
jwks_file = "clinic-b.jwks.json"           # its signing keys, pinned; or inline:
# jwks = { keys = [{ kty = "OKP", crv = "Ed25519", x = "...", kid = "..." }] }
# jwks_tofu = true                         # or: fetch <issuer>/.well-known/jwks.json once, pin
# ledger_url = "https://gw.clinic-b.example/ledger"  # default: <issuer>/ledger
```

Exactly one of ``jwks``, ``jwks_file`` and ``jwks_tofu``. The log's checkpoint origin is
its vkey's name (telegate names the log key after the origin).
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yarl import URL

from ledger.errors import LedgerError
from ledger.note import ALG_COSIGNATURE_V1, ALG_ED25519, Verifier

from ..auth.jwk import InvalidKey
from ..errors import ConfigError
from .keys import PinnedKey, parse_jwks

__all__ = ["Peer", "TrustList", "load_trust_list", "normal_origin"]

_PEER_KEYS = {
    "name",
    "issuer",
    "log_vkey",
    "witnesses",
    "min_witnesses",
    "jwks",
    "jwks_file",
    "jwks_tofu",
    "ledger_url",
}


def normal_origin(url: str) -> str:
    """``scheme://host[:port]`` of an http(s) URL with nothing after the authority, in the
    form telegate writes ``iss`` (lower-case, no default port, no trailing slash). Raises
    ValueError otherwise."""
    u = URL(url)
    if u.scheme not in ("http", "https") or not u.host or u.user or u.password:
        raise ValueError("an http(s) origin")
    if u.raw_path not in ("", "/") or u.raw_query_string or u.raw_fragment:
        raise ValueError("an origin only: no path, query or fragment")
    return str(u.origin()).rstrip("/")


@dataclass(frozen=True, slots=True)
class Peer:
    """One peer organization, validated on construction (raises ConfigError)."""

    name: str
    issuer: str
    log: Verifier
    witnesses: tuple[Verifier, ...]
    min_witnesses: int
    #: The pinned signing keys; empty when they are learnt on first use (``tofu``).
    keys: tuple[PinnedKey, ...] = ()
    tofu: bool = False
    ledger_url: str = ""

    def __post_init__(self) -> None:
        where = f"peer {self.name!r}"
        if not self.name or len(self.name) > 64 or not self.name.isprintable() or " " in self.name:
            raise ConfigError("a peer name is 1-64 printable characters without spaces")
        try:
            if normal_origin(self.issuer) != self.issuer:
                raise ValueError(f"write it as {normal_origin(self.issuer)!r}")
        except ValueError as e:
            raise ConfigError(f"{where}: issuer must be {e}") from e
        if self.log.alg != ALG_ED25519:
            raise ConfigError(f"{where}: log_vkey is not an Ed25519 (0x01) note key")
        if any(w.alg != ALG_COSIGNATURE_V1 for w in self.witnesses):
            raise ConfigError(f"{where}: witnesses are cosignature/v1 (0x04) vkeys")
        names = [w.name for w in self.witnesses]
        # Cosignatures are counted once per key name (ledger.checkpoint.verify_witnessed).
        if len(set(names)) != len(names):
            raise ConfigError(f"{where}: each witness may appear once (by key name)")
        if not 1 <= self.min_witnesses <= len(names):
            raise ConfigError(
                f"{where}: min_witnesses must be 1..{len(names)}: a peer's checkpoints count "
                "only when witnesses this gateway chose have cosigned them"
            )
        if self.tofu == bool(self.keys):
            raise ConfigError(f"{where}: give exactly one of jwks, jwks_file and jwks_tofu")
        if not self.ledger_url.startswith(("http://", "https://")):
            raise ConfigError(f"{where}: ledger_url must be an http(s) URL")

    @property
    def origin(self) -> str:
        """The checkpoint origin of the peer's log (its vkey's name)."""
        return self.log.name


@dataclass(frozen=True, slots=True)
class TrustList:
    """Every peer, each issuer and log once. Raises ConfigError."""

    peers: tuple[Peer, ...] = ()

    def __post_init__(self) -> None:
        for what, values in (
            ("name", [p.name for p in self.peers]),
            ("issuer", [p.issuer for p in self.peers]),
            ("log_vkey", [p.log.vkey for p in self.peers]),
        ):
            if len(set(values)) != len(values):
                raise ConfigError(f"trust list: each peer {what} may appear once")

    def by_issuer(self, issuer: str) -> Peer | None:
        return next((p for p in self.peers if p.issuer == issuer), None)

    def by_name(self, name: str) -> Peer | None:
        return next((p for p in self.peers if p.name == name), None)

    @property
    def issuers(self) -> frozenset[str]:
        return frozenset(p.issuer for p in self.peers)


def load_trust_list(path: str | Path) -> TrustList:
    """Read and validate a trust list TOML file. Raises ConfigError naming the file."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"cannot read trust_file {path}: {e}") from e
    try:
        if set(raw) - {"peers"}:
            raise ConfigError(f"unknown settings: {', '.join(sorted(set(raw) - {'peers'}))}")
        peers = raw.get("peers", [])
        if not isinstance(peers, list):
            raise ConfigError("peers is a list of [[peers]] tables")
        return TrustList(tuple(_peer(p, path.parent) for p in peers))
    except ConfigError as e:
        raise ConfigError(f"trust_file {path}: {e.detail}") from e


def _peer(raw: Any, base: Path) -> Peer:
    if not isinstance(raw, dict):
        raise ConfigError("each [[peers]] entry is a table")
    name = raw.get("name")
    if not isinstance(name, str):
        raise ConfigError("each peer needs a name (a string)")
    where = f"peer {name!r}"
    if unknown := set(raw) - _PEER_KEYS:
        raise ConfigError(f"{where}: unknown settings: {', '.join(sorted(unknown))}")
    issuer, log_vkey = raw.get("issuer"), raw.get("log_vkey")
    if not isinstance(issuer, str) or not isinstance(log_vkey, str):
        raise ConfigError(f"{where}: issuer and log_vkey are required (strings)")
    witnesses = raw.get("witnesses", [])
    if not isinstance(witnesses, list) or not all(isinstance(w, str) for w in witnesses):
        raise ConfigError(f"{where}: witnesses is a list of vkeys")
    k = raw.get("min_witnesses", len(witnesses))
    if not isinstance(k, int) or isinstance(k, bool):
        raise ConfigError(f"{where}: min_witnesses must be an integer")
    try:
        log = Verifier.from_vkey(log_vkey)
        wits = tuple(Verifier.from_vkey(w) for w in witnesses)
    except LedgerError as e:
        raise ConfigError(f"{where}: {e}") from e
    ledger_url = raw.get("ledger_url", issuer.rstrip("/") + "/ledger")
    if not isinstance(ledger_url, str):
        raise ConfigError(f"{where}: ledger_url must be a string")
    return Peer(
        name=name,
        issuer=issuer,
        log=log,
        witnesses=wits,
        min_witnesses=k,
        keys=_pinned(raw, base, where),
        tofu=raw.get("jwks_tofu") is True,
        ledger_url=ledger_url.rstrip("/"),
    )


def _pinned(raw: dict[str, Any], base: Path, where: str) -> tuple[PinnedKey, ...]:
    given = [k for k in ("jwks", "jwks_file") if k in raw]
    if "jwks_tofu" in raw and raw["jwks_tofu"] is not True:
        raise ConfigError(f"{where}: jwks_tofu is true or absent")
    if len(given) + ("jwks_tofu" in raw) != 1:
        raise ConfigError(f"{where}: give exactly one of jwks, jwks_file and jwks_tofu")
    if not given:
        return ()
    if given == ["jwks_file"]:
        if not isinstance(raw["jwks_file"], str):
            raise ConfigError(f"{where}: jwks_file must be a path")
        file = base / raw["jwks_file"]
        try:
            doc = json.loads(file.read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"{where}: cannot read jwks_file {file}: {e}") from e
    else:
        doc = raw["jwks"]
    try:
        return parse_jwks(doc, strict=True)
    except InvalidKey as e:
        raise ConfigError(f"{where}: pinned JWKS: {e.detail}") from e
