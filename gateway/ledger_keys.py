"""The log's signing key on disk: ``<data_dir>/keys/log.skey`` (mode 0600) and ``log.vkey``.

The private key uses Go's note format (``PRIVATE+KEY+name+hexid+base64``) so the same file
works with ``golang.org/x/mod/sumdb/note`` tooling.
"""

from __future__ import annotations

from pathlib import Path

from ledger.atomic import create_exclusive, write_atomic
from ledger.note import Signer

from .errors import ConfigError

__all__ = ["init_log_key", "load_log_key"]


def init_log_key(key_dir: Path, origin: str) -> tuple[Signer, bool]:
    """Load the log key, creating it on first use. Returns the signer and whether it is new.

    Raises ConfigError if the existing key names another origin or is readable by others.
    """
    skey = key_dir / "log.skey"
    if skey.exists():
        return load_log_key(key_dir, origin), False
    key_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    signer = Signer.generate(origin)
    # Linked into place whole and fsynced (ledger.atomic): two processes racing to
    # initialise cannot both write a key, and a power cut cannot leave an empty one.
    if not create_exclusive(skey, (signer.skey + "\n").encode(), 0o600):
        raise FileExistsError(f"{skey} was created by another process meanwhile")
    write_atomic(key_dir / "log.vkey", (signer.vkey + "\n").encode())
    return signer, True


def load_log_key(key_dir: Path, origin: str) -> Signer:
    skey = key_dir / "log.skey"
    try:
        mode = skey.stat().st_mode
        text = skey.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read the log key {skey}: {e.strerror}") from e
    if mode & 0o077:
        raise ConfigError(f"{skey} is readable by other users; run: chmod 600 {skey}")
    signer = Signer.from_skey(text)
    if signer.name != origin:
        raise ConfigError(
            f"the log key in {skey} is for origin {signer.name!r}, not {origin!r}; "
            "a log's origin never changes"
        )
    return signer
