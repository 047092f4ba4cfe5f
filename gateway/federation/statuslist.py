"""A peer organization's Token Status List (draft-ietf-oauth-status-list), checked here.
Pure: no I/O (fetching is :mod:`.peers`, caching :mod:`.revocation`).

A peer's attestation names its bit, ``status.status_list = {idx, uri}``, with the ``uri``
under the peer's issuer (:func:`.verify.status_ref`). The list fetched from there is a
``statuslist+jwt`` checked with the same key rules as the peer's tokens: the key is chosen
by ``kid`` among the peer's pinned keys and verifies only its own algorithm. Its ``sub`` is
the ``uri`` it was fetched from, and an ``iss``, if it has one, the peer's issuer.

**How long a list is used.** Until ``min(iat + skew, fetched) + ttl`` on this gateway's
clock, and never past ``exp + skew``. ``ttl`` is the list's own (60 s at telegate), capped
here at :data:`MAX_TTL`; a list without one is used for :data:`DEFAULT_TTL`. Measuring from
the signed ``iat`` means an old list served again (a stale cache on the way, or someone on
the path replaying it) buys no time beyond the ``ttl`` of when the peer signed it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from ..auth.jwk import InvalidKey, unverified_part
from ..auth.status import StatusList
from .keys import PinnedKey
from .trust import Peer
from .verify import Refused

__all__ = [
    "DEFAULT_TTL",
    "MAX_TTL",
    "PeerStatusList",
    "status_list_kid",
    "verify_status_list",
]

#: Longest a peer's list is used before it is fetched again, whatever its ``ttl`` says: the
#: bound on how late a revocation at the peer takes effect here (docs/federation.md).
MAX_TTL = 300
#: How long a list that states no ``ttl`` is used.
DEFAULT_TTL = 60
MAX_LIST_JWT = 64 * 1024
#: Decompressed size of a list: 1 MiB is 8 million tokens.
MAX_LIST_BYTES = 1 << 20
TYP = "statuslist+jwt"


@dataclass(frozen=True, slots=True)
class PeerStatusList:
    """A peer's status list that passed every check, and until when it is used here."""

    uri: str
    bits: StatusList
    iat: int
    until: int

    def revoked(self, idx: int) -> bool:
        """Whether bit ``idx`` is set. telegate's lists end at their last set bit, so an
        index past the end is a token never revoked."""
        return self.bits.get(idx) == 1


def _part(text: str, part: int) -> dict[str, Any]:
    try:
        return unverified_part(text, part, limit=MAX_LIST_JWT)
    except InvalidKey as e:
        raise Refused("bad_status_list", "the peer's status list is not a compact JWS") from e


def status_list_kid(text: str) -> str:
    """The ``kid`` a status list's header names, unverified: only to choose the key."""
    if len(text) > MAX_LIST_JWT:
        raise Refused("bad_status_list", "the peer's status list is too large")
    kid = _part(text, 0).get("kid")
    if not isinstance(kid, str) or not 0 < len(kid) <= 256:
        raise Refused("bad_status_list", "the peer's status list names no kid")
    return kid


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _bits(claim: Any) -> StatusList:
    if not isinstance(claim, dict):
        raise Refused("bad_status_list", "the peer's status list is not a 1-bit list")
    try:
        return StatusList.decode(claim, max_bytes=MAX_LIST_BYTES)
    except ValueError as e:
        raise Refused("bad_status_list", f"the peer's status list does not decode: {e}") from e


def verify_status_list(
    text: str,
    uri: str,
    peer: Peer,
    keys: Mapping[str, PinnedKey],
    now: int,
    skew: int,
    *,
    max_ttl: int = MAX_TTL,
) -> PeerStatusList:
    """Check the status list fetched from ``uri`` (see the module text). Raises Refused
    (``bad_status_list``), with a detail that says which check failed."""
    header = _part(text, 0)
    kid = status_list_kid(text)
    key = keys.get(kid)
    if key is None:
        raise Refused(
            "bad_status_list", f"the status list is signed by a key not pinned for {peer.name}"
        )
    if header.get("alg") != key.alg or header.get("typ") != TYP:
        raise Refused("bad_status_list", f"the status list's algorithm or type is wrong ({TYP})")
    try:
        c: dict[str, Any] = jwt.decode(
            text,
            key.key.key,
            algorithms=[key.alg],
            options={
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": False,
                "require": ["sub", "iat", "status_list"],
            },
        )
    except jwt.PyJWTError as e:
        raise Refused("bad_status_list", f"the status list does not verify: {e}") from e
    if c["sub"] != uri:
        raise Refused("bad_status_list", "the status list names another uri (sub)")
    if "iss" in c and c["iss"] != peer.issuer:
        raise Refused("bad_status_list", "the status list names another issuer")
    iat, ttl = _int(c["iat"]), _int(c.get("ttl", DEFAULT_TTL))
    exp = _int(c["exp"]) if "exp" in c else None
    if iat is None or ttl is None or ttl < 0 or ("exp" in c and exp is None):
        raise Refused("bad_status_list", "the status list's iat, exp or ttl is malformed")
    if iat > now + skew:
        raise Refused("bad_status_list", "the status list is dated in the future")
    if exp is not None and now >= exp + skew:
        raise Refused("bad_status_list", "the status list has expired")
    # Usable now if signed within its ttl (a ttl of 0: for this one check, never kept).
    fresh = min(iat + skew, now) + min(ttl, max_ttl)
    if fresh < now:
        raise Refused("bad_status_list", "the status list is older than its ttl")
    until = fresh if exp is None else min(fresh, exp + skew)
    return PeerStatusList(uri, _bits(c["status_list"]), iat, until)
