"""Client-side checks of audit answers: signatures, inclusion, leaf contents and the
consistency of every checkpoint with the last one this client saw. Nothing here trusts the
server: an auditor runs it with the log's pinned vkey."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import rfc8785

from ledger.checkpoint import Checkpoint, open_checkpoint
from ledger.errors import InvalidProof, LedgerError
from ledger.merkle import leaf_hash, verify_consistency, verify_inclusion
from ledger.note import Verifier

__all__ = ["AuditCheckFailed", "check_consistency", "check_page"]


class AuditCheckFailed(LedgerError):
    """An audit answer does not verify; the message says which row or checkpoint."""


def _b64(s: Any) -> bytes:
    try:
        return base64.b64decode(str(s), validate=True)
    except ValueError as e:
        raise AuditCheckFailed("malformed base64 in the answer") from e


def check_page(page: dict[str, Any], log: Verifier) -> Checkpoint:
    """Verify one page of ``GET /v1/audit/events``; returns its checkpoint."""
    try:
        cp = open_checkpoint(str(page["checkpoint"]).encode(), log).checkpoint
    except (LedgerError, KeyError) as e:
        raise AuditCheckFailed(f"checkpoint does not verify: {e}") from e
    if page.get("size") != cp.size:
        raise AuditCheckFailed("page size differs from its checkpoint")
    for row in page.get("rows", []):
        index = row.get("index")
        if not isinstance(index, int):
            raise AuditCheckFailed("row without an index")
        # The leaf is the event's RFC 8785 bytes: recompute it from the event shown.
        got = leaf_hash(rfc8785.dumps(row.get("event")))
        if got != _b64(row.get("leaf_hash")):
            raise AuditCheckFailed(f"row {index}: the event shown is not the one in the log")
        try:
            proof = [_b64(p) for p in row.get("proof", [])]
            verify_inclusion(index, cp.size, got, proof, cp.root)
        except InvalidProof as e:
            raise AuditCheckFailed(f"row {index}: inclusion proof fails: {e}") from e
    return cp


def check_consistency(
    old: Checkpoint, new: Checkpoint, proof: Callable[[int, int], list[bytes]]
) -> None:
    """The log only grew from ``old`` to ``new``; a smaller or forked log fails."""
    if new.size < old.size:
        raise AuditCheckFailed(
            f"the log shrank from {old.size} to {new.size} entries since last seen (rollback?)"
        )
    try:
        verify_consistency(old.size, new.size, old.root, new.root, proof(old.size, new.size))
    except InvalidProof as e:
        raise AuditCheckFailed(
            f"checkpoint {new.size} is not consistent with {old.size} seen before (fork?): {e}"
        ) from e
