"""Attestations: issuing DPoP-bound access tokens and authenticating requests with them.

An attestation is a JWT (RFC 9068 ``at+jwt`` shape) signed by the gateway's current key:
``iss, sub, aud, iat, nbf, exp, jti, role, scope, cnf.jkt, status, ledger``. Its issuance
is a ledger event whose leaf index is the ``ledger`` claim. Time comes from an injected
clock; PyJWT's own time checks are switched off and done here.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from yarl import URL

from ledger.events import Event, EventType
from ledger.log import Receipt

from ..clock import stamped
from ..db.errors import DatabaseUnavailable
from ..errors import GatewayError, Unavailable
from .dpop import DPoPError, DPoPProof, NonceSource, ReplayCache, Replays, check_proof
from .jwk import InvalidKey, unverified_part
from .keys import KeyRing
from .smart import SMART_SCOPES
from .status import StatusList
from .store import EVER, IdentityStore, PublishedKey, Subject, TokenRecord

__all__ = [
    "ROLE_SCOPES",
    "Authority",
    "Forbidden",
    "Principal",
    "Unauthorized",
]

MAX_TOKEN_SIZE = 8192
VERIFIED_CACHE_MAX = 10_000
STATUS_LIST_ID = "1"
#: How old this replica's copy of what others revoked may be, in seconds of the clock.
REFRESH_EVERY = 1.0
#: How far back beyond the clock skew each look reaches (see Authority.refresh).
REFRESH_OVERLAP = 60
#: Least time between two reads of the published signing keys made at once for a token
#: naming a kid this replica does not know (on top of the once-a-second look): a stream of
#: tokens with made-up kids costs at most one database read a second.
UNKNOWN_KID_EVERY = 1.0
#: Status indexes reserved at a time (one database write per block).
STATUS_BLOCK = 32

#: What each role may ask for; a token carries the requested subset (default: all).
ROLE_SCOPES: dict[str, tuple[str, ...]] = {
    "admin": ("enroll", "revoke", "introspect", "erase"),
    "provider": ("enroll", "call", "vitals.read"),
    "patient": ("call", "consent", "enroll", "vitals.read"),  # enroll: their own devices
    "device": ("vitals.write",),
    "auditor": ("audit", "introspect"),
    # A supply-chain organization (manufacturer, distributor, pharmacy, provider
    # organization), known by its GS1 GLN: it submits custody events (gateway/supply).
    "party": ("supply.write", "supply.read"),
}
# The SMART v2 (and v1) scopes of the FHIR API (gateway.auth.smart), after the role's own.
for _role, _smart in SMART_SCOPES.items():
    ROLE_SCOPES[_role] += _smart
ROLE_PREFIX = {
    "admin": "adm",
    "provider": "prov",
    "patient": "pat",
    "device": "dev",
    "auditor": "aud",
    "party": "sup",
}


class Unauthorized(GatewayError):
    status = 401
    slug = "unauthorized"
    title = "Authentication required"


class Forbidden(GatewayError):
    status = 403
    slug = "forbidden"
    title = "Not allowed for this caller"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    sub: str
    role: str
    scope: frozenset[str]
    jti: str
    jkt: str
    #: When the attestation ends (its ``exp``); None for a principal not read from one.
    exp: int | None = None

    def require(self, *roles: str, scope: str | None = None) -> None:
        if roles and self.role not in roles:
            raise Forbidden(f"this needs the role {' or '.join(roles)}")
        if scope is not None and scope not in self.scope:
            raise Forbidden(f"this needs the scope {scope!r}")


Append = Callable[[Event], Awaitable[Receipt]]


def _principal(claims: dict[str, Any], proof: DPoPProof) -> Principal:
    scope = frozenset(str(claims.get("scope", "")).split())
    sub, role, jti = claims["sub"], str(claims.get("role")), claims["jti"]
    return Principal(sub, role, scope, jti, proof.jkt, claims["exp"])


class Authority:
    """Issues and checks attestations. Blocking store calls run in threads."""

    def __init__(
        self,
        *,
        keys: KeyRing,
        store: IdentityStore,
        clock: Callable[[], float],
        lifetime: int,
        skew: int,
        dpop_window: int,
        replay: Replays,
        nonces: NonceSource | None = None,
    ) -> None:
        self.keys = keys
        self.store = store
        self.clock = clock
        self.lifetime = lifetime
        self.skew = skew
        self.dpop_window = dpop_window
        self.replay = replay
        self.nonces = nonces
        self.status = StatusList()
        self._revoked_subjects: set[str] = set()
        # What every replica revoked, read whole now and then incrementally (refresh).
        self._looked: float | None = None  # the clock at the last successful look
        self._failed: float | None = None  # the clock at the last failed one
        self._fetching = False
        self._kid_looked: float | None = None  # the clock at the last unknown-kid read
        if keys.publisher is None:
            keys.publisher = store  # published by the first look, just below
        self.refresh()
        self._free = range(0)  # status indexes this process reserved and has not used
        self._lock = asyncio.Lock()
        # Signature checks of tokens seen before are remembered (bounded): a client sends
        # the same token with every request; only the fresh DPoP proof needs a new check.
        self._verified: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}

    def now(self) -> int:
        return int(self.clock())

    # -- what any replica revoked --------------------------------------------------
    @property
    def revoked_subjects(self) -> set[str]:
        """Who can no longer act (revoked subjects and the devices of revoked patients),
        through this replica or any other on the database: at most REFRESH_EVERY old. The
        revoke handler adds to it at once, so this replica refuses them from its next
        request."""
        self.refresh()
        return self._revoked_subjects

    def _due(self, now: float) -> bool:
        last = self._looked
        return last is None or not 0 <= now - last < REFRESH_EVERY

    def _since(self) -> int:
        # Revocation times are stamped by the revoking replica's clock and committed a
        # moment later: look back over the clock skew allowed between replicas and a
        # margin, so a revocation stamped just before the last look and committed just
        # after it is not missed. Revocations are never undone, so the sets only grow.
        last = self._looked
        return EVER if last is None else int(last) - self.skew - REFRESH_OVERLAP

    def _look(self, since: int) -> tuple[set[str], list[int], list[PublishedKey]]:
        """Blocking (a thread, or the first look): publish this replica's signing keys if
        they changed (opened, rotated, re-read from the key dir), then read what was
        revoked and which signing keys were published or retired since ``since``."""
        self.keys.publish_pending(int(self.clock()))
        subjects, indexes = self.store.revoked_since(since)
        return subjects, indexes, self.store.signing_keys_since(since)

    def _learn(
        self, now: float, subjects: set[str], indexes: list[int], keys: list[PublishedKey]
    ) -> None:
        # On the event loop's thread only (refresh, fresh): the sets are read there too.
        self._revoked_subjects |= subjects
        for i in indexes:
            self.status.set(i)
        self.keys.learn(keys)
        self._looked, self._failed = now, None

    def refresh(self) -> None:
        """Read what was revoked since the last look, at most once per REFRESH_EVERY of
        the injected clock (docs/database.md, "Caches and several replicas"): one indexed
        read of only what was revoked since. Blocking: requests get it done off the event
        loop by ``fresh`` (refusal_middleware) first, so this reads only where no request
        came first (a live socket). Raises DatabaseUnavailable (a 503: fail closed rather
        than act on a stale list), at once, without waiting on the database again, for a
        second after a look failed."""
        now = self.clock()
        if not self._due(now):
            return
        failed = self._failed
        if failed is not None and 0 <= now - failed < REFRESH_EVERY:
            raise DatabaseUnavailable(
                "cannot read revocations from the database", headers={"Retry-After": "1"}
            )
        try:
            subjects, indexes, keys = self._look(self._since())
        except Unavailable:
            self._failed = now
            raise
        self._learn(now, subjects, indexes, keys)

    async def fresh(self) -> None:
        """``refresh`` in a thread, so the event loop never waits on the database; a
        failure is left for ``refresh`` to report to whoever needs the list."""
        now = self.clock()
        if not self._due(now) or self._fetching:
            return
        failed = self._failed
        if failed is not None and 0 <= now - failed < REFRESH_EVERY:
            return
        self._fetching = True
        try:
            subjects, indexes, keys = await asyncio.to_thread(self._look, self._since())
        except Unavailable:
            self._failed = now
            return
        finally:
            self._fetching = False
        self._learn(now, subjects, indexes, keys)

    async def know_kid(self, authorization: str | None) -> None:
        """Before a request's token is verified (refusal_middleware awaits this): if it names
        a key no ring here knows, read the keys other hosts published, in a thread, at once
        rather than up to a second later, but at most once per UNKNOWN_KID_EVERY (forged
        kids cost one read a second, not one each). Verification itself then only looks up
        a dictionary: the event loop never waits on the database."""
        if not authorization or not authorization.startswith("DPoP "):
            return
        try:
            kid = str(unverified_part(authorization[5:].strip(), 0).get("kid"))
        except InvalidKey:
            return  # refused as malformed by the verification
        now = self.clock()
        if self.keys.verification_key(kid, int(now)) is not None or not self._may_look_for(now):
            return
        try:
            keys = await asyncio.to_thread(self.store.signing_keys_since, self._since())
        except Unavailable:
            return  # the verification refuses the unknown key; the next second looks again
        self.keys.learn(keys)

    # -- issuance ----------------------------------------------------------------
    async def issue(
        self,
        subject: Subject,
        scope: frozenset[str],
        jkt: str,
        origin: str,
        append: Append,
        assertion: str | None = None,
        *,
        audience: Sequence[str] = (),
        not_after: int | None = None,
        accepted: int | None = None,
    ) -> tuple[str, dict[str, Any], Receipt]:
        """Record the issuance on the ledger, then sign the token naming its leaf.

        ``assertion`` is the :func:`~gateway.auth.store.assertion_key` of the client
        assertion spent on it: the ledger event is the durable record of that spending.
        ``audience``: peer organizations (RFC 8707 resources) the token is also meant for;
        ``aud`` then lists this gateway and them, and so does the event, so that a peer can
        see in the receipt that the issuance named it. ``not_after`` caps the expiry (a
        token exchanged for a peer's never outlives the peer's). ``accepted`` is the leaf
        index of the ``federation.accepted`` event a token exchange issues on.
        """
        now = self.now()
        # One stat every issuance, not once a second: a token signed with a key another
        # process sharing the key dir retired a moment ago, dated after its retirement,
        # would be refused. A key retired on another host (published) refuses issuance
        # here (503) until the new key's dir is copied here; chosen before anything is
        # reserved or recorded.
        self.keys.refresh(now, force=True)
        if self.keys.unpublished:
            # Re-read from the key dir (rotated by a process sharing it): published before
            # it signs anything, so its tokens verify on other hosts as soon as they look.
            await asyncio.to_thread(self.keys.publish_pending, now)
        key = self.keys.signing_key()
        jti = secrets.token_urlsafe(18)
        async with self._lock:
            if not self._free:
                # Reserved in the database, so no two replicas hand out one index; in
                # blocks, so that costs one durable write per STATUS_BLOCK tokens. A block
                # a process does not use up is left as 0 (valid) bits no token names.
                self._free = await asyncio.to_thread(
                    self.store.reserve_status_indexes, STATUS_BLOCK
                )
            idx, self._free = self._free[0], self._free[1:]
        exp = now + self.lifetime if not_after is None else min(now + self.lifetime, not_after)
        aud: str | list[str] = [origin, *audience] if audience else origin
        event = stamped(
            lambda: now,
            EventType.ATTESTATION_ISSUED,
            "gw:self",
            subject=subject.id,
            data={
                "jti": jti,
                "role": subject.role,
                "jkt": jkt,
                "kid": key.kid,
                "exp": exp,
                "scope": " ".join(sorted(scope)),
                "status_idx": idx,
                **({"assertion": assertion} if assertion else {}),
                **({"aud": aud} if audience else {}),
                **({"federation": accepted} if accepted is not None else {}),
            },
        )
        receipt = await append(event)
        claims: dict[str, Any] = {
            "iss": origin,
            "sub": subject.id,
            "aud": aud,
            "iat": now,
            "nbf": now,
            "exp": exp,
            "jti": jti,
            "role": subject.role,
            "scope": " ".join(sorted(scope)),
            "cnf": {"jkt": jkt},
            "status": {"status_list": {"idx": idx, "uri": f"{origin}/v1/status/{STATUS_LIST_ID}"}},
            "ledger": receipt.index,
        }
        token = jwt.encode(
            claims, key.private, algorithm=key.alg, headers={"kid": key.kid, "typ": "at+jwt"}
        )
        record = TokenRecord(jti, subject.id, subject.role, exp, idx, receipt.index, None)
        await asyncio.to_thread(self.store.add_token, record)
        return token, claims, receipt

    # -- verification ------------------------------------------------------------
    def verify_token(self, token: str, origin: str) -> dict[str, Any]:
        """Signature (key pinned by ``kid``, algorithm by key), issuer, audience, times,
        status bit and subject. Raises Unauthorized."""
        if len(token) > MAX_TOKEN_SIZE or token.count(".") != 2:
            raise Unauthorized("malformed access token")
        now = self.now()
        self.refresh()
        claims = self._verified_claims(token, origin, now)
        if claims is None:
            claims = self._verify_signature(token, origin, now)
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if not isinstance(exp, int) or not isinstance(nbf, int):
            raise Unauthorized("access token times are malformed")
        if now >= exp + self.skew:
            raise Unauthorized("access token has expired")
        if now < nbf - self.skew:
            raise Unauthorized("access token is not valid yet")
        idx = claims.get("status", {}).get("status_list", {}).get("idx")
        if not isinstance(idx, int) or self.status.get(idx):
            raise Unauthorized("access token has been revoked")
        if claims["sub"] in self.revoked_subjects:
            raise Unauthorized("this identity has been revoked")
        if not isinstance(claims.get("cnf"), dict) or "jkt" not in claims["cnf"]:
            raise Unauthorized("access token is not DPoP-bound")
        return dict(claims)

    def _verified_claims(self, token: str, origin: str, now: int) -> dict[str, Any] | None:
        """Claims of a token whose signature, issuer and audience were already checked, if
        the key that signed it is still trusted. Times, status and subject are not cached:
        they are checked on every request."""
        hit = self._verified.get((token, origin))
        if hit is None:
            return None
        kid, claims = hit
        key = self.keys.verification_key(kid, now)
        iat = claims.get("iat")
        if key is None or (
            key.retired is not None and not (isinstance(iat, int) and iat <= key.retired)
        ):
            # Gone, or retired (maybe on another host, learned since) before it signed this.
            del self._verified[(token, origin)]
            return None
        return claims

    def _verify_signature(self, token: str, origin: str, now: int) -> dict[str, Any]:
        try:
            header = unverified_part(token, 0)
        except InvalidKey as e:
            raise Unauthorized("malformed access token") from e
        kid = str(header.get("kid"))
        key = self.keys.verification_key(kid, now)
        if key is None:
            self.keys.refresh(now, force=True)  # a key rotated in by another process
            key = self.keys.verification_key(kid, now)
        if key is None:
            raise Unauthorized("access token signed by an unknown key")
        if header.get("alg") != key.alg or header.get("typ") != "at+jwt":
            raise Unauthorized("access token algorithm or type is wrong")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.public.key,
                algorithms=[key.alg],
                audience=origin,
                issuer=origin,
                options={
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "require": ["iss", "sub", "aud", "iat", "nbf", "exp", "jti"],
                },
            )
        except jwt.PyJWTError as e:
            raise Unauthorized(f"access token rejected: {e}") from e
        if key.retired is not None and int(claims.get("iat", 0)) > key.retired:
            raise Unauthorized("access token signed by a retired key after its retirement")
        cache = self._verified
        # An expired token's entry is dead weight (verify_token refuses it from its claims'
        # exp), about 3 KiB each: evicted only by the size bound, they were most of the
        # soak's heap growth (bench/RESULTS.md, soak). Tokens are first seen in about the
        # order they expire, so the oldest entries are checked, until one still stands.
        while cache:
            first = next(iter(cache))
            exp = cache[first][1].get("exp")
            if isinstance(exp, int) and now < exp + self.skew:
                break
            del cache[first]
        if len(cache) >= VERIFIED_CACHE_MAX:
            cache.pop(next(iter(cache)))
        cache[(token, origin)] = (key.kid, claims)
        return claims

    def verified_cached(self) -> int:
        """How many verified tokens are remembered (their signature checks skipped)."""
        return len(self._verified)

    def _may_look_for(self, now: float) -> bool:
        last = self._kid_looked
        if last is not None and 0 <= now - last < UNKNOWN_KID_EVERY:
            return False
        self._kid_looked = now
        return True

    def authenticate(
        self, method: str, url: URL, headers: Mapping[str, str], dpop: list[str], origin: str
    ) -> Principal:
        """Check ``Authorization: DPoP <token>`` and its proof for this request, spending
        the proof in the in-process replay cache. With a shared one (Redis), use
        :meth:`authenticate_shared`."""
        claims, proof, now = self._proven(method, url, headers, dpop, origin)
        # Only now, for an authenticated caller, is the proof's jti spent.
        if not self.spend(proof, now):
            raise DPoPError("DPoP proof replayed")
        return _principal(claims, proof)

    async def authenticate_shared(
        self, method: str, url: URL, headers: Mapping[str, str], dpop: list[str], origin: str
    ) -> Principal:
        """:meth:`authenticate` with the replay check awaited (a Replays shared by the
        replicas). Raises Unauthorized, DPoPError, or a 503 when the check cannot be made."""
        claims, proof, now = self._proven(method, url, headers, dpop, origin)
        if not await self.spend_async(proof, now):
            raise DPoPError("DPoP proof replayed")
        return _principal(claims, proof)

    def _proven(
        self, method: str, url: URL, headers: Mapping[str, str], dpop: list[str], origin: str
    ) -> tuple[dict[str, Any], DPoPProof, int]:
        """Every check of the token and its proof except the replay check: the claims, the
        proof and the time they were checked at."""
        auth = headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "dpop" or not token:
            raise Unauthorized("send Authorization: DPoP <token> with a DPoP proof")
        claims = self.verify_token(token.strip(), origin)
        now = self.now()
        proof = check_proof(
            dpop,
            method=method,
            url=url,
            now=now,
            window=self.dpop_window,
            skew=self.skew,
            access_token=token.strip(),
            nonces=self.nonces,
        )
        if proof.jkt != claims["cnf"]["jkt"]:
            raise DPoPError("DPoP key does not match the token's cnf.jkt")
        return claims, proof, now

    def _until(self, proof: DPoPProof, now: int) -> int:
        # A proof dated up to ``skew`` ahead stays acceptable until ``iat + window + skew``,
        # so it is remembered until then, not from ``now``.
        return max(proof.iat, now) + self.dpop_window + self.skew

    def spend(self, proof: DPoPProof, now: int) -> bool:
        """Remember a proof's jti for as long as the proof could be accepted; False if it
        was already spent. In-process cache only: a shared one is awaited (spend_async)."""
        replay = self.replay
        if not isinstance(replay, ReplayCache):
            raise TypeError("a shared replay cache is awaited: use spend_async")
        return replay.add(f"{proof.jkt}:{proof.jti}", self._until(proof, now), now)

    async def spend_async(self, proof: DPoPProof, now: int) -> bool:
        """:meth:`spend` through whichever Replays this authority has. Raises a 503
        GatewayError when a shared cache cannot be reached (fail closed)."""
        key, until = f"{proof.jkt}:{proof.jti}", self._until(proof, now)
        return await self.replay.spend(key, until, now, iat=proof.iat)

    def status_list_token(self, origin: str) -> str:
        """The Token Status List as a signed JWT (``typ: statuslist+jwt``)."""
        now = self.now()
        self.refresh()  # bits revoked through other replicas
        self.keys.refresh(now, force=True)  # a key rotated in elsewhere signs the list too
        key = self.keys.signing_key()
        claims = {
            "sub": f"{origin}/v1/status/{STATUS_LIST_ID}",
            "iat": now,
            "exp": now + 300,
            "ttl": 60,
            "status_list": self.status.encode(),
        }
        return jwt.encode(
            claims,
            key.private,
            algorithm=key.alg,
            headers={"kid": key.kid, "typ": "statuslist+jwt"},
        )
