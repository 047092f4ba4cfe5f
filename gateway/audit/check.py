"""Client-side checks of audit answers: signatures, inclusion, leaf contents and the
consistency of every checkpoint with the last one this client saw. Nothing here trusts the
server: an auditor runs it with the log's pinned vkey."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Sequence
from typing import Any

import rfc8785

from ledger.checkpoint import (
    Checkpoint,
    NotWitnessed,
    WitnessedCheckpoint,
    open_checkpoint,
    verify_witnessed,
)
from ledger.errors import InvalidProof, LedgerError
from ledger.merkle import leaf_hash, verify_consistency, verify_inclusion
from ledger.note import Verifier

__all__ = [
    "AuditCheckFailed",
    "AuditForked",
    "check_consistency",
    "check_page",
    "wait_witnessed",
]


class AuditCheckFailed(LedgerError):
    """An audit answer does not verify; the message says which row or checkpoint."""


class AuditForked(AuditCheckFailed):
    """Two checkpoints of the log, both signed by its key, that no single append-only history
    holds. ``evidence``: both signed notes (the one seen before first), proof for anyone."""

    def __init__(self, message: str, evidence: tuple[bytes, bytes]) -> None:
        super().__init__(message)
        self.evidence = evidence


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
            # ``proof``: an export made before 0.2.0 names it so (docs/api-changes.md).
            proof = [_b64(p) for p in row.get("inclusion_proof", row.get("proof", []))]
            verify_inclusion(index, cp.size, got, proof, cp.root)
        except InvalidProof as e:
            raise AuditCheckFailed(f"row {index}: inclusion proof fails: {e}") from e
    return cp


def check_consistency(
    old: Checkpoint,
    new: Checkpoint,
    proof: Callable[[int, int], list[bytes]],
    *,
    evidence: tuple[bytes, bytes] | None = None,
) -> None:
    """The log only grew from ``old`` to ``new``; a smaller or forked log fails.

    With ``evidence`` (the two signed notes), a failure is an AuditForked carrying them.
    """

    def fail(message: str) -> AuditCheckFailed:
        return AuditCheckFailed(message) if evidence is None else AuditForked(message, evidence)

    if new.size < old.size:
        raise fail(
            f"the log shrank from {old.size} to {new.size} entries since last seen (rollback?)"
        )
    try:
        verify_consistency(old.size, new.size, old.root, new.root, proof(old.size, new.size))
    except InvalidProof as e:
        raise fail(
            f"checkpoint {new.size} is not consistent with {old.size} seen before (fork?): {e}"
        ) from e


def wait_witnessed(
    fetch: Callable[[], bytes],
    log: Verifier,
    witnesses: Sequence[Verifier],
    k: int,
    covers: int,
    *,
    wait: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[bytes, WitnessedCheckpoint]:
    """Fetch the log's served checkpoint until one cosigned by ``k`` of ``witnesses`` covers
    ``covers`` entries (witnessing trails the log by a moment), for at most ``wait`` seconds.

    Returns its note and verified form. Raises AuditCheckFailed if none does in time; a note
    with too few valid cosignatures is retried until then, one with a bad signature is not.
    """
    deadline = clock() + wait
    while True:
        note = fetch()
        try:
            w = verify_witnessed(note, log, witnesses, k)
            why = f"covers {w.checkpoint.size} entries, {covers} needed"
            if w.checkpoint.size >= covers:
                return note, w
        except NotWitnessed as e:
            why = str(e)
        except LedgerError as e:
            raise AuditCheckFailed(f"the served checkpoint does not verify: {e}") from e
        if clock() >= deadline:
            raise AuditCheckFailed(
                f"no checkpoint cosigned by {k} of the {len(witnesses)} witnesses covers "
                f"this answer within {wait:g} s: the newest served {why}"
            )
        sleep(0.1)
