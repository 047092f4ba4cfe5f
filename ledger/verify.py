"""Offline verification: a whole log, a receipt, and consistency between checkpoints.

Works on any C2SP tlog-tiles log (ours or another conforming implementation's), read from a
directory or over HTTP. Verification is top-down so that the first bad object is named:
the checkpoint signature, then the hash tiles against the signed root, then every full tile
against its parent's hash, then every entry bundle against the level-0 tiles.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .checkpoint import Checkpoint, NotWitnessed, open_checkpoint, verify_witnessed
from .errors import (
    InvalidProof,
    InvalidTile,
    LedgerError,
    NotFound,
    VerificationFailed,
)
from .merkle import EMPTY_ROOT, HASH_SIZE, fold_right, subtree_nodes, verify_consistency
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
    "LogForked",
    "TileSource",
    "check_fork",
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
        hashes += _read_hashes(src, tile)
    return hashes


def _read_hashes(src: TileSource, tile: Tile) -> list[bytes]:
    try:
        return split_hashes(src.get(tile.path), tile.width)
    except LedgerError as e:
        raise VerificationFailed(tile.path, str(e)) from e


@dataclass(frozen=True, slots=True)
class _BundleResult:
    """What a worker learnt about one level-0 tile and its entry bundle."""

    index: int
    tile_root: bytes | None  # 8-level root of a full tile's hashes; None if partial
    tile_error: str | None  # tile/0/N unreadable or malformed
    bad_entry: int | None  # first entry (absolute index) whose hash differs from the tile
    bundle_error: str | None  # bundle unreadable or malformed


def _check_bundles(src: TileSource, size: int, first: int, last: int) -> list[_BundleResult]:
    """Check level-0 tiles ``first..last-1`` against their entry bundles (runs in a worker)."""
    sha = hashlib.sha256
    out: list[_BundleResult] = []
    count = size
    for n in range(first, last):
        width = min(TILE_WIDTH, count - n * TILE_WIDTH)
        tile, bundle = Tile(0, n, width), Tile(None, n, width)
        try:
            hashes = src.get(tile.path)
            if len(hashes) != width * HASH_SIZE:
                raise InvalidTile(f"hash tile is {len(hashes)} bytes, want {width * HASH_SIZE}")
        except LedgerError as e:
            out.append(_BundleResult(n, None, str(e), None, None))
            continue
        root = None
        if width == TILE_WIDTH:
            root = _full_root(split_hashes(hashes, width))
        try:
            entries = decode_entry_bundle(src.get(bundle.path), width)
        except LedgerError as e:
            out.append(_BundleResult(n, root, None, None, str(e)))
            continue
        got = b"".join([sha(b"\x00" + e).digest() for e in entries])
        bad = None
        if got != hashes:
            k = next(
                i for i in range(width) if got[i * 32 : i * 32 + 32] != hashes[i * 32 : i * 32 + 32]
            )
            bad = n * TILE_WIDTH + k
        out.append(_BundleResult(n, root, None, bad, None))
    return out


_CHUNK = 32  # level-0 tiles per worker task: 8192 entries


def _bundle_results(
    src: TileSource, size: int, workers: int, progress: Progress | None
) -> list[_BundleResult]:
    count = -(-size // TILE_WIDTH)
    chunks = [(i, min(count, i + _CHUNK)) for i in range(0, count, _CHUNK)]
    results: list[_BundleResult] = []

    def collect(part: list[_BundleResult]) -> None:
        results.extend(part)
        if progress is not None:
            progress(min(size, results[-1].index * TILE_WIDTH + TILE_WIDTH), size)

    if workers <= 1 or len(chunks) < 2:
        for lo, hi in chunks:
            collect(_check_bundles(src, size, lo, hi))
        return results
    # fork is cheap but only safe while this process has a single thread (a server or a
    # test runner may hold locks in others); otherwise pay for spawn's fresh interpreter.
    method = "fork" if threading.active_count() == 1 else "spawn"
    ctx = multiprocessing.get_context(method)
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = [pool.submit(_check_bundles, src, size, lo, hi) for lo, hi in chunks]
        for f in futures:
            collect(f.result())
    return results


def verify_log(
    src: TileSource,
    log: Verifier,
    *,
    origin: str | None = None,
    progress: Progress | None = None,
    workers: int = 1,
    witnesses: Sequence[Verifier] = (),
    min_witnesses: int = 0,
) -> Checkpoint:
    """Verify a whole log: checkpoint signature, every hash tile and every entry.

    Returns the verified checkpoint. Raises VerificationFailed naming the first bad object,
    top-down: ``checkpoint``, then ``tile/L/N`` (higher levels first), then ``entry I``.
    With ``min_witnesses``, the checkpoint must also carry that many valid cosignatures by
    distinct ``witnesses`` (see :func:`~ledger.checkpoint.verify_witnessed`), checked before
    anything is downloaded. ``progress(done, total)`` is called as entries are checked. With
    ``workers > 1`` that many spawned processes hash the entries; as with any
    ``multiprocessing`` use, a script calling this must guard its entry point with
    ``if __name__ == "__main__":``.
    """
    try:
        note = src.get("checkpoint")
        # One fetch: the note whose cosignatures are counted is the one whose tree is checked.
        cp = verify_witnessed(note, log, witnesses, min_witnesses, origin=origin).checkpoint
    except NotWitnessed as e:
        raise VerificationFailed("checkpoint", f"not witnessed: {e}") from e
    except LedgerError as e:
        raise VerificationFailed("checkpoint", str(e)) from e
    size = cp.size
    if size == 0:
        if cp.root != EMPTY_ROOT:
            raise VerificationFailed("checkpoint", "empty tree with a non-empty root")
        return cp
    # Levels 1 and up are small (1/256 of the entries); level 0 is read by the workers,
    # except its partial tile, which only the root covers.
    nlevels = tile_levels(size)
    upper: list[list[bytes]] = [[], *(_load_level(src, size, t) for t in range(1, nlevels))]
    full0, rest0 = divmod(size, TILE_WIDTH)
    edge0 = _read_hashes(src, Tile(0, full0, rest0)) if rest0 else []
    full0 *= TILE_WIDTH

    # 1. The signed root, from the right edge of every level (partial tiles and the top).
    nodes = []
    for lvl, idx in subtree_nodes(0, size):
        t, r = divmod(lvl, TILE_HEIGHT)
        lo, hi = idx << r, (idx + 1) << r
        nodes.append(_full_root(edge0[lo - full0 : hi - full0] if t == 0 else upper[t][lo:hi]))
    if fold_right(nodes) != cp.root:
        # The right edge is covered only by the root; find the culprit from the entries.
        raise _locate_edge_fault(src, size)

    # 2. Every full tile of level 1 and up against the hash its parent level holds for it.
    for t in range(nlevels - 2, 0, -1):
        below, above = upper[t], upper[t + 1]
        for j, want in enumerate(above):
            if _full_root(below[j * TILE_WIDTH : (j + 1) * TILE_WIDTH]) != want:
                raise VerificationFailed(Tile(t, j).path, "does not match its parent tile")

    # 3. Level-0 tiles against level 1, then every entry against its leaf hash.
    results = _bundle_results(src, size, workers, progress)
    for res in results:
        width = min(TILE_WIDTH, size - res.index * TILE_WIDTH)
        path = Tile(0, res.index, width).path
        if res.tile_error is not None:
            raise VerificationFailed(path, res.tile_error)
        if res.tile_root is not None and res.tile_root != upper[1][res.index]:
            raise VerificationFailed(path, "does not match its parent tile")
    for res in results:
        width = min(TILE_WIDTH, size - res.index * TILE_WIDTH)
        bundle = Tile(None, res.index, width).path
        if res.bundle_error is not None:
            raise VerificationFailed(bundle, res.bundle_error)
        if res.bad_entry is not None:
            raise VerificationFailed(
                f"entry {res.bad_entry}", f"in {bundle} does not match its leaf hash"
            )
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


def _locate_edge_fault(src: TileSource, size: int) -> VerificationFailed:
    """The tiles disagree with the signed root: recompute every level from the entries and
    name the first tile that differs, or the checkpoint if the data is self-consistent."""
    levels = [_load_level(src, size, t) for t in range(tile_levels(size))]
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


class LogForked(InvalidProof):
    """Two checkpoints signed by one log key that no append-only history can both belong to:
    a split view (two histories shown to different parties) or a rollback.

    ``evidence`` holds both signed notes, smaller tree first: anyone holding the log's vkey
    can check them, so they prove the misbehaviour to a third party without trusting the
    reporter.
    """

    def __init__(self, message: str, evidence: tuple[bytes, bytes]) -> None:
        super().__init__(message)
        self.evidence = evidence

    def report(self) -> str:
        """The message and both notes, as text a person can forward."""
        a, b = (n.decode("utf-8", "replace") for n in self.evidence)
        return f"{self}\n\n--- checkpoint A ---\n{a}\n--- checkpoint B ---\n{b}"


def verify_checkpoint_consistency(
    old: bytes, new: bytes, proof: Sequence[bytes], log: Verifier
) -> tuple[Checkpoint, Checkpoint]:
    """Verify two signed checkpoints and that the larger tree extends the smaller.

    Returns both checkpoints, smaller first. Raises InvalidNote or InvalidCheckpoint for a
    bad note, and LogForked (an InvalidProof) carrying both notes when they are not
    consistent: both signatures verified, so the log itself signed two histories.
    """
    a = open_checkpoint(old, log).checkpoint
    b = open_checkpoint(new, log).checkpoint
    if a.size > b.size:
        a, b = b, a
        old, new = new, old
    try:
        # RFC 9162 2.1.4.2: between equal sizes the proof is empty and the roots must match.
        verify_consistency(a.size, b.size, a.root, b.root, list(proof))
    except InvalidProof as e:
        raise LogForked(
            f"checkpoints {a.size} and {b.size} of {a.origin} are not consistent: {e}", (old, new)
        ) from e
    return a, b


def check_fork(a: bytes, b: bytes, proof: Sequence[bytes], log: Verifier) -> None:
    """Raise LogForked, with ``a`` and ``b`` as evidence, unless one of the two signed
    checkpoints extends the other by ``proof`` (RFC 6962 consistency, smaller to larger).
    Raises InvalidNote or InvalidCheckpoint if either is not a valid checkpoint of ``log``.
    """
    verify_checkpoint_consistency(a, b, proof, log)
