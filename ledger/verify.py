"""Offline verification: a whole log, a receipt, and consistency between checkpoints.

Works on any C2SP tlog-tiles log (ours or another conforming implementation's), read from a
directory or over HTTP. Verification is top-down so that the first bad object is named:
the checkpoint signature, then the hash tiles against the signed root, then every full tile
against its parent's hash, then every entry bundle against the level-0 tiles.
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from .checkpoint import Checkpoint, open_checkpoint
from .errors import (
    InvalidCheckpoint,
    InvalidNote,
    InvalidProof,
    InvalidTile,
    LedgerError,
    NotFound,
    VerificationFailed,
)
from .merkle import EMPTY_ROOT, fold_right, subtree_nodes, verify_consistency
from .note import Verifier
from .tiles import (
    TILE_HEIGHT,
    TILE_WIDTH,
    Tile,
    decode_entry_bundle,
    split_hashes,
    tile_levels,
    tiles_for_size,
)

__all__ = [
    "DirSource",
    "HTTPSource",
    "TileSource",
    "verify_checkpoint_consistency",
    "verify_log",
]

# A full entry bundle holds 256 entries of at most 64 KiB plus their length prefixes.
MAX_OBJECT_SIZE = TILE_WIDTH * (0xFFFF + 2)

Progress = Callable[[int, int], None]


class TileSource(Protocol):
    """Where a log's ``checkpoint`` and ``tile/...`` objects are read from."""

    def get(self, path: str) -> bytes:
        """Return the object's bytes; raise NotFound if it does not exist."""


class DirSource:
    """A log exported to a directory (``telegate ledger export``)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def get(self, path: str) -> bytes:
        p = self.root / path
        try:
            if p.stat().st_size > MAX_OBJECT_SIZE:
                raise InvalidTile(f"{path} is too large")
            return p.read_bytes()
        except FileNotFoundError as e:
            raise NotFound(f"{path} is missing") from e


class HTTPSource:
    """A log served over HTTP(S), e.g. ``https://gw.example/ledger/``."""

    def __init__(self, base: str, *, timeout: float = 30.0) -> None:
        if urllib.parse.urlsplit(base).scheme not in ("http", "https"):
            raise LedgerError("only http and https URLs are supported")
        self.base = base if base.endswith("/") else base + "/"
        self.timeout = timeout

    def get(self, path: str) -> bytes:
        url = urllib.parse.urljoin(self.base, path)
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as resp:  # noqa: S310
                data: bytes = resp.read(MAX_OBJECT_SIZE + 1)
        except urllib.error.HTTPError as e:
            if e.code == 404:
                raise NotFound(f"{path} is missing") from e
            raise LedgerError(f"{path}: HTTP {e.code}") from e
        except (urllib.error.URLError, OSError) as e:
            raise LedgerError(f"{path}: {e}") from e
        if len(data) > MAX_OBJECT_SIZE:
            raise InvalidTile(f"{path} is too large")
        return data


def _full_root(hashes: list[bytes]) -> bytes:
    """Root of a complete subtree given its 2**k bottom hashes."""
    sha = hashlib.sha256
    while len(hashes) > 1:
        hashes = [
            sha(b"\x01" + a + b).digest() for a, b in zip(hashes[::2], hashes[1::2], strict=True)
        ]
    return hashes[0]


def _load_level(src: TileSource, size: int, level: int) -> list[bytes]:
    hashes: list[bytes] = []
    for tile in tiles_for_size(size, level):
        try:
            hashes += split_hashes(src.get(tile.path), tile.width)
        except LedgerError as e:
            raise VerificationFailed(tile.path, str(e)) from e
    return hashes


def verify_log(
    src: TileSource,
    log: Verifier,
    *,
    origin: str | None = None,
    progress: Progress | None = None,
) -> Checkpoint:
    """Verify a whole log: checkpoint signature, every hash tile and every entry.

    Returns the verified checkpoint. Raises VerificationFailed naming the first bad object
    (``checkpoint``, ``tile/L/N``, or ``entry I``). ``progress(done, total)`` is called as
    entries are checked.
    """
    try:
        cp = open_checkpoint(src.get("checkpoint"), log, origin=origin).checkpoint
    except (InvalidNote, InvalidCheckpoint, NotFound) as e:
        raise VerificationFailed("checkpoint", str(e)) from e
    except LedgerError as e:
        raise VerificationFailed("checkpoint", str(e)) from e
    size = cp.size
    if size == 0:
        if cp.root != EMPTY_ROOT:
            raise VerificationFailed("checkpoint", "empty tree with a non-empty root")
        return cp
    levels = [_load_level(src, size, t) for t in range(tile_levels(size))]

    # 1. The signed root, from the right edge of every level (partial tiles and the top).
    nodes = []
    for lvl, idx in subtree_nodes(0, size):
        t, r = divmod(lvl, TILE_HEIGHT)
        nodes.append(_full_root(levels[t][idx << r : (idx + 1) << r]))
    if fold_right(nodes) != cp.root:
        # The right edge is covered only by the root; find the culprit from the entries.
        raise _locate_edge_fault(src, size, levels)

    # 2. Every full tile against the hash its parent level holds for it, top-down.
    for t in range(len(levels) - 2, -1, -1):
        below, above = levels[t], levels[t + 1]
        for j, want in enumerate(above):
            if _full_root(below[j * TILE_WIDTH : (j + 1) * TILE_WIDTH]) != want:
                raise VerificationFailed(Tile(t, j).path, "does not match its parent tile")

    # 3. Every entry against the level-0 hash of its leaf.
    leaves = levels[0]
    sha = hashlib.sha256
    done = 0
    for tile in tiles_for_size(size, None):
        try:
            entries = decode_entry_bundle(src.get(tile.path), tile.width)
        except LedgerError as e:
            raise VerificationFailed(tile.path, str(e)) from e
        base = tile.index * TILE_WIDTH
        got = [sha(b"\x00" + e).digest() for e in entries]
        if got != leaves[base : base + tile.width]:
            k = next(i for i, h in enumerate(got) if h != leaves[base + i])
            raise VerificationFailed(
                f"entry {base + k}", f"in {tile.path} does not match its leaf hash"
            )
        done += tile.width
        if progress is not None:
            progress(done, size)
    return cp


def _entry_hashes(src: TileSource, size: int) -> list[bytes]:
    sha = hashlib.sha256
    out: list[bytes] = []
    for tile in tiles_for_size(size, None):
        try:
            entries = decode_entry_bundle(src.get(tile.path), tile.width)
        except LedgerError as e:
            raise VerificationFailed(tile.path, str(e)) from e
        out += [sha(b"\x00" + e).digest() for e in entries]
    return out


def _locate_edge_fault(src: TileSource, size: int, levels: list[list[bytes]]) -> VerificationFailed:
    """The tiles disagree with the signed root: recompute every level from the entries and
    name the first tile that differs, or the checkpoint if the data is self-consistent."""
    want = _entry_hashes(src, size)
    for t, got in enumerate(levels):
        for tile in tiles_for_size(size, t):
            lo = tile.index * TILE_WIDTH
            if got[lo : lo + tile.width] != want[lo : lo + tile.width]:
                return VerificationFailed(tile.path, "does not match the log's entries")
        want = [
            _full_root(want[i : i + TILE_WIDTH])
            for i in range(0, len(want) - TILE_WIDTH + 1, TILE_WIDTH)
        ]
    return VerificationFailed("checkpoint", "root does not match the log's tiles and entries")


def verify_checkpoint_consistency(
    old: bytes, new: bytes, proof: list[bytes], log: Verifier
) -> tuple[Checkpoint, Checkpoint]:
    """Verify two signed checkpoints and that the newer extends the older.

    Raises InvalidNote, InvalidCheckpoint or InvalidProof (a fork or rollback).
    """
    a = open_checkpoint(old, log).checkpoint
    b = open_checkpoint(new, log).checkpoint
    if a.size > b.size:
        a, b = b, a
    try:
        verify_consistency(a.size, b.size, a.root, b.root, proof)
    except InvalidProof as e:
        raise InvalidProof(f"checkpoints {a.size} and {b.size} are not consistent: {e}") from e
    return a, b
