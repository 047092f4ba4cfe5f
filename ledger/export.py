"""Write a log as a static C2SP tlog-tiles tree that any web server can serve."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .atomic import fsync_dir, write_atomic
from .checkpoint import Checkpoint
from .note import parse_note
from .store import LogStore
from .tiles import TILE_WIDTH, encode_entry_bundle, tile_levels, tiles_for_size

__all__ = ["export_log"]


def _write(out: Path, path: Path, data: bytes, dirs: set[Path]) -> None:
    """``data`` at ``out / path``, fsynced before its rename; its directory and those above
    it up to ``out``'s parent (a new directory's name lives in its parent) noted in
    ``dirs``, each to be synced once before the checkpoint is written."""
    target = out / path
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, data, sync_dir=False)
    d = target.parent
    while d not in dirs:
        dirs.add(d)
        if d == out.parent:
            break
        d = d.parent


def export_log(
    store: LogStore, out: str | Path, *, progress: Callable[[int, int], None] | None = None
) -> Checkpoint:
    """Export every tile and entry bundle of the newest checkpoint, then the checkpoint.

    The checkpoint is written last, so a reader of a half-written export sees the previous
    complete state; and only once every tile, bundle and directory is fsynced, so a power
    cut cannot leave a checkpoint naming tiles the disk never got (ledger.atomic).
    Returns the exported checkpoint.
    """
    out = Path(out)
    note = store.checkpoint()
    if note is None:
        raise FileNotFoundError("the log has no checkpoint yet")
    cp = Checkpoint.parse(parse_note(note).text)
    size = cp.size
    dirs: set[Path] = set()
    for level in range(tile_levels(size)):
        for tile in tiles_for_size(size, level):
            _write(out, Path(tile.path), store.read_tile(tile), dirs)
    done = 0
    for tile in tiles_for_size(size, None):
        start = tile.index * TILE_WIDTH
        bundle = encode_entry_bundle(store.read_entries(start, start + tile.width))
        _write(out, Path(tile.path), bundle, dirs)
        done += tile.width
        if progress is not None:
            progress(done, size)
    out.mkdir(parents=True, exist_ok=True)
    for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
        fsync_dir(d)  # deepest first: a directory's entries before its own name
    write_atomic(out / "checkpoint", note)
    return cp
