"""RFC 9449 DPoP proof verification, with a bounded replay cache and optional server nonces.

Every check of RFC 9449 section 4.3 is made here; the caller decides when a proof's ``jti``
is committed to the replay cache (only after the request is otherwise authenticated, so
that anonymous floods of self-signed proofs cannot fill the cache).
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol

import jwt
from yarl import URL

from ..errors import GatewayError
from .jwk import ALGORITHMS, HolderKey, InvalidKey, b64u, unverified_part

__all__ = [
    "DPoPError",
    "DPoPProof",
    "NonceSource",
    "ReplayCache",
    "Replays",
    "check_proof",
    "htu_of",
]

MAX_PROOF_SIZE = 4096


class DPoPError(GatewayError):
    status = 401
    slug = "invalid-dpop-proof"
    title = "Invalid DPoP proof"


class UseNonce(DPoPError):
    slug = "use-dpop-nonce"
    title = "A fresh DPoP nonce is required"


@dataclass(frozen=True, slots=True)
class DPoPProof:
    jti: str
    jkt: str
    iat: int
    key: HolderKey


def htu_of(url: URL) -> str:
    """RFC 9449 4.3 (9): the target URI without query and fragment, normalised."""
    scheme = url.scheme.lower()
    port = url.explicit_port
    if port == {"http": 80, "https": 443}.get(scheme):
        port = None
    host = (url.host or "").lower()
    netloc = f"{host}:{port}" if port else host
    return f"{scheme}://{netloc}{url.raw_path or '/'}"


class Replays(Protocol):
    """Where spent proof ids are kept for their acceptance window: in process
    (:class:`ReplayCache`, one gateway process) or shared by every replica
    (gateway.shared.RedisReplays)."""

    async def spend(self, key: str, expires: int, now: int, iat: int | None = None) -> bool:
        """Record ``key`` until ``expires``; False if it is already there (a replay).
        Raises a 503 GatewayError when the check cannot be made (fail closed), or when
        ``iat`` (the proof's) predates a loss of the shared cache's data."""
        ...


class ReplayCache:
    """jti values seen within the acceptance window, in this process. Bounded: when full it
    refuses new proofs (503) rather than forget one that could be replayed."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._seen: OrderedDict[str, int] = OrderedDict()

    def add(self, key: str, expires: int, now: int) -> bool:
        """Record ``key`` until ``expires``; False if it is already there (a replay)."""
        seen = self._seen
        while seen:
            oldest, exp = next(iter(seen.items()))
            if exp >= now:
                break
            del seen[oldest]
        if key in seen:
            return False
        if len(seen) >= self.max_entries:
            raise ReplayCacheFull("too many DPoP proofs in flight; retry shortly")
        seen[key] = expires
        # Keep insertion order roughly by expiry: all entries share one window length.
        return True

    async def spend(self, key: str, expires: int, now: int, iat: int | None = None) -> bool:
        """:meth:`add`, as the Replays protocol has it (nothing here waits)."""
        return self.add(key, expires, now)


class ReplayCacheFull(GatewayError):
    status = 503
    slug = "busy"
    title = "Temporarily unable to accept proofs"


class NonceSource:
    """Server nonces (RFC 9449 section 8): HMAC of a time bucket, so any gateway process
    sharing the secret accepts them; valid for the current and previous bucket."""

    def __init__(self, secret: bytes, period: int = 60) -> None:
        self.secret = secret
        self.period = period

    def _for(self, bucket: int) -> str:
        mac = hmac.new(self.secret, str(bucket).encode(), hashlib.sha256).digest()
        return b64u(mac[:16])

    def current(self, now: int) -> str:
        return self._for(now // self.period)

    def valid(self, nonce: str, now: int) -> bool:
        b = now // self.period
        # Bytes, not str: compare_digest refuses non-ASCII str (a client could send any).
        got = nonce.encode()
        return any(hmac.compare_digest(got, self._for(x).encode()) for x in (b, b - 1))


def check_proof(
    header_values: list[str],
    *,
    method: str,
    url: URL,
    now: int,
    window: int,
    skew: int,
    access_token: str | None = None,
    nonces: NonceSource | None = None,
) -> DPoPProof:
    """Verify one DPoP proof for this request (RFC 9449 4.3). Raises DPoPError."""
    # (1) exactly one header, (2) a single well-formed JWT of bounded size.
    if len(header_values) != 1:
        raise DPoPError("exactly one DPoP header is required")
    proof = header_values[0]
    if len(proof) > MAX_PROOF_SIZE or proof.count(".") != 2:
        raise DPoPError("malformed DPoP proof")
    try:
        header = unverified_part(proof, 0)
    except InvalidKey as e:
        raise DPoPError("malformed DPoP proof") from e
    # (4) typ, (5) an asymmetric algorithm we support, (7) a public jwk.
    if header.get("typ") != "dpop+jwt":
        raise DPoPError("DPoP proof typ must be dpop+jwt")
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        raise DPoPError("DPoP proof algorithm must be EdDSA or ES256")
    try:
        key = HolderKey.from_jwk(header.get("jwk"))
    except InvalidKey as e:
        raise DPoPError(f"DPoP jwk: {e.detail}") from e
    if key.alg != alg:
        raise DPoPError("DPoP alg does not match its key")
    # (6) the signature, with the algorithm pinned to the key type.
    try:
        claims: dict[str, Any] = jwt.decode(
            proof,
            key.key,
            algorithms=[key.alg],
            options={
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": False,
                "verify_iss": False,
            },
        )
    except jwt.PyJWTError as e:
        raise DPoPError("DPoP proof signature does not verify") from e
    # (3) required claims, (8) htm, (9) htu, (11) iat.
    jti, htm, htu, iat = (claims.get(k) for k in ("jti", "htm", "htu", "iat"))
    if not isinstance(jti, str) or not 8 <= len(jti) <= 256:
        raise DPoPError("DPoP jti missing or malformed")
    if htm != method:
        raise DPoPError("DPoP proof is for another method")
    try:
        claimed = htu_of(URL(str(htu)))
    except (ValueError, TypeError) as e:
        raise DPoPError("DPoP htu is not a URL") from e
    # Both sides through the same parse: yarl applies RFC 3986 6.2.2 percent-encoding
    # normalisation when it builds a URL from text, so "pat%3A1" and "pat:1" compare equal.
    if claimed != htu_of(URL(str(url))):
        raise DPoPError("DPoP proof is for another URL")
    if not isinstance(iat, int) or isinstance(iat, bool):
        raise DPoPError("DPoP iat missing")
    if iat > now + skew or iat < now - window - skew:
        raise DPoPError("DPoP proof is outside the accepted time window")
    # (10) server nonce, if this gateway requires them.
    if nonces is not None:
        nonce = claims.get("nonce")
        if not isinstance(nonce, str) or not nonces.valid(nonce, now):
            # RFC 9449 8 and 9: say so, and hand out the nonce to use.
            raise UseNonce(
                "send the DPoP-Nonce value from this response in the proof",
                headers={
                    "DPoP-Nonce": nonces.current(now),
                    "WWW-Authenticate": 'DPoP error="use_dpop_nonce", algs="EdDSA ES256"',
                },
            )
    # (12) with an access token: ath binds the proof to it.
    if access_token is not None:
        ath = b64u(hashlib.sha256(access_token.encode()).digest())
        got = claims.get("ath")
        if not isinstance(got, str) or not hmac.compare_digest(got.encode(), ath.encode()):
            raise DPoPError("DPoP ath does not match the access token")
    return DPoPProof(jti, key.jkt, iat, key)
