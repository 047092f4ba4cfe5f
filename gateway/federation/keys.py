"""A peer organization's attestation signing keys: pinned JWKS, and the trust-on-first-use
rotation rule. Pure: no I/O (fetching is :mod:`gateway.federation.peers`).

Each key verifies exactly one algorithm, fixed by its type (RFC 8725 section 3.1: the
algorithm is pinned per key, never read from the token): an Ed25519 key EdDSA, a P-256 key
ES256. ``none``, HMAC and RSA are never accepted.

**Rotation under TOFU.** The first JWKS fetched from the peer's issuer is pinned. A key not
pinned is accepted only from a JWKS that still holds at least one pinned key unchanged: the
peer rotates with overlap (telegate keeps a retired key in its JWKS while tokens it signed
live), so every new key is introduced by a set that also holds a key we already trust. A
set with no pinned key, or one that gives a pinned ``kid`` another key, is refused. The
rule stops a wholesale swap of the peer's keys (a lapsed domain, a misconfigured server);
it cannot stop whoever serves the JWKS from copying the public keys into a forged set. What
stops that attacker is the receipt: every token must come with a receipt under the peer's
log key, which is pinned in the trust list and never learnt on first use.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..auth.jwk import HolderKey, InvalidKey
from ..errors import GatewayError

__all__ = ["KeyContinuityBroken", "PinnedKey", "by_kid", "dump_jwks", "parse_jwks", "rotate"]

MAX_KEYS = 32
MAX_KID = 128


class KeyContinuityBroken(GatewayError):
    """A JWKS fetched from a peer does not continue the pinned one (see the module text)."""

    status = 400
    slug = "key-continuity"
    title = "The peer's keys do not continue the pinned ones"


@dataclass(frozen=True, slots=True)
class PinnedKey:
    """One signing key of a peer: its ``kid`` and the public key with its one algorithm."""

    kid: str
    key: HolderKey

    @property
    def alg(self) -> str:
        return self.key.alg

    def jwk(self) -> dict[str, str]:
        return {**self.key.jwk, "kid": self.kid, "alg": self.alg, "use": "sig"}


def parse_jwks(raw: Any, *, strict: bool) -> tuple[PinnedKey, ...]:
    """The signing keys of a JWKS (RFC 7517 section 5).

    ``strict`` (a set pinned in the trust list): every entry must be an accepted signing
    key. Otherwise (a set fetched from a peer), entries for other uses or of other types
    are skipped: a peer may publish keys this gateway will never accept. Raises InvalidKey
    for a malformed set, a missing or repeated ``kid``, or (strict) an unusable key.
    """
    if not isinstance(raw, dict) or not isinstance(raw.get("keys"), list):
        raise InvalidKey('a JWKS is an object with a "keys" list')
    if len(raw["keys"]) > MAX_KEYS:
        raise InvalidKey(f"a JWKS of more than {MAX_KEYS} keys")
    out: dict[str, PinnedKey] = {}
    for jwk in raw["keys"]:
        if not isinstance(jwk, dict):
            raise InvalidKey("a JWKS entry is not an object")
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID:
            raise InvalidKey("every key needs a kid (RFC 7517 4.5), at most 128 characters")
        if kid in out:
            raise InvalidKey(f"kid {kid!r} appears twice")
        try:
            if jwk.get("use", "sig") != "sig" or jwk.get("key_ops") not in (None, ["verify"]):
                raise InvalidKey(f"key {kid!r} is not a signature verification key")
            public = {k: v for k, v in jwk.items() if k not in ("kid", "use", "key_ops")}
            out[kid] = PinnedKey(kid, HolderKey.from_jwk(public))
        except InvalidKey as e:
            if strict:
                raise InvalidKey(f"key {kid!r}: {e.detail}") from e
    if strict and not out:
        raise InvalidKey("a pinned JWKS needs at least one key")
    return tuple(out.values())


def rotate(pinned: Iterable[PinnedKey], fetched: Iterable[PinnedKey]) -> tuple[PinnedKey, ...]:
    """The pin set after fetching a peer's JWKS again: the fetched set, if it continues the
    pinned one (at least one pinned key in it unchanged, and no pinned kid with another
    key). Keys the peer dropped are dropped here too. Raises KeyContinuityBroken."""
    old = {k.kid: k.key.jkt for k in pinned}
    new = tuple(fetched)
    changed = [k.kid for k in new if k.kid in old and old[k.kid] != k.key.jkt]
    if changed:
        raise KeyContinuityBroken(f"the peer's JWKS gives kid {changed[0]!r} another key")
    if not any(k.kid in old for k in new):
        raise KeyContinuityBroken("the peer's JWKS holds none of the pinned keys")
    return new


def dump_jwks(keys: Iterable[PinnedKey]) -> str:
    """A JWKS document of ``keys`` (how pins are kept on disk)."""
    return json.dumps({"keys": [k.jwk() for k in keys]}, sort_keys=True)


def by_kid(keys: Iterable[PinnedKey]) -> Mapping[str, PinnedKey]:
    """The keys by ``kid`` (unique within a parsed set)."""
    return {k.kid: k for k in keys}
