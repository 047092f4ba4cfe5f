"""Opaque paging cursors for ``Bundle.link`` next/previous.

A cursor carries where the next page starts, and is bound by HMAC-SHA256 to the search it
came from (resource, parameters, sort), to the caller (``sub``) and to an expiry: a client
cannot move it to another patient, another query or another caller, nor forge one. The
key is a secret file in the key directory, shared by replicas as the other keys are.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ledger.atomic import create_exclusive

from ..appkeys import CONFIG
from ..errors import BadRequest

__all__ = ["CURSOR_KEY", "Cursor", "CursorCodec", "cursor_key_ctx"]

KEY_FILE = "fhir-cursor.key"
MAX_CURSOR = 512
LIFETIME = 3600


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page starts: ``pos`` (a store position or an offset), whether the store is
    read backwards, and whether this page is the next or the previous one of its search."""

    pos: tuple[int, ...]
    back: bool = False
    rel: str = "next"


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class CursorCodec:
    def __init__(self, key: bytes) -> None:
        # Its own key, derived: the file's bytes serve nothing else.
        self._key = hmac.new(key, b"telegate fhir paging cursor v1", hashlib.sha256).digest()

    def _mac(self, body: bytes, search: str, sub: str) -> bytes:
        msg = b"\n".join((body, search.encode(), sub.encode()))
        return hmac.new(self._key, msg, hashlib.sha256).digest()[:16]

    def encode(self, c: Cursor, search: str, sub: str, now: int) -> str:
        body = json.dumps(
            {"p": list(c.pos), "b": int(c.back), "r": c.rel, "e": now + LIFETIME},
            separators=(",", ":"),
        ).encode()
        return f"{_b64(body)}.{_b64(self._mac(body, search, sub))}"

    def decode(self, token: str, search: str, sub: str, now: int) -> Cursor:
        """The cursor, if this server made it for this search and caller and it has not
        expired. Raises BadRequest otherwise (one answer for every reason)."""
        bad = BadRequest("_cursor is not a cursor of this search (or it expired): start again")
        if len(token) > MAX_CURSOR or token.count(".") != 1:
            raise bad
        try:
            body_s, mac_s = token.split(".")
            body, mac = _unb64(body_s), _unb64(mac_s)
        except ValueError as e:
            raise bad from e
        if not hmac.compare_digest(mac, self._mac(body, search, sub)):
            raise bad
        data: Any = json.loads(body)  # ours: the MAC held
        if int(data["e"]) < now:
            raise bad
        return Cursor(tuple(int(x) for x in data["p"]), bool(data["b"]), str(data["r"]))


CURSOR_KEY = web.AppKey("fhir_cursor", CursorCodec)


async def cursor_key_ctx(app: web.Application) -> AsyncIterator[None]:
    """The cursor key from the key directory, made (0600) on first start."""
    key_dir = app[CONFIG].key_dir
    path = key_dir / KEY_FILE
    if not path.exists():
        key_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        create_exclusive(path, secrets.token_bytes(32), 0o600)  # another replica may win
    app[CURSOR_KEY] = CursorCodec(path.read_bytes())
    yield
