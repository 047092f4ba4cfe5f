"""HTTP face of the ledger: checkpoint, vkey, C2SP tlog-tiles, proofs and entries."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from typing import Any

from aiohttp import web

from ledger.errors import LedgerError
from ledger.log import Log
from ledger.merkle import leaf_hash
from ledger.tiles import TILE_WIDTH, encode_entry_bundle, parse_tile_path

from .appkeys import LOG
from .errors import BadRequest, NotFound

__all__ = ["setup"]

_MAX_INT = (1 << 63) - 1
IMMUTABLE = "public, max-age=31536000, immutable"


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _int(value: str | None, name: str, default: int | None = None) -> int:
    if value is None:
        if default is None:
            raise BadRequest(f"query parameter {name!r} is required")
        return default
    # Digits only: no sign, spaces or underscores that int() would accept.
    if not value.isascii() or not value.isdigit() or len(value) > 19 or int(value) > _MAX_INT:
        raise BadRequest(f"{name!r} must be a non-negative integer")
    return int(value)


def _log(request: web.Request) -> Log:
    return request.app[LOG]


async def _beyond(log: Log, size: int) -> bool:
    """Whether a tree of ``size`` is beyond the log, asking the store when this replica's
    view is behind (another replica may have grown the shared log since it last looked)."""
    if size > log.size:
        await asyncio.to_thread(log.catch_up, size)
    return size > log.size


async def checkpoint(request: web.Request) -> web.Response:
    """The newest checkpoint the witness quorum cosigned, their lines appended to the log's
    signature (C2SP tlog-cosignature), or the newest checkpoint until one is. Clients that
    do not know the witnesses ignore those lines (signed-note: unknown keys are skipped)."""
    log = _log(request)
    note = log.cosigned_checkpoint or log.checkpoint()
    resp = web.Response(body=note, content_type="text/plain")
    resp.headers["Cache-Control"] = "no-cache"
    return resp


async def vkey(request: web.Request) -> web.Response:
    return web.Response(text=_log(request).signer.vkey + "\n", content_type="text/plain")


async def tile(request: web.Request) -> web.Response:
    log = _log(request)
    try:
        t = parse_tile_path("tile/" + request.match_info["path"])
    except LedgerError as e:
        raise BadRequest(str(e)) from e
    if t.level is None:
        start = t.index * TILE_WIDTH
        if await _beyond(log, start + t.width):
            raise NotFound("entry bundle is beyond the tree")
        entries = await asyncio.to_thread(log.store.read_entries, start, start + t.width)
        body = encode_entry_bundle(entries)
    else:
        if await _beyond(log, (t.index * TILE_WIDTH + t.width) << (8 * t.level)):
            raise NotFound("tile is beyond the tree")
        body = await asyncio.to_thread(log.store.read_tile, t)
    resp = web.Response(body=body, content_type="application/octet-stream")
    # tlog-tiles: full tiles never change; a partial tile's bytes never change either,
    # but clients should move on to the full tile, so cache those briefly.
    resp.headers["Cache-Control"] = IMMUTABLE if t.is_full else "public, max-age=60"
    return resp


async def inclusion(request: web.Request) -> web.Response:
    log = _log(request)
    size = _int(request.query.get("size"), "size", log.size)
    index = _int(request.query.get("index"), "index")
    if await _beyond(log, size):
        raise NotFound(f"size {size} is beyond the tree ({log.size})")
    if index >= size:
        raise BadRequest(f"index {index} is not below size {size}")
    proof = await asyncio.to_thread(log.inclusion_proof, index, size)
    (h,) = await asyncio.to_thread(log.store.read_nodes, [(0, index)])
    path = [_b64(p) for p in proof]
    # ``proof``: the old spelling, sent until 0.2.0 (docs/api-changes.md).
    return web.json_response(
        {"index": index, "size": size, "leaf_hash": _b64(h), "inclusion_proof": path, "proof": path}
    )


async def consistency(request: web.Request) -> web.Response:
    log = _log(request)
    new = _int(request.query.get("new"), "new", log.size)
    old = _int(request.query.get("old"), "old")
    if await _beyond(log, new):
        raise NotFound(f"size {new} is beyond the tree ({log.size})")
    if old > new:
        raise BadRequest("old must not exceed new")
    proof = await asyncio.to_thread(log.consistency_proof, old, new)
    path = [_b64(p) for p in proof]
    # ``proof``: the old spelling, sent until 0.2.0 (docs/api-changes.md).
    return web.json_response({"old": old, "new": new, "consistency_proof": path, "proof": path})


async def entry(request: web.Request) -> web.Response:
    log = _log(request)
    i = _int(request.match_info["index"], "index")
    if await _beyond(log, i + 1):
        raise NotFound(f"entry {i} is beyond the tree ({log.size})")
    (data,) = await asyncio.to_thread(log.store.read_entries, i, i + 1)
    out: dict[str, Any] = {"index": i, "leaf_hash": _b64(leaf_hash(data)), "data": _b64(data)}
    with contextlib.suppress(ValueError):
        out["event"] = json.loads(data)
    return web.json_response(out)


def setup(app: web.Application) -> None:
    r = app.router
    r.add_get("/ledger/checkpoint", checkpoint)
    r.add_get("/ledger/vkey", vkey)
    r.add_get("/ledger/tile/{path:.+}", tile)
    r.add_get("/ledger/proof/inclusion", inclusion)
    r.add_get("/ledger/proof/consistency", consistency)
    r.add_get("/ledger/entries/{index}", entry)
