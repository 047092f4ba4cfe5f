"""The one error root of the ledger package and its specific subclasses."""

from __future__ import annotations

__all__ = [
    "EntryTooLarge",
    "InvalidCheckpoint",
    "InvalidNote",
    "InvalidProof",
    "InvalidTile",
    "LedgerError",
    "LedgerUnavailable",
    "NotFound",
    "StoreLocked",
    "VerificationFailed",
]


class LedgerError(Exception):
    """Root of every error raised by :mod:`ledger`."""


class LedgerUnavailable(LedgerError):
    """The log takes no appends now: its writer is stopped or has failed, or a shared
    store's server cannot be reached. Worth retrying later. Nothing was acknowledged; an
    entry refused because the connection broke during its COMMIT may still be in the log
    (a retry then appends it a second time, under a new index)."""


class InvalidProof(LedgerError):
    """An inclusion or consistency proof does not verify."""


class InvalidNote(LedgerError):
    """A signed note is malformed, too large, or carries no signature by a known key."""


class InvalidCheckpoint(LedgerError):
    """A checkpoint body is malformed or does not match what was expected."""


class InvalidTile(LedgerError):
    """A tile or entry bundle is malformed or disagrees with the tree."""


class EntryTooLarge(LedgerError):
    """A leaf exceeds the 64 KiB limit imposed by tlog-tiles entry bundles."""


class NotFound(LedgerError):
    """An index, tile or size lies beyond the current tree."""


class StoreLocked(LedgerError):
    """Another process already holds the writer lock on this log."""


class VerificationFailed(LedgerError):
    """Offline verification of a log found a bad tile, entry or checkpoint.

    ``where`` names the first bad object (for example ``tile/0/000`` or ``entry 17``).
    """

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason
