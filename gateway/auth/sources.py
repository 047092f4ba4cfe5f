"""Where a request comes from, and the keyed pseudonym that stands for it on the ledger.

An IP address can identify a person (a patient's home connection), so the ledger never
holds one: it holds ``src:`` + HMAC-SHA256(key, address), truncated to 128 bits. The key
lives in the key directory (``source-pseudonym.key``, 0600), so only someone holding it
can tell which address a pseudonym stands for: an operator checks a suspect address with
``telegate audit pseudonym 203.0.113.5`` (same key, same answer), where a dictionary
attack over the IPv4 space by a ledger reader without the key gets nowhere.

The source is the TCP peer (``request.remote``). Behind a reverse proxy every request
would come from the proxy, so ``trusted_proxies`` lists the proxies' addresses or
networks: only a request from one of them has its ``X-Forwarded-For`` read, right to
left, skipping further trusted proxies; the first untrusted hop is the source. A header
from anyone else is ignored (a client could write any address in it). An IPv6 source is
its /64: one subscriber usually holds a whole /64 and could rotate within it at will.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from pathlib import Path

from ledger.atomic import create_exclusive

from ..errors import ConfigError

__all__ = [
    "KEY_FILE",
    "Networks",
    "load_pseudonym_key",
    "parse_networks",
    "pseudonym",
    "pseudonym_of",
    "source_address",
]

KEY_FILE = "source-pseudonym.key"
UNKNOWN = "unknown"

Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


def parse_networks(raw: str) -> Networks:
    """Comma-separated addresses or CIDR networks. Raises ConfigError."""
    out = []
    for item in (i.strip() for i in raw.split(",")):
        if not item:
            continue
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError as e:
            raise ConfigError(f"trusted_proxies: {item!r} is not an address or network") from e
    return tuple(out)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        a = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped is not None:
        return a.ipv4_mapped
    return a


def _key(a: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if isinstance(a, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((a, 64), strict=False))
    return str(a)


def source_address(remote: str | None, forwarded_for: list[str], trusted: Networks) -> str:
    """The source a request is counted under: an IPv4 address, an IPv6 /64, or
    ``unknown`` (no peer address, as on a Unix socket)."""
    peer = _address(remote) if remote else None
    if peer is None:
        return UNKNOWN
    if not trusted or not any(peer in n for n in trusted):
        return _key(peer)
    hops = [h for header in forwarded_for for h in header.split(",")]
    for hop in reversed(hops):
        a = _address(hop)
        if a is None:
            break  # a malformed hop: nothing left of it can be believed
        if not any(a in n for n in trusted):
            return _key(a)
    return _key(peer)


def pseudonym(key: bytes, source: str) -> str:
    """What the ledger records for ``source``: stable under one key, not reversible
    without it."""
    return "src:" + hmac.new(key, source.encode(), hashlib.sha256).hexdigest()[:32]


def pseudonym_of(key: bytes, address: str) -> str:
    """The pseudonym of an address as an operator types it (``203.0.113.5``, ``::1``).
    Raises ValueError if it is not an IP address."""
    a = _address(address)
    if a is None:
        raise ValueError(f"{address!r} is not an IP address")
    return pseudonym(key, _key(a))


def load_pseudonym_key(key_dir: Path, *, create: bool) -> bytes:
    """The pseudonym key from ``key_dir``, made (0600) on first use if ``create``.
    Raises FileNotFoundError if it is missing and not to be made."""
    path = key_dir / KEY_FILE
    if create and not path.exists():
        key_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Whole and durable, or not there (ledger.atomic); another process may make it
        # first: then theirs is used.
        create_exclusive(path, secrets.token_bytes(32), 0o600)
    return path.read_bytes()
