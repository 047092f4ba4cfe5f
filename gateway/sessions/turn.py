"""TURN credentials in coturn's REST API scheme ("TURN REST API", draft-uberti-behave-turn-rest):
``username = "<expiry>:<user>"`` and ``password = base64(HMAC-SHA1(secret, username))``,
which coturn checks with ``use-auth-secret`` and the same ``static-auth-secret``.

``<user>`` is a pseudonym of the subject, not its id: coturn writes usernames to its logs
next to client addresses, and a patient id there would tie a patient to a network location
for whoever reads the relay's logs. The pseudonym is stable per subject (coturn's per-user
quotas still work) and only the gateway, holding the secret, can link it back.

A credential cannot be revoked (coturn checks only the HMAC and the expiry in the name), so
it never outlives the attestation it was asked with: a revoked caller's relay ends at the
latest when their attestation would have, not ``turn_ttl`` later."""

from __future__ import annotations

import base64
import hashlib
import hmac

from aiohttp import web

from ..appkeys import AUTHORITY, CONFIG, TURN_SECRET
from ..auth.http import authenticate

__all__ = ["setup", "turn_credentials", "turn_user"]


def turn_user(secret: bytes, subject: str) -> str:
    """The subject's pseudonym in TURN usernames (no ':' so coturn splits on the first)."""
    return (
        "u-" + hmac.new(secret, b"turn-user\n" + subject.encode(), hashlib.sha256).hexdigest()[:32]
    )


def turn_credentials(
    secret: bytes, subject: str, now: int, ttl: int, not_after: int | None = None
) -> tuple[str, str, int]:
    """(username, password, expiry) valid for ``ttl`` seconds from ``now``, and no later
    than ``not_after``."""
    expiry = now + ttl if not_after is None else min(now + ttl, not_after)
    username = f"{expiry}:{turn_user(secret, subject)}"
    # coturn computes HMAC-SHA1 over the username with the shared secret: SHA-1 is the
    # scheme's, used as a MAC (not for collision resistance).
    mac = hmac.new(secret, username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(mac).decode(), expiry


async def credentials(request: web.Request) -> web.Response:
    p = authenticate(request)
    p.require("patient", "provider")
    config = request.app[CONFIG]
    now = request.app[AUTHORITY].now()
    username, password, expiry = turn_credentials(
        request.app[TURN_SECRET], p.sub, now, config.turn_ttl, not_after=p.exp
    )
    resp = web.json_response(
        {
            "username": username,
            "password": password,
            "ttl": expiry - now,
            "expires": expiry,
            "uris": [u for u in config.turn_uris.split(",") if u],
        }
    )
    resp.headers["Cache-Control"] = "no-store"
    return resp


def setup(app: web.Application) -> None:
    app.router.add_get("/v1/turn-credentials", credentials)
