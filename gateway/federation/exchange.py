"""Accepting a peer organization's attestation: every check, in order, and what this gateway
remembers of the peer between requests.

:meth:`Federation.accept` takes a peer's token, the receipt the peer issued for it and the
holder key a DPoP proof showed, and returns what was accepted or raises
:class:`~gateway.federation.verify.Refused`. The checks: the token against the peer's pinned
keys (:mod:`.verify`); the receipt's leaf is the peer's record of this issuance; the leaf is
in the peer's log under a checkpoint signed by the peer's log key and cosigned by at least
k of the witnesses this gateway requires for that peer (C2SP tlog-witness); and that
checkpoint is consistent with the largest one accepted from the peer before (RFC 6962
consistency proof, fetched from the peer); and the peer has not revoked the token (its
Token Status List, :mod:`.revocation`, which also follows the token issued here while it
lives). A peer caught with two histories under its key is refused from then on, and the two
checkpoints are kept as evidence.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ledger.checkpoint import NotWitnessed, WitnessedCheckpoint, open_checkpoint
from ledger.errors import LedgerError
from ledger.log import Receipt
from ledger.receipts import verify_witnessed_receipt
from ledger.verify import LogForked, check_fork

from ..auth.jwk import InvalidKey
from ..auth.store import IdentityStore, Subject
from .keys import KeyContinuityBroken, PinnedKey, by_kid, dump_jwks, parse_jwks, rotate
from .peers import CannotProve, PeerReader, Unreachable
from .revocation import RETRY, Revocations, Revoke, StatusLists
from .state import FederationState
from .statuslist import MAX_TTL
from .trust import Peer, TrustList
from .verify import (
    ForeignToken,
    Refused,
    check_issuance,
    local_subject_id,
    parse_receipt,
    peek_issuer,
    token_kid,
    verify_foreign_token,
)

__all__ = ["Accepted", "Federation", "local_subject"]

log = logging.getLogger("telegate.federation")

#: Least time between two fetches of a TOFU peer's JWKS for an unknown kid, seconds: tokens
#: with made-up kids must not turn this gateway into a request generator against the peer.
JWKS_REFETCH = 60
#: How many times a check is redone against a value another replica kept meanwhile before
#: the caller is told to retry (503): each redo means a peer checkpoint or pin really moved.
RACES = 8


@dataclass(frozen=True, slots=True)
class Accepted:
    """A peer's attestation that passed every check, and the proofs that it did."""

    peer: Peer
    token: ForeignToken
    receipt: Receipt
    entry: bytes
    witnessed: WitnessedCheckpoint


class Federation:
    """The trust list at work. One per application; coroutines run on its loop."""

    def __init__(
        self,
        trust: TrustList,
        state: FederationState,
        reader: PeerReader,
        *,
        clock: Callable[[], float],
        skew: int,
        refetch: int = JWKS_REFETCH,
        revoke: Revoke | None = None,
        status_ttl: int = MAX_TTL,
        status_retry: int = RETRY,
    ) -> None:
        """``revoke`` revokes a token issued here by exchange once its peer revoked the
        token it was issued for (:mod:`.revocation`); ``status_ttl`` caps how long a peer's
        status list is used, ``status_retry`` how soon one is fetched again after a failure.
        """
        self.trust, self.state, self.reader = trust, state, reader
        self.clock, self.skew, self.refetch = clock, skew, refetch
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        lists = StatusLists(reader, self._keys, skew=skew, max_ttl=status_ttl, retry=status_retry)
        self.revocations = Revocations(trust, state, lists, skew=skew, revoke=revoke)

    def _lock(self, peer: Peer, what: str) -> asyncio.Lock:
        return self._locks.setdefault((peer.name, what), asyncio.Lock())

    def peer_of(self, token: str) -> Peer:
        """The trusted peer whose issuer the token claims. Raises Refused (unknown_issuer)."""
        iss = peek_issuer(token)
        peer = self.trust.by_issuer(iss)
        if peer is None:
            digest = hashlib.sha256(iss.encode()).hexdigest()
            raise Refused(
                "unknown_issuer",
                "the token's issuer is not in the trust list",
                issuer_sha256=digest,
            )
        return peer

    async def accept(
        self, peer: Peer, token: str, receipt: str, jkt: str, audience: str
    ) -> Accepted:
        """Check ``token`` (issued by ``peer``), its ``receipt``, that ``jkt`` (the DPoP
        proof's key) is the key the token is bound to, and that the peer has not revoked
        it. Raises Refused; the refusal's data carries the ids known when it was raised
        (token jti, leaf index, checkpoint, status list entry)."""
        now = int(self.clock())
        known: dict[str, object] = {}
        # Until the caller has shown a token the peer signed and a DPoP proof with its key,
        # it is anyone: its refusals are counted, not each put on the ledger (Refused.bound).
        bound = False
        try:
            keys = await self._keys(peer, token_kid(token), now)
            t = verify_foreign_token(token, peer, keys, audience, now, self.skew)
            known.update(foreign_jti=t.jti, foreign_sub=t.sub)
            if t.jkt != jkt:
                raise Refused(
                    "dpop", "the DPoP key is not the token's cnf.jkt", error="invalid_dpop_proof"
                )
            bound = True
            r, entry = parse_receipt(receipt)
            known["leaf_index"] = r.index
            check_issuance(r, entry, t, audience)
            witnessed = self._witnessed(peer, r, entry, now)
            known["checkpoint"] = _summary(witnessed)
            await self.extends(peer, r.checkpoint, witnessed, now)
            known["status_list"] = {"uri": t.status.uri, "idx": t.status.idx}
            await self.revocations.check(peer, t.status, now)
        except Refused as e:
            e.data = {**known, **e.data}
            e.bound = bound
            raise
        return Accepted(peer, t, r, entry, witnessed)

    def _witnessed(self, peer: Peer, r: Receipt, entry: bytes, now: int) -> WitnessedCheckpoint:
        try:
            # Cosignature times come from the witnesses' clocks: allow the same skew.
            return verify_witnessed_receipt(
                r, entry, peer.log, peer.witnesses, peer.min_witnesses, now=now + self.skew
            )
        except NotWitnessed as e:
            raise Refused(
                "not_witnessed",
                f"the receipt's checkpoint is not cosigned by {peer.min_witnesses} of the "
                f"witnesses required for {peer.name} ({e}); fetch the receipt again once it is",
                cosigned_by=[c.name for c in e.found],
            ) from e
        except LedgerError as e:
            raise Refused("bad_receipt", f"the receipt does not verify: {e}") from e

    async def extends(
        self, peer: Peer, note: bytes, witnessed: WitnessedCheckpoint, now: int
    ) -> None:
        """Check that ``note`` (a checkpoint of ``peer``'s log, already verified as
        ``witnessed``) and the largest one accepted from ``peer`` before are one history,
        by an RFC 6962 consistency proof read from the peer; keep the larger. Raises Refused:
        ``forked`` (recorded; both notes in ``data["evidence"]``), ``peer_forked`` (caught
        before), ``peer_unreachable`` (no proof could be read: try again later), ``busy``
        (other replicas kept newer checkpoints ``RACES`` times meanwhile: try again)."""
        st, vkey, cp = self.state, peer.log.vkey, witnessed.checkpoint
        async with self._lock(peer, "log"):
            prev = await asyncio.to_thread(st.latest, vkey)
            # Another replica may keep a checkpoint between our read and our write: the
            # write is a compare-and-swap on ``prev``, and a lost one is checked again
            # against what that replica kept (two checkpoints each consistent with ``prev``
            # need not be consistent with each other: that is a fork to catch).
            for _ in range(RACES):
                if await asyncio.to_thread(st.fork, vkey) is not None:
                    raise Refused("peer_forked", f"{peer.name}'s log was caught forked; refused")
                if prev is not None and not await self._consistent(peer, prev, note, now):
                    return  # no larger than the kept one, which extends it
                kept = await asyncio.to_thread(st.advance, vkey, cp.size, note, prev)
                if kept == note:
                    return
                prev = kept
            raise Refused(
                "busy",
                f"{peer.name}'s checkpoint kept changing while this one was checked; retry",
                error="temporarily_unavailable",
                status=503,
            )

    async def _consistent(self, peer: Peer, prev: bytes, note: bytes, now: int) -> bool:
        """Check ``note`` against ``prev``, the checkpoint kept of ``peer``'s log; whether
        ``note`` is the larger one. Raises Refused (``forked``, recorded;
        ``peer_unreachable``)."""
        old = open_checkpoint(prev, peer.log).checkpoint
        cp = open_checkpoint(note, peer.log).checkpoint
        proof: list[bytes] = []
        if old.size != cp.size:
            lo, hi = sorted((old.size, cp.size))
            try:
                proof = await self.reader.consistency(peer, lo, hi)
            except CannotProve:
                proof = []  # it signed a tree it cannot show: no proof will join them
            except Unreachable as e:
                raise Refused(
                    "peer_unreachable",
                    f"cannot read a consistency proof from {peer.name}; retry later",
                    error="temporarily_unavailable",
                    status=503,
                ) from e
        try:
            check_fork(prev, note, proof, peer.log)
        except LogForked as e:
            await asyncio.to_thread(self.state.record_fork, peer.log.vkey, now, e.evidence)
            log.error(
                "peer log forked",
                extra={"fields": {"peer": peer.name, "sizes": [old.size, cp.size]}},
            )
            raise Refused(
                "forked",
                f"{peer.name} signed two histories: {e}",
                evidence=[n.decode() for n in e.evidence],
            ) from e
        return cp.size > old.size

    async def _keys(self, peer: Peer, kid: str, now: int) -> Mapping[str, PinnedKey]:
        """The peer's signing keys: pinned in the trust list, or pinned on first use and
        rotated by the rule in :mod:`.keys`."""
        if not peer.tofu:
            return by_kid(peer.keys)
        st = self.state
        async with self._lock(peer, "keys"):
            # Pinning is a compare-and-swap too: the first replica to pin a JWKS on first
            # use wins, and a rotation applies only to the pin it was checked against.
            for _ in range(RACES):
                keys: tuple[PinnedKey, ...] = ()
                pinned = await asyncio.to_thread(st.pinned, peer.issuer)
                if pinned is not None:
                    keys = parse_jwks(json.loads(pinned[0]), strict=True)
                    if kid in by_kid(keys) or now < pinned[1] + self.refetch:
                        return by_kid(keys)
                fetched = await self._fetch_jwks(peer)
                if pinned is None:
                    new = fetched
                else:
                    try:
                        new = rotate(keys, fetched)
                    except KeyContinuityBroken as e:
                        # Rate limit the refetch; lost to a replica that pinned meanwhile: fine.
                        await asyncio.to_thread(st.pin, peer.issuer, pinned[0], now, pinned[0])
                        raise Refused("key_continuity", e.detail or e.title) from e
                was = None if pinned is None else pinned[0]
                if await asyncio.to_thread(st.pin, peer.issuer, dump_jwks(new), now, was):
                    if pinned is None:
                        log.info(
                            "pinned a peer's JWKS on first use",
                            extra={"fields": {"peer": peer.name}},
                        )
                    return by_kid(new)
            raise Refused(
                "busy",
                f"{peer.name}'s pinned keys kept changing while they were checked; retry",
                error="temporarily_unavailable",
                status=503,
            )

    async def _fetch_jwks(self, peer: Peer) -> tuple[PinnedKey, ...]:
        try:
            keys = parse_jwks(await self.reader.jwks(peer), strict=False)
        except Unreachable as e:
            raise Refused(
                "peer_unreachable",
                f"cannot read {peer.name}'s JWKS; retry later",
                error="temporarily_unavailable",
                status=503,
            ) from e
        except InvalidKey as e:
            raise Refused("bad_jwks", f"{peer.name}'s JWKS: {e.detail}") from e
        if not keys:
            raise Refused("bad_jwks", f"{peer.name}'s JWKS holds no key accepted here")
        return keys


def _summary(w: WitnessedCheckpoint) -> dict[str, object]:
    return {
        "size": w.checkpoint.size,
        "root": base64.b64encode(w.checkpoint.root).decode(),
        "cosigned_by": [c.name for c in w.cosignatures],
    }


def local_subject(
    store: IdentityStore, accepted: Accepted, jwk: dict[str, str], now: int
) -> tuple[Subject, bool]:
    """The local subject a peer's provider acts under, created on first acceptance with
    ``jwk`` (the holder key the DPoP proof showed: the leaf holds only its thumbprint); and
    whether it was created now. Blocking (SQLite). Raises Refused when the id or the holder
    key is already someone else's here, or the subject was revoked here."""
    t, peer = accepted.token, accepted.peer
    sid = local_subject_id(t.issuer, t.sub)
    found = store.subject(sid)
    if found is not None:
        fed = found.attrs.get("federation", {})
        if fed.get("issuer") != t.issuer or fed.get("sub") != t.sub or found.jkt != t.jkt:
            raise Refused("subject_conflict", "that identity is bound to another key here")
        if found.revoked is not None:
            raise Refused("revoked_here", "this identity has been revoked at this gateway")
        return found, False
    if store.subject_by_jkt(t.jkt) is not None:
        raise Refused("subject_conflict", "this holder key is enrolled here as someone else")
    attrs = {"federation": {"peer": peer.name, "issuer": t.issuer, "sub": t.sub}}
    subject = Subject(sid, t.role, t.jkt, jwk, now, None, None, attrs)
    try:
        store.add_subject(subject)
    except Exception as e:  # an integrity error: a concurrent first exchange won
        again = store.subject(sid)
        if again is None or again.jkt != t.jkt:
            raise Refused("subject_conflict", "could not record this identity here") from e
        return again, False
    return subject, True
