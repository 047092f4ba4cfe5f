"""Checking a peer organization's attestation and its issuance receipt. Pure: no I/O.

The token is checked as RFC 9068 and RFC 8725 ask of a JWT access token from another
issuer: the key is chosen by ``kid`` among the peer's pinned keys and verifies only its own
algorithm (RFC 8725 3.1), ``typ`` is ``at+jwt`` (RFC 9068 4), ``iss`` is the peer's issuer
exactly (RFC 8725 3.8), ``aud`` names this gateway (RFC 8725 3.9, RFC 9068 4: a token minted
for the peer itself is not accepted here), times with the configured skew, and it is
DPoP-bound (``cnf.jkt``, RFC 9449 6). It names its bit in a Token Status List under the
peer's issuer (``status.status_list``): a token cannot send this gateway to fetch from
anywhere else. The receipt must show that the peer's log recorded this very issuance: the
leaf is an ``attestation.issued`` event naming the token's ``jti``, subject, role, holder
key, signing key, expiry and this gateway as an audience.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from yarl import URL

from ledger.errors import LedgerError
from ledger.events import Event, EventType
from ledger.log import Receipt

from ..auth.jwk import InvalidKey, unverified_part
from ..errors import GatewayError
from ..jsonio import loads
from .keys import PinnedKey
from .trust import Peer

__all__ = [
    "FEDERATED_ROLES",
    "ForeignToken",
    "Refused",
    "StatusRef",
    "check_issuance",
    "local_subject_id",
    "parse_receipt",
    "peek_issuer",
    "status_ref",
    "token_kid",
    "verify_foreign_token",
]

#: Roles accepted from a peer. Only providers: a peer's patients, devices, admins and
#: auditors act at their own organization (docs/federation.md).
FEDERATED_ROLES = frozenset({"provider"})
MAX_TOKEN_SIZE = 8192
MAX_RECEIPT_SIZE = 16 * 1024
MAX_ID = 256
MAX_URI = 512


class Refused(GatewayError):
    """A peer's attestation is not accepted. ``reason`` is a short code recorded on the
    ledger (``federation.refused``); ``error`` the OAuth error code the client gets."""

    status = 400
    slug = "federation-refused"
    title = "Attestation of a peer organization refused"
    #: Raised after the caller proved it holds the peer's attestation (signature and DPoP
    #: key checked): its refusal is a ledger event of its own, not an anonymous count.
    bound = False

    def __init__(
        self,
        reason: str,
        detail: str,
        *,
        error: str = "invalid_grant",
        status: int = 400,
        **data: Any,
    ) -> None:
        super().__init__(detail)
        self.reason = reason
        self.error = error
        self.status = status
        self.data = data


@dataclass(frozen=True, slots=True)
class StatusRef:
    """Where a peer's attestation keeps its status: bit ``idx`` of the list at ``uri``."""

    uri: str
    idx: int


@dataclass(frozen=True, slots=True)
class ForeignToken:
    """The claims of a peer's attestation that were checked and that the exchange uses."""

    issuer: str
    sub: str
    jti: str
    role: str
    jkt: str
    kid: str
    exp: int
    ledger: int
    scope: frozenset[str]
    status: StatusRef


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _b64_json(part: str, token: str) -> dict[str, Any]:
    try:
        return unverified_part(token, 0 if part == "header" else 1, limit=MAX_TOKEN_SIZE)
    except InvalidKey as e:
        raise Refused("malformed", f"subject_token {part} is malformed") from e


def peek_issuer(token: str) -> str:
    """The ``iss`` a token claims, unverified: only to find the peer and its keys."""
    if len(token) > MAX_TOKEN_SIZE or token.count(".") != 2:
        raise Refused("malformed", "subject_token is not a compact JWS")
    iss = _b64_json("payload", token).get("iss")
    if not isinstance(iss, str) or not 0 < len(iss) <= MAX_ID:
        raise Refused("malformed", "subject_token has no iss")
    return iss


def token_kid(token: str) -> str:
    """The ``kid`` a token's header names, unverified: only to choose the key."""
    kid = _b64_json("header", token).get("kid")
    if not isinstance(kid, str) or not 0 < len(kid) <= MAX_ID:
        raise Refused("bad_token", "subject_token has no kid")
    return kid


def verify_foreign_token(
    token: str,
    peer: Peer,
    keys: Mapping[str, PinnedKey],
    audience: str,
    now: int,
    skew: int,
) -> ForeignToken:
    """Check a peer's attestation (see the module text). Raises Refused."""
    header = _b64_json("header", token)
    kid = token_kid(token)
    key = keys.get(kid)
    if key is None:
        raise Refused("unknown_key", f"subject_token is signed by a key not pinned for {peer.name}")
    if header.get("alg") != key.alg or header.get("typ") != "at+jwt":
        raise Refused("bad_token", "subject_token algorithm or type is wrong (at+jwt)")
    try:
        c: dict[str, Any] = jwt.decode(
            token,
            key.key.key,
            algorithms=[key.alg],
            audience=audience,
            issuer=peer.issuer,
            options={
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "require": ["iss", "sub", "aud", "iat", "exp", "jti"],
            },
        )
    except jwt.InvalidAudienceError as e:
        raise Refused("audience", f"subject_token is not meant for {audience}") from e
    except jwt.PyJWTError as e:
        raise Refused("bad_token", f"subject_token rejected: {e}") from e
    exp, iat, nbf = (_int(c.get(k, c.get("iat"))) for k in ("exp", "iat", "nbf"))
    if exp is None or iat is None or nbf is None:
        raise Refused("bad_token", "subject_token times are malformed")
    if now >= exp + skew:
        raise Refused("expired", "subject_token has expired")
    if now < nbf - skew or now < iat - skew:
        raise Refused("not_yet_valid", "subject_token is not valid yet")
    cnf, ledger = c.get("cnf"), c.get("ledger")
    jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
    if not isinstance(jkt, str):
        raise Refused("bad_token", "subject_token is not DPoP-bound (cnf.jkt)")
    if not isinstance(ledger, int) or isinstance(ledger, bool) or ledger < 0:
        raise Refused("bad_token", "subject_token names no issuance leaf (ledger)")
    sub, jti, role = c["sub"], c["jti"], c.get("role")
    if not all(isinstance(v, str) and 0 < len(v) <= MAX_ID for v in (sub, jti, role)):
        raise Refused("bad_token", "subject_token sub, jti or role is malformed")
    if role not in FEDERATED_ROLES:
        raise Refused("role", f"a {role} of {peer.name} is not accepted here: only providers are")
    scope = frozenset(str(c.get("scope", "")).split())
    status = status_ref(c, peer)
    return ForeignToken(peer.issuer, sub, jti, role, jkt, kid, exp, ledger, scope, status)


def _under(uri: str, issuer: str) -> bool:
    if not uri.startswith(issuer + "/"):
        return False
    try:
        u = URL(uri)
    except (ValueError, TypeError):
        return False
    # The prefix already pins scheme, host and port; the parse checks that an HTTP client
    # reads the same authority out of it (no userinfo, no fragment).
    return (
        u.is_absolute()
        and u.user is None
        and u.password is None
        and not u.raw_fragment
        and str(u.origin()) == issuer
    )


def status_ref(claims: Mapping[str, Any], peer: Peer) -> StatusRef:
    """The status list entry a peer's attestation names. Raises Refused: ``bad_token``
    (none, or malformed), ``status_uri`` (the list is not under the peer's issuer)."""
    status = claims.get("status")
    entry = status.get("status_list") if isinstance(status, dict) else None
    idx = entry.get("idx") if isinstance(entry, dict) else None
    uri = entry.get("uri") if isinstance(entry, dict) else None
    if not isinstance(idx, int) or isinstance(idx, bool) or idx < 0 or not isinstance(uri, str):
        raise Refused("bad_token", "subject_token names no status list entry (status.status_list)")
    if len(uri) > MAX_URI or not _under(uri, peer.issuer):
        raise Refused(
            "status_uri", f"subject_token's status list is not under {peer.name}'s issuer"
        )
    return StatusRef(uri, idx)


def parse_receipt(text: str) -> tuple[Receipt, bytes]:
    """The receipt and the leaf bytes from what the peer's
    ``GET /v1/attestations/{jti}/receipt`` answered, forwarded as is. Raises Refused."""
    if len(text) > MAX_RECEIPT_SIZE:
        raise Refused("receipt_malformed", "subject_token_receipt is too large")
    try:
        doc = loads(text, "subject_token_receipt")
        receipt = Receipt.from_json(doc["receipt"])
        entry = base64.b64decode(doc["entry"], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error, LedgerError) as e:
        raise Refused(
            "receipt_malformed",
            "subject_token_receipt is the JSON the issuer's receipt endpoint answered",
        ) from e
    return receipt, entry


def check_issuance(receipt: Receipt, entry: bytes, token: ForeignToken, audience: str) -> None:
    """The receipt's leaf is the peer's record of issuing this token. Raises Refused."""
    if receipt.index != token.ledger:
        raise Refused("receipt_mismatch", "the receipt is not for the token's issuance leaf")
    try:
        ev = Event.decode(entry)
    except LedgerError as e:
        raise Refused("receipt_mismatch", "the receipt's leaf is not a telegate event") from e
    d = ev.data
    aud = d.get("aud")
    same = (
        ev.type == EventType.ATTESTATION_ISSUED
        and ev.subject == token.sub
        and d.get("jti") == token.jti
        and d.get("role") == token.role
        and d.get("jkt") == token.jkt
        and d.get("kid") == token.kid
        and d.get("exp") == token.exp
    )
    if not same:
        raise Refused("receipt_mismatch", "the receipt's leaf records another issuance")
    if not isinstance(aud, list) or audience not in aud:
        raise Refused("receipt_mismatch", f"the issuer did not record {audience} as an audience")


def local_subject_id(issuer: str, sub: str) -> str:
    """The id a peer's provider acts under here: ``prov:`` and 32 hex digits of
    SHA-256 over the issuer and the peer's id. The shape of a local id, so consent, calls
    and audit take it unchanged; derived, so it is the same on every exchange; and never
    the peer's id itself, so a peer cannot claim one of this gateway's own subjects."""
    digest = hashlib.sha256(f"telegate-federation/v1\n{issuer}\n{sub}".encode()).hexdigest()
    return "prov:" + digest[:32]
