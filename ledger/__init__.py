"""telegate's verifiable log: RFC 6962 Merkle tree, C2SP signed checkpoints and tiles.

A pure library (no web framework, nothing from the gateway) that an auditor can use alone:
``python -m ledger verify <dir-or-url>``.
"""

from __future__ import annotations

from .checkpoint import Checkpoint, CosignatureSigner, SignedCheckpoint, open_checkpoint
from .errors import (
    EntryTooLarge,
    InvalidCheckpoint,
    InvalidNote,
    InvalidProof,
    InvalidTile,
    LedgerError,
    NotFound,
    StoreLocked,
    VerificationFailed,
)
from .events import Event, EventType
from .log import Log, Receipt
from .note import Signer, Verifier
from .store import SQLiteStore

__all__ = [
    "Checkpoint",
    "CosignatureSigner",
    "EntryTooLarge",
    "Event",
    "EventType",
    "InvalidCheckpoint",
    "InvalidNote",
    "InvalidProof",
    "InvalidTile",
    "LedgerError",
    "Log",
    "NotFound",
    "Receipt",
    "SQLiteStore",
    "SignedCheckpoint",
    "Signer",
    "StoreLocked",
    "VerificationFailed",
    "Verifier",
    "open_checkpoint",
]
