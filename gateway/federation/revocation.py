"""Following revocations at peer organizations: their status lists, read at each exchange
and again while a token issued here by exchange lives.

:class:`StatusLists` fetches and checks a peer's list (:mod:`.statuslist`) and keeps it
until its ``until``; one fetch at a time per list. :class:`Revocations` uses it twice:

- at exchange, a peer's token whose bit is set is refused (``revoked_at_peer``);
- while a token issued here lives, every request that presents it is checked against a
  list at most ``ttl`` old (:meth:`Revocations.recheck`). When the peer's bit is set,
  this gateway revokes its own token (the ``revoke`` callback: status bit, store, ledger).
  Every fetch also revokes at once the other live tokens whose peer bits it shows set.

**Fail closed.** When a list is due and cannot be fetched, or does not verify, the caller
gets Refused, never the stale list. For :data:`RETRY` seconds after such a failure callers
are refused at once, instead of each waiting on a peer that is down. Nothing is revoked
for it: once the peer answers, the token works again, unless its bit is set.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping

from .keys import PinnedKey
from .peers import PeerReader, Unreachable
from .state import FederationState, Link
from .statuslist import MAX_TTL, PeerStatusList, status_list_kid, verify_status_list
from .trust import Peer, TrustList
from .verify import Refused, StatusRef

__all__ = ["RETRY", "Revocations", "Revoke", "StatusLists"]

#: Seconds between two fetches of a list after one failed.
RETRY = 5
#: Token ids remembered as not issued by exchange (each costs one store read per replica
#: once): enough for every live token of a large deployment; forgetting one costs a read.
UNLINKED_MAX = 65_536

KeysFor = Callable[[Peer, str, int], Awaitable[Mapping[str, PinnedKey]]]
#: Revoke this gateway's token of a link, for a reason (a short code); idempotent.
Revoke = Callable[[Link, str], Awaitable[None]]


class StatusLists:
    """The peers' status lists, by peer and uri. Coroutines run on one loop."""

    def __init__(
        self,
        reader: PeerReader,
        keys: KeysFor,
        *,
        skew: int,
        max_ttl: int = MAX_TTL,
        retry: int = RETRY,
    ) -> None:
        self.reader, self.keys = reader, keys
        self.skew, self.max_ttl, self.retry = skew, max_ttl, retry
        self._lists: dict[tuple[str, str], PeerStatusList] = {}
        self._failed: dict[tuple[str, str], tuple[int, Refused]] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def get(self, peer: Peer, uri: str, now: int) -> tuple[PeerStatusList, bool]:
        """The list at ``uri`` (under ``peer``'s issuer: the caller checked), and whether it
        was fetched just now. Raises Refused: ``peer_unreachable`` (503),
        ``bad_status_list``, or what reading the peer's keys raises."""
        key = (peer.name, uri)
        hit = self._lists.get(key)
        if hit is not None and now < hit.until:
            return hit, False
        async with self._locks.setdefault(key, asyncio.Lock()):
            hit = self._lists.get(key)
            if hit is not None and now < hit.until:
                return hit, False  # fetched while this caller waited
            failed = self._failed.get(key)
            if failed is not None and now < failed[0] + self.retry:
                e = failed[1]
                raise Refused(e.reason, e.detail or e.title, error=e.error, status=e.status)
            try:
                fresh = await self._fetch(peer, uri, now)
            except Refused as e:
                self._failed[key] = (now, e)
                raise
            self._failed.pop(key, None)
            self._lists[key] = fresh
            return fresh, True

    async def _fetch(self, peer: Peer, uri: str, now: int) -> PeerStatusList:
        try:
            text = await self.reader.status_list(peer, uri)
        except Unreachable as e:
            raise Refused(
                "peer_unreachable",
                f"cannot read {peer.name}'s status list; retry later",
                error="temporarily_unavailable",
                status=503,
            ) from e
        keys = await self.keys(peer, status_list_kid(text), now)
        return verify_status_list(text, uri, peer, keys, now, self.skew, max_ttl=self.max_ttl)


class Revocations:
    """The tokens issued here by exchange, followed to their peers' status lists."""

    def __init__(
        self,
        trust: TrustList,
        state: FederationState,
        lists: StatusLists,
        *,
        skew: int,
        revoke: Revoke | None = None,
    ) -> None:
        self.trust, self.state, self.lists, self.skew = trust, state, lists, skew
        self.revoke = revoke
        self._links: dict[str, Link] = {}
        self._revoked: set[str] = set()
        self._unlinked: OrderedDict[str, None] = OrderedDict()

    def load(self, links: Iterable[Link]) -> None:
        """Follow ``links`` (kept in ``federation.db`` across restarts)."""
        self._links.update((link.jti, link) for link in links)

    @property
    def following(self) -> bool:
        """Whether any token issued here by exchange is followed (a fast path for the many
        requests that present none)."""
        return bool(self._links)

    async def check(self, peer: Peer, ref: StatusRef, now: int) -> None:
        """At exchange: the peer has not revoked the token whose entry is ``ref``. Raises
        Refused: ``revoked_at_peer``, or what :meth:`StatusLists.get` raises."""
        if (await self._current(peer, ref.uri, now)).revoked(ref.idx):
            raise Refused("revoked_at_peer", f"{peer.name} has revoked this attestation")

    async def follow(self, link: Link, now: int) -> None:
        """Follow a token just issued here by exchange until it expires."""
        expired = now - self.skew
        await asyncio.to_thread(self.state.link, link, expired)
        for jti in [j for j, k in self._links.items() if k.exp < expired]:
            del self._links[jti]
            self._revoked.discard(jti)
        self._links[link.jti] = link

    def link_of(self, jti: str, now: int) -> Link | None:
        """The live, not yet revoked link of this gateway's token ``jti``, if it has one."""
        link = self._links.get(jti)
        if link is None or jti in self._revoked or link.exp < now - self.skew:
            return None
        return link

    async def find(self, jti: str, now: int) -> Link | None:
        """:meth:`link_of`, also for a token issued by exchange at another replica: one not
        followed here is looked up in the store (once; a token without a link is
        remembered as such, safely, since a link is stored before its token is handed
        out, so a token shown anywhere either has its link stored already or never will)."""
        link = self.link_of(jti, now)
        if link is not None or jti in self._links or jti in self._unlinked:
            return link
        found = await asyncio.to_thread(self.state.linked, jti)
        if found is None:
            self._unlinked[jti] = None
            if len(self._unlinked) > UNLINKED_MAX:
                self._unlinked.popitem(last=False)
            return None
        self._links.setdefault(jti, found)
        return self.link_of(jti, now)

    async def recheck(self, link: Link, now: int) -> None:
        """While ``link``'s token lives: revoke it here if its peer has revoked the token it
        was issued for, by a list at most ``ttl`` old, or if the peer left the trust list.
        Raises Refused when no such list can be had (fail closed; nothing is revoked)."""
        peer = self.trust.by_name(link.peer)
        if peer is None or not link.foreign.uri.startswith(peer.issuer + "/"):
            await self._revoke(link, "peer_untrusted")
            return
        if (await self._current(peer, link.foreign.uri, now)).revoked(link.foreign.idx):
            await self._revoke(link, "revoked_at_peer")

    async def _current(self, peer: Peer, uri: str, now: int) -> PeerStatusList:
        lst, fetched = await self.lists.get(peer, uri, now)
        if fetched:
            # A fresh list speaks for every token issued here on one of its entries: revoke
            # those whose bits it shows set now, not only at their holders' next requests.
            for link in list(self._links.values()):
                if (
                    link.peer == peer.name
                    and link.foreign.uri == uri
                    and lst.revoked(link.foreign.idx)
                    and link.exp >= now - self.skew
                ):
                    await self._revoke(link, "revoked_at_peer")
        return lst

    async def _revoke(self, link: Link, reason: str) -> None:
        if link.jti in self._revoked:
            return
        self._revoked.add(link.jti)  # before awaiting: one revocation per token
        try:
            if self.revoke is not None:
                await self.revoke(link, reason)
        except BaseException:
            self._revoked.discard(link.jti)
            raise
