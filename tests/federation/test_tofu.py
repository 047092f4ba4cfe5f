"""Trust on first use of a peer's JWKS, and the rotation rule: a key not pinned is accepted
only from a JWKS that still holds a pinned key (docs/federation.md)."""

from __future__ import annotations

import json
import time

import jwt

from gateway.auth.keys import KeyRing
from gateway.federation import FEDERATION

from .conftest import World
from .orgs import exchange, exchange_response, refused

REFETCH = 61  # past the least time between two fetches of the peer's JWKS


def _pinned(w: World) -> set[str]:
    found = w.a.c.server.app[FEDERATION].state.pinned(w.b.url)
    assert found is not None
    return {k["kid"] for k in json.loads(found[0])["keys"]}


def _later(w: World, seconds: float) -> None:
    """A's clock moves on; so does the provider's, for its DPoP proofs."""
    w.a.clock.offset += seconds
    w.provider.clock = lambda: time.time() + w.a.clock.offset


async def test_keys_pinned_on_first_use_then_rotated_with_overlap(world: World) -> None:
    w = await world.up(tofu=True)
    assert w.a.c.server.app[FEDERATION].state.pinned(w.b.url) is None
    await w.accepted()
    first = _pinned(w)
    assert first == {k["kid"] for k in w.b.jwks()["keys"]}

    ring = KeyRing.open(w.b.data / "keys" / "signing", int(time.time()))
    new = ring.rotate(int(time.time()))  # B's JWKS now holds the old key and the new one
    token, receipt = await w.b_token()
    assert jwt.get_unverified_header(token)["kid"] == new.kid
    # Just pinned: A does not fetch again yet, whatever kid a token names.
    await refused(w.a, await exchange_response(w.a.c, w.provider, token, receipt), "unknown_key")
    _later(w, REFETCH)
    await exchange(w.a.c, w.provider, token, receipt)
    assert _pinned(w) == first | {new.kid}


async def test_a_wholesale_swap_of_keys_is_refused(world: World) -> None:
    w = await world.up(tofu=True)
    await w.accepted()
    pinned = _pinned(w)
    # B's JWKS is replaced by a set with none of the pinned keys (no overlap).
    swapped = KeyRing(w.b.data / "keys" / "signing").rotate(int(time.time()))
    token, receipt = await w.b_token()
    assert jwt.get_unverified_header(token)["kid"] == swapped.kid
    _later(w, REFETCH)
    resp = await exchange_response(w.a.c, w.provider, token, receipt)
    await refused(w.a, resp, "key_continuity")
    assert _pinned(w) == pinned
    # Asking again at once does not make A fetch again (nor accept).
    resp = await exchange_response(w.a.c, w.provider, token, receipt)
    await refused(w.a, resp, "unknown_key")


async def test_no_first_use_while_the_peer_is_down(world: World) -> None:
    w = await world.up(tofu=True)
    token, receipt = await w.b_token()
    await w.b.c.close()
    resp = await exchange_response(w.a.c, w.provider, token, receipt)
    # B's keys could not be had, so nobody has been shown to hold B's token: counted.
    await refused(w.a, resp, "peer_unreachable", "temporarily_unavailable", 503, counted=True)
    assert w.a.c.server.app[FEDERATION].state.pinned(w.b.url) is None
