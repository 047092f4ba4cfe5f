"""Receipts from another log, checked against that log's key and the witnesses the verifier
requires. Pure: no I/O.

A receipt alone (:meth:`ledger.log.Receipt.verify`) proves what the log's key signed. A
verifier in another organization wants more: that the checkpoint was also cosigned by
witnesses it chose, so the log cannot show it a history it hides from everyone else
(C2SP tlog-witness), and that the entry it was handed is the leaf.
"""

from __future__ import annotations

from collections.abc import Sequence

from .checkpoint import WitnessedCheckpoint, verify_witnessed
from .errors import InvalidProof
from .log import Receipt
from .merkle import leaf_hash, verify_inclusion
from .note import Verifier

__all__ = ["verify_witnessed_receipt"]


def verify_witnessed_receipt(
    receipt: Receipt,
    entry: bytes,
    log: Verifier,
    witnesses: Sequence[Verifier],
    k: int,
    *,
    now: int | None = None,
) -> WitnessedCheckpoint:
    """Verify that ``entry`` is leaf ``receipt.index`` of the tree named by the receipt's
    checkpoint, which ``log`` signed and at least ``k`` of ``witnesses`` cosigned.

    The checkpoint's origin must be the log key's name (tlog-checkpoint: the key name SHOULD
    match the origin; telegate's always does). ``now`` refuses cosignatures dated after it.
    Returns the witnessed checkpoint. Raises InvalidProof when the entry is not the leaf or
    the inclusion proof fails, NotWitnessed (an InvalidCheckpoint) when fewer than ``k``
    witnesses cosigned, and InvalidNote or InvalidCheckpoint for a bad checkpoint.
    """
    # The cheap, local check first: a receipt for another entry fails without any signature.
    if leaf_hash(entry) != receipt.leaf_hash:
        raise InvalidProof("the entry is not the receipt's leaf")
    witnessed = verify_witnessed(receipt.checkpoint, log, witnesses, k, now=now)
    cp = witnessed.checkpoint
    if receipt.index >= cp.size:
        raise InvalidProof(f"leaf {receipt.index} is beyond the checkpoint's tree ({cp.size})")
    verify_inclusion(receipt.index, cp.size, receipt.leaf_hash, receipt.proof, cp.root)
    return witnessed
