"""C2SP tlog-tiles: tile coordinates, paths and entry bundles. Pure: no I/O.

A hash tile at level ``L``, index ``N`` holds up to 256 consecutive hashes of tree level
``8 * L``, starting at ``N * 256``. A partial tile of width ``W`` (1..255) is served at
``<path>.p/<W>``. Entry bundles hold the leaves of the matching level-0 tile, each
prefixed by its big-endian uint16 length.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from .errors import EntryTooLarge, InvalidTile
from .merkle import HASH_SIZE

__all__ = [
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "Tile",
    "decode_entry_bundle",
    "encode_entry_bundle",
    "encode_index",
    "parse_tile_path",
    "split_hashes",
    "tiles_for_size",
]

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
_MAX_INDEX = 1 << 63


@dataclass(frozen=True, slots=True)
class Tile:
    """A tile coordinate. ``level`` is None for an entry bundle."""

    level: int | None
    index: int
    width: int = TILE_WIDTH

    @property
    def is_full(self) -> bool:
        return self.width == TILE_WIDTH

    @property
    def path(self) -> str:
        kind = "entries" if self.level is None else str(self.level)
        p = f"tile/{kind}/{encode_index(self.index)}"
        return p if self.is_full else f"{p}.p/{self.width}"


def encode_index(n: int) -> str:
    """tlog-tiles index encoding: 3-digit groups, all but the last prefixed with ``x``."""
    if n < 0:
        raise InvalidTile("negative tile index")
    groups = []
    while True:
        groups.append(f"{n % 1000:03d}")
        n //= 1000
        if n == 0:
            break
    groups.reverse()
    return "/".join([*("x" + g for g in groups[:-1]), groups[-1]])


_PATH = re.compile(r"tile/(entries|[0-9]{1,2})/((?:x[0-9]{3}/)*[0-9]{3})(?:\.p/([0-9]{1,3}))?")


def parse_tile_path(path: str) -> Tile:
    """Parse ``tile/<L>/<N>[.p/<W>]`` or ``tile/entries/<N>[.p/<W>]`` strictly.

    Raises InvalidTile for anything that is not the canonical encoding.
    """
    m = _PATH.fullmatch(path)
    if not m:
        raise InvalidTile("malformed tile path")
    kind, idx, width = m.groups()
    level = None if kind == "entries" else int(kind)
    if level is not None and (level > 63 or str(level) != kind):
        raise InvalidTile("malformed tile level")
    n = int(idx.replace("x", "").replace("/", ""))
    if n >= _MAX_INDEX:
        raise InvalidTile("tile index out of range")
    w = TILE_WIDTH
    if width is not None:
        w = int(width)
        # Partial widths are 1..255 with no leading zeroes.
        if not 1 <= w < TILE_WIDTH or str(w) != width:
            raise InvalidTile("malformed partial tile width")
    tile = Tile(level, n, w)
    if tile.path != path:
        raise InvalidTile("non-canonical tile path")
    return tile


def tiles_for_size(size: int, level: int | None) -> Iterator[Tile]:
    """Every tile of a level (``None``: entry bundles) for a tree of ``size`` leaves."""
    count = size >> (TILE_HEIGHT * (level or 0))
    full, rest = divmod(count, TILE_WIDTH)
    for n in range(full):
        yield Tile(level, n)
    if rest:
        yield Tile(level, full, rest)


def tile_levels(size: int) -> int:
    """How many hash tile levels a tree of ``size`` leaves has."""
    levels = 0
    while size >> (TILE_HEIGHT * levels):
        levels += 1
    return levels


def tile_for(level: int | None, index: int, size: int) -> Tile:
    """The tile (full or partial) holding hash ``index`` of tile ``level`` at ``size``."""
    count = size >> (TILE_HEIGHT * (level or 0))
    n = index // TILE_WIDTH
    if index >= count:
        raise InvalidTile("index beyond the tree")
    return Tile(level, n, min(TILE_WIDTH, count - n * TILE_WIDTH))


def split_hashes(data: bytes, width: int) -> list[bytes]:
    """Split a hash tile's bytes into ``width`` hashes. Raises InvalidTile."""
    if len(data) != width * HASH_SIZE:
        raise InvalidTile(f"hash tile is {len(data)} bytes, want {width * HASH_SIZE}")
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


def encode_entry_bundle(entries: Sequence[bytes]) -> bytes:
    out = bytearray()
    for e in entries:
        if len(e) > 0xFFFF:
            raise EntryTooLarge("entry larger than 65535 bytes")
        out += struct.pack(">H", len(e)) + e
    return bytes(out)


def decode_entry_bundle(data: bytes, width: int) -> list[bytes]:
    """Split an entry bundle into exactly ``width`` entries. Raises InvalidTile."""
    out: list[bytes] = []
    append = out.append
    pos, end = 0, len(data)
    # A hot loop in whole-log verification: plain indexing beats struct here.
    while pos < end:
        if pos + 2 > end:
            raise InvalidTile("truncated entry length")
        nxt = pos + 2 + (data[pos] << 8 | data[pos + 1])
        if nxt > end:
            raise InvalidTile("truncated entry")
        append(data[pos + 2 : nxt])
        pos = nxt
        if len(out) > width:
            break
    if len(out) != width or pos != end:
        raise InvalidTile(f"entry bundle holds more or fewer than {width} entries")
    return out
