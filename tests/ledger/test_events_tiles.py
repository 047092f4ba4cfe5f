"""Event envelopes (RFC 8785), salted commitments, and tlog-tiles encodings."""

from __future__ import annotations

import datetime as dt

import pytest

from ledger.errors import EntryTooLarge, InvalidTile, LedgerError
from ledger.events import MAX_ENTRY_SIZE, Event, EventType, commit, new_salt, verify_commitment
from ledger.tiles import (
    Tile,
    decode_entry_bundle,
    encode_entry_bundle,
    encode_index,
    parse_tile_path,
    tiles_for_size,
)

T0 = dt.datetime(2026, 11, 25, 12, 0, 0, 123456, tzinfo=dt.UTC)


def test_event_is_canonical_json() -> None:
    ev = Event.now(
        EventType.SESSION_ADMITTED,
        "prov:1",
        clock=lambda: T0,
        subject="pat:9",
        session="s1",
        data={"z": 1, "a": [1.0, "é"]},
    )
    raw = ev.encode()
    # RFC 8785: keys sorted by code unit, no whitespace, 1.0 serialised as 1, UTF-8 kept.
    assert (
        raw
        == (
            '{"actor":"prov:1","data":{"a":[1,"é"],"z":1},"session":"s1",'
            '"subject":"pat:9","time":"2026-11-25T12:00:00.123Z","type":"session.admitted","v":1}'
        ).encode()
    )
    assert Event.decode(raw) == Event(
        EventType.SESSION_ADMITTED,
        "2026-11-25T12:00:00.123Z",
        "prov:1",
        "pat:9",
        "s1",
        {"a": [1, "é"], "z": 1},
    )


def test_non_canonical_or_foreign_leaves_rejected() -> None:
    raw = Event.now(EventType.AUDIT_QUERY, "aud:1", clock=lambda: T0).encode()
    with pytest.raises(LedgerError):
        Event.decode(raw.replace(b":", b": ", 1))
    with pytest.raises(LedgerError):
        Event.decode(b'{"type":"nope","v":1}')


def test_entry_size_limit() -> None:
    small = Event.now(EventType.AUDIT_QUERY, "aud:1", clock=lambda: T0, data={"x": ""})
    overhead = len(small.encode())
    fits = Event.now(
        EventType.AUDIT_QUERY,
        "aud:1",
        clock=lambda: T0,
        data={"x": "a" * (MAX_ENTRY_SIZE - overhead)},
    )
    assert len(fits.encode()) == MAX_ENTRY_SIZE
    too_big = Event.now(
        EventType.AUDIT_QUERY,
        "aud:1",
        clock=lambda: T0,
        data={"x": "a" * (MAX_ENTRY_SIZE - overhead + 1)},
    )
    with pytest.raises(EntryTooLarge):
        too_big.encode()


def test_salted_commitments() -> None:
    salt = new_salt(lambda n: b"\x01" * n)
    c = commit(salt, "value")
    assert c == commit(salt, b"value") and len(c) == 64
    verify_commitment(salt, "value", c)
    with pytest.raises(LedgerError):
        verify_commitment(salt, "other", c)
    assert commit(new_salt(), "value") != commit(new_salt(), "value")
    with pytest.raises(ValueError):
        commit(b"short", "value")


@pytest.mark.parametrize(
    ("n", "want"),
    [(0, "000"), (5, "005"), (999, "999"), (1000, "x001/000"), (1234067, "x001/x234/067")],
)
def test_index_encoding(n: int, want: str) -> None:
    assert encode_index(n) == want
    assert parse_tile_path(f"tile/0/{want}").index == n


def test_tile_paths() -> None:
    assert Tile(1, 2, 5).path == "tile/1/002.p/5"
    assert Tile(None, 1000).path == "tile/entries/x001/000"
    assert parse_tile_path("tile/entries/002.p/255") == Tile(None, 2, 255)


@pytest.mark.parametrize(
    "path",
    [
        "tile/0/1",
        "tile/0/0001",
        "tile/00/000",
        "tile/0/x000",
        "tile/0/000.p/0",
        "tile/0/000.p/256",
        "tile/0/000.p/007",
        "tile/64/000",
        "tile/0/000/",
        "tile/-1/000",
        "tile/0/x000/001",
        "tile/data/000",
        "tile/0/000.p/",
        "../tile/0/000",
    ],
)
def test_malformed_tile_paths(path: str) -> None:
    with pytest.raises(InvalidTile):
        parse_tile_path(path)


def test_tiles_for_size() -> None:
    assert list(tiles_for_size(0, 0)) == []
    assert list(tiles_for_size(300, 0)) == [Tile(0, 0), Tile(0, 1, 44)]
    assert list(tiles_for_size(256 * 256 + 1, 1)) == [Tile(1, 0)]
    assert list(tiles_for_size(256 * 300, 1)) == [Tile(1, 0, 256), Tile(1, 1, 44)]


def test_entry_bundles() -> None:
    entries = [b"", b"a", b"x" * 0xFFFF]
    data = encode_entry_bundle(entries)
    assert data[:2] == b"\x00\x00" and data[2:5] == b"\x00\x01a"
    assert decode_entry_bundle(data, 3) == entries
    with pytest.raises(InvalidTile):
        decode_entry_bundle(data, 2)
    with pytest.raises(InvalidTile):
        decode_entry_bundle(data[:-1], 3)
    with pytest.raises(EntryTooLarge):
        encode_entry_bundle([b"x" * 0x10000])
