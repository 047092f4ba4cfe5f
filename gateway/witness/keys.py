"""The witness key on disk: a 0600 file in Go's note format, created on first start.

The file holds an Ed25519 ``PRIVATE+KEY+name+hexid+base64`` key (type 0x01, as Go's
``golang.org/x/mod/sumdb/note`` writes it); the witness signs with it as a tlog-cosignature/v1
cosigner, whose public key is the same Ed25519 key under type 0x04. Clients pin that 0x04
vkey, written beside the key as ``<key>.vkey``.
"""

from __future__ import annotations

from pathlib import Path

from ledger.atomic import create_exclusive, write_atomic
from ledger.checkpoint import CosignatureSigner
from ledger.errors import LedgerError
from ledger.note import Signer

from ..errors import ConfigError

__all__ = ["init_witness_key", "load_witness_key"]


def init_witness_key(path: Path, name: str) -> tuple[CosignatureSigner, bool]:
    """Load the witness key, creating it if missing. Returns it and whether it is new.

    Raises ConfigError if the existing key has another name or is readable by others.
    """
    if path.exists():
        return load_witness_key(path, name), False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    signer = Signer.generate(name)
    # Of two processes starting at once, exactly one writes the key, whole and durable
    # (ledger.atomic).
    if not create_exclusive(path, (signer.skey + "\n").encode(), 0o600):
        return load_witness_key(path, name), False
    cosigner = CosignatureSigner(signer)
    write_atomic(_vkey_path(path), (cosigner.vkey + "\n").encode())
    return cosigner, True


def load_witness_key(path: Path, name: str) -> CosignatureSigner:
    """Read the witness key. Raises ConfigError."""
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read the witness key {path}: {e.strerror}") from e
    if mode & 0o077:
        raise ConfigError(f"{path} is readable by other users; run: chmod 600 {path}")
    try:
        signer = Signer.from_skey(text)
    except LedgerError as e:
        raise ConfigError(f"{path}: {e}") from e
    if signer.name != name:
        # The name is part of the key ID every client pinned: renaming is a new witness.
        raise ConfigError(f"the witness key in {path} is named {signer.name!r}, not {name!r}")
    return CosignatureSigner(signer)


def _vkey_path(path: Path) -> Path:
    return path.with_name(path.name.removesuffix(".skey") + ".vkey")
