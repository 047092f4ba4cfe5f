"""tlog-tiles paths, hash tiles and entry bundles (``ledger.tiles``).

The first byte picks a width (1..256, as a partial or full tile); the rest is read as a
tile path, as hash tile bytes and as an entry bundle. Properties: a path that parses is
the tile's canonical path; a hash tile splits into ``width`` hashes that join back to it;
an entry bundle decodes into ``width`` entries that encode back to exactly it. Refusals
are ``InvalidTile``.
"""

from __future__ import annotations

import sys

from fuzz._harness import instrumented, main, text

with instrumented(__name__, hooks=("str", "RegEx")):
    from ledger.errors import InvalidTile
    from ledger.tiles import (
        decode_entry_bundle,
        encode_entry_bundle,
        parse_tile_path,
        split_hashes,
    )


def check(data: bytes) -> None:
    if not data:
        return
    width, rest = data[0] or 256, data[1:]
    try:
        tile = parse_tile_path(text(rest))
    except InvalidTile:
        pass
    else:
        assert tile.path == text(rest) and parse_tile_path(tile.path) == tile
    try:
        hashes = split_hashes(rest, width)
    except InvalidTile:
        pass
    else:
        assert len(hashes) == width and b"".join(hashes) == rest
    try:
        entries = decode_entry_bundle(rest, width)
    except InvalidTile:
        return
    assert len(entries) == width and encode_entry_bundle(entries) == rest


if __name__ == "__main__":
    main(check)
    sys.exit(0)
