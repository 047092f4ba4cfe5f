"""Files that appear whole or not at all, and stay after a power cut.

A rename makes a file's new content appear atomically to other processes, but only an
fsync makes it durable: without one, a power cut after the rename can leave the new name
pointing at an empty or partial file (ext4's delayed allocation, XFS), or the rename
itself lost while later writes survived. So every write here goes

    write a temporary file beside the target -> flush + fsync it -> rename (or link) it
    into place -> fsync the directory

(the sequence of SQLite's own journal handling and of ``git``'s ``core.fsync``). Each
step goes through the ``os`` module's own functions, so a crash harness that wraps them
(tests/faults/crashpoint.py) still sees every step.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

__all__ = ["create_exclusive", "fsync_dir", "replace_durably", "write_atomic"]


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync the directory ``path``, so that names created, renamed or removed in it are
    durable. Raises OSError if it cannot be opened or synced."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_beside(path: Path, data: bytes, mode: int) -> Path:
    """``data`` in a fresh temporary file in ``path``'s directory (``mode``), fsynced."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp


def write_atomic(
    path: str | os.PathLike[str], data: bytes, mode: int = 0o644, *, sync_dir: bool = True
) -> None:
    """Replace ``path`` with ``data``: readers see the old content or the new, never a
    part, and once this returns the new content survives a power cut. The temporary name
    is unique, so concurrent writers of one path never write into each other's file (the
    last rename wins). With ``sync_dir`` False the directory is not synced: the caller
    writing many files syncs each directory once (:func:`fsync_dir`) before anything that
    must not outlive them. Raises OSError (the temporary file removed) if any step fails."""
    path = Path(path)
    tmp = _temp_beside(path, data, mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if sync_dir:
        fsync_dir(path.parent)


def replace_durably(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Rename the finished file ``src`` over ``dst`` (same file system), after an fsync of
    ``src``, then fsync ``dst``'s directory: for files written by something else (a SQLite
    database built beside the old one). Raises OSError."""
    fd = os.open(src, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(src, dst)
    fsync_dir(Path(dst).parent)


def create_exclusive(path: str | os.PathLike[str], data: bytes, mode: int = 0o600) -> bool:
    """Create ``path`` with ``data`` unless it exists: whether this call created it.

    For keys and secrets made once and never replaced: the content is written and fsynced
    under a temporary name, then hard-linked into place, which fails if another process
    got there first; so the file appears whole or not at all (a reader never sees it
    empty), of two processes racing exactly one wins, and its content is durable before
    its name is. Raises OSError for anything but "it exists"."""
    path = Path(path)
    if path.exists():
        return False
    tmp = _temp_beside(path, data, mode)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    fsync_dir(path.parent)
    return True
