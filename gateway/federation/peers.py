"""Reading from peer organizations: their JWKS (trust on first use), consistency proofs
between two of their checkpoints, and their Token Status Lists. The network edge of
federation; nothing here decides whether to trust what it reads."""

from __future__ import annotations

import base64
import binascii
from typing import Any, Protocol

import aiohttp

from ledger.merkle import HASH_SIZE

from ..jsonio import loads
from .trust import Peer

__all__ = ["CannotProve", "PeerClient", "PeerReader", "Unreachable"]

TIMEOUT = 5.0
MAX_ANSWER = 64 * 1024
MAX_PROOF = 2 * 64  # RFC 6962 consistency proofs of trees below 2**63 are far shorter


class Unreachable(Exception):
    """The peer did not answer, or answered something unreadable: try again later."""


class CannotProve(Exception):
    """The peer says it has no tree that large (404): it cannot prove the consistency of a
    checkpoint it signed, which is evidence against it, not a network problem."""


class PeerReader(Protocol):
    async def jwks(self, peer: Peer) -> Any: ...

    async def consistency(self, peer: Peer, old: int, new: int) -> list[bytes]: ...

    async def status_list(self, peer: Peer, uri: str) -> str: ...


class PeerClient:
    """HTTP reads from peers through one pooled session (opened on first use)."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=TIMEOUT), raise_for_status=False
            )
        return self._session

    async def _get(self, url: str) -> tuple[int, bytes]:
        try:
            async with self._http().get(url, allow_redirects=False) as resp:
                body = await resp.content.read(MAX_ANSWER + 1)
                if len(body) > MAX_ANSWER:
                    raise Unreachable(f"{url}: answer larger than {MAX_ANSWER} bytes")
                return resp.status, body
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise Unreachable(f"{url}: {e or type(e).__name__}") from e

    async def jwks(self, peer: Peer) -> Any:
        """The peer's ``/.well-known/jwks.json``, parsed JSON. Raises Unreachable."""
        url = f"{peer.issuer}/.well-known/jwks.json"
        status, body = await self._get(url)
        if status != 200:
            raise Unreachable(f"{url}: HTTP {status}")
        try:
            return loads(body, url)
        except ValueError as e:
            raise Unreachable(f"{url}: not JSON") from e

    async def consistency(self, peer: Peer, old: int, new: int) -> list[bytes]:
        """The RFC 6962 consistency proof from ``old`` to ``new`` the peer serves at
        ``<ledger_url>/proof/consistency``. Raises CannotProve (404) or Unreachable."""
        url = f"{peer.ledger_url}/proof/consistency?old={old}&new={new}"
        status, body = await self._get(url)
        if status == 404:
            raise CannotProve(f"{peer.name} has no tree of size {new}")
        if status != 200:
            raise Unreachable(f"{url}: HTTP {status}")
        try:
            doc = loads(body, url)
            # A peer before 0.2.0 names it ``proof`` (docs/api-changes.md).
            hashes = doc["consistency_proof"] if "consistency_proof" in doc else doc["proof"]
            proof = [base64.b64decode(h, validate=True) for h in hashes]
        except (ValueError, KeyError, TypeError, binascii.Error) as e:
            raise Unreachable(f"{url}: not a consistency proof") from e
        if len(proof) > MAX_PROOF or any(len(h) != HASH_SIZE for h in proof):
            raise Unreachable(f"{url}: not a consistency proof")
        return proof

    async def status_list(self, peer: Peer, uri: str) -> str:
        """The ``statuslist+jwt`` the peer serves at ``uri`` (a URL under its issuer, checked
        by the caller; redirects are not followed), as text. Raises Unreachable."""
        status, body = await self._get(uri)
        if status != 200:
            raise Unreachable(f"{uri}: HTTP {status}")
        try:
            return body.decode("ascii").strip()
        except UnicodeDecodeError as e:
            raise Unreachable(f"{uri}: not a compact JWS") from e

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
