"""Federation across organizations (docs/federation.md): a trust list of peer gateways whose
providers' attestations are accepted here, by RFC 8693 token exchange, only with a receipt
from the peer's witnessed log."""

from __future__ import annotations

from .exchange import Accepted, Federation
from .http import FEDERATION, setup
from .keys import KeyContinuityBroken, PinnedKey, parse_jwks, rotate
from .trust import Peer, TrustList, load_trust_list
from .verify import FEDERATED_ROLES, Refused, local_subject_id

__all__ = [
    "FEDERATED_ROLES",
    "FEDERATION",
    "Accepted",
    "Federation",
    "KeyContinuityBroken",
    "Peer",
    "PinnedKey",
    "Refused",
    "TrustList",
    "load_trust_list",
    "local_subject_id",
    "parse_jwks",
    "rotate",
    "setup",
]
