"""Write a log as a static C2SP tlog-tiles tree that any web server can serve."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from .checkpoint import Checkpoint
from .note import parse_note
from .store import LogStore
from .tiles import TILE_WIDTH, encode_entry_bundle, tile_levels, tiles_for_size

__all__ = ["export_log"]


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def export_log(
    store: LogStore, out: str | Path, *, progress: Callable[[int, int], None] | None = None
) -> Checkpoint:
    """Export every tile and entry bundle of the newest checkpoint, then the checkpoint.

    The checkpoint is written last, so a reader of a half-written export sees the previous
    complete state. Returns the exported checkpoint.
    """
    out = Path(out)
    note = store.checkpoint()
    if note is None:
        raise FileNotFoundError("the log has no checkpoint yet")
    cp = Checkpoint.parse(parse_note(note).text)
    size = cp.size
    for level in range(tile_levels(size)):
        for tile in tiles_for_size(size, level):
            _write(out / tile.path, store.read_tile(tile))
    done = 0
    for tile in tiles_for_size(size, None):
        start = tile.index * TILE_WIDTH
        _write(out / tile.path, encode_entry_bundle(store.read_entries(start, start + tile.width)))
        done += tile.width
        if progress is not None:
            progress(done, size)
    _write(out / "checkpoint", note)
    return cp
