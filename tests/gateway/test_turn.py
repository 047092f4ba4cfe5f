"""TURN credentials in coturn's REST scheme, for call participants only."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import pytest

from gateway.config import Config
from gateway.sessions.turn import turn_credentials, turn_user
from tests.gateway.idclient import admin, call, get_token, invite_and_enroll


def test_known_answer() -> None:
    # username "<expiry>:<pseudonym>", password base64(HMAC-SHA1(secret, username)).
    u, p, exp = turn_credentials(b"north", "pat:ab", 1_700_000_000, 600)
    assert (u, exp) == ("1700000600:u-58a507a102f2b9c9909ee2f6aeed6f3e", 1_700_000_600)
    assert p == base64.b64encode(hmac.new(b"north", u.encode(), hashlib.sha1).digest()).decode()
    # Computed independently with openssl:
    #   printf 'turn-user\npat:ab' | openssl dgst -sha256 -hmac north   (first 32 hex digits)
    #   printf '1700000600:u-58a507a102f2b9c9909ee2f6aeed6f3e' |
    #     openssl dgst -sha1 -hmac north -binary | base64
    assert p == "A7r4s4jp1puoGoCspGQMuPCFlzA="


async def test_participants_get_credentials_others_do_not(client: Any, config: Config) -> None:
    adm, adm_token = await admin(client, config.data_dir)
    pat = await invite_and_enroll(client, adm, adm_token, "patient")
    token = await get_token(client, pat)
    r = await call(client, "GET", "/v1/turn-credentials", pat, token)
    assert r.status == 200 and r.headers["Cache-Control"] == "no-store"
    body = await r.json()
    expiry, user = body["username"].split(":", 1)
    secret = (config.key_dir / "turn.secret").read_text().strip().encode()
    # A stable pseudonym, never the subject id: coturn logs usernames beside addresses.
    assert user == turn_user(secret, pat.sub) and int(expiry) == body["expires"]
    assert pat.sub.split(":", 1)[1] not in body["username"]
    want = hmac.new(secret, body["username"].encode(), hashlib.sha1).digest()
    assert base64.b64decode(body["password"]) == want
    assert all(u.startswith("turn:") for u in body["uris"]) and body["uris"]
    assert (config.key_dir / "turn.secret").stat().st_mode & 0o777 == 0o600
    r = await call(client, "GET", "/v1/turn-credentials", adm, adm_token)
    assert r.status == 403
    assert (await client.get("/v1/turn-credentials")).status == 401


@pytest.mark.parametrize("uris", ["http://x", "turn:a,ftp://b"])
def test_bad_turn_uris_refused(uris: str) -> None:
    from gateway.errors import ConfigError

    with pytest.raises(ConfigError):
        Config(turn_uris=uris)


async def test_credentials_end_with_the_attestation(client: Any, config: Config) -> None:
    """coturn REST credentials cannot be revoked: valid for ``turn_ttl`` (an hour) after a
    five-minute attestation, they would let a revoked caller relay for the rest of the hour.
    So they end when the attestation they were asked with ends."""
    import jwt

    assert config.turn_ttl > config.token_lifetime
    adm, adm_token = await admin(client, config.data_dir)
    pat = await invite_and_enroll(client, adm, adm_token, "patient")
    token = await get_token(client, pat)
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    body = await (await call(client, "GET", "/v1/turn-credentials", pat, token)).json()
    assert body["expires"] == exp and int(body["username"].split(":", 1)[0]) == exp
    # ttl is what is left (the page renews at half of it), not the configured maximum.
    assert 0 < body["ttl"] <= config.token_lifetime


def test_cap_never_extends() -> None:
    assert turn_credentials(b"k", "pat:ab", 1000, 600, not_after=1300)[2] == 1300
    assert turn_credentials(b"k", "pat:ab", 1000, 600, not_after=5000)[2] == 1600
