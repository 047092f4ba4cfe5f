"""A small telegate client for the command line: enrollment, tokens and DPoP requests.

Standard library HTTP (urllib) and PyJWT only, so `telegate audit` and `telegate enroll`
work wherever the gateway's own package installs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.atomic import create_exclusive

from .errors import GatewayError

__all__ = ["ClientError", "Credentials", "Session", "enroll"]

MAX_RESPONSE = 64 * 1024 * 1024


class ClientError(GatewayError):
    """A request to a gateway failed; the message says which and why."""


def _b64u(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True)
class Credentials:
    """What an enrolled holder keeps: its id, private key and the server's log vkey."""

    server: str
    sub: str
    seed: bytes  # Ed25519 private key
    log_vkey: str

    @property
    def key(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.seed)

    @property
    def jwk(self) -> dict[str, str]:
        raw = self.key.public_key().public_bytes_raw()
        return {"kty": "OKP", "crv": "Ed25519", "x": _b64u(raw)}

    def save(self, path: Path) -> None:
        data = {
            "server": self.server,
            "sub": self.sub,
            "d": _b64u(self.seed),
            "log_vkey": self.log_vkey,
        }
        # It holds the private key: whole and durable before its name (ledger.atomic), and
        # never over an existing file.
        if not create_exclusive(path, json.dumps(data, indent=1).encode(), 0o600):
            raise FileExistsError(f"{path} exists")

    @classmethod
    def load(cls, path: Path) -> Credentials:
        try:
            if path.stat().st_mode & 0o077:
                raise ClientError(f"{path} is readable by others; run: chmod 600 {path}")
            d = json.loads(path.read_text())
            seed = base64.urlsafe_b64decode(d["d"] + "=" * (-len(d["d"]) % 4))
            return cls(d["server"], d["sub"], seed, d["log_vkey"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ClientError(f"cannot read credentials {path}: {e}") from e


def _request(
    method: str, url: str, *, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310
            return r.status, dict(r.headers), r.read(MAX_RESPONSE)
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read(64 * 1024)
    except (urllib.error.URLError, OSError) as e:
        raise ClientError(f"cannot reach {url}: {e}") from e


def _problem(status: int, body: bytes) -> str:
    try:
        d = json.loads(body)
        return f"HTTP {status}: {d.get('title', '')}: {d.get('detail', '')}".rstrip(": ")
    except ValueError:
        return f"HTTP {status}"


def enroll(server: str, invite: str, **fields: str) -> Credentials:
    """Redeem an invite with a fresh Ed25519 key; pins the log vkey served at enrollment.
    ``fields`` are what the role enrolls with (a device's ``serial`` and ``model``)."""
    server = server.rstrip("/")
    status, _, vkey = _request("GET", f"{server}/ledger/vkey")
    if status != 200:
        raise ClientError(f"cannot read the log vkey: {_problem(status, vkey)}")
    seed = Ed25519PrivateKey.generate().private_bytes_raw()
    creds = Credentials(server, "", seed, vkey.decode().strip())
    body = json.dumps({"invite": invite, "jwk": creds.jwk, **fields}).encode()
    status, _, out = _request(
        "POST", f"{server}/v1/enroll", body=body, headers={"Content-Type": "application/json"}
    )
    if status != 201:
        raise ClientError(f"enrollment refused: {_problem(status, out)}")
    return Credentials(server, json.loads(out)["sub"], seed, creds.log_vkey)


class Session:
    """Authenticated requests: a token from /oauth/token and a fresh DPoP proof per call.
    ``now`` is the clock of the times it signs (the proof's and the assertion's ``iat``): a
    device that learned its clock is off passes a corrected one (gateway/devicekit)."""

    def __init__(self, creds: Credentials, now: Callable[[], float] = time.time) -> None:
        self.creds = creds
        self.now = now
        self.server = creds.server.rstrip("/")
        self._token: str | None = None
        self._expires = 0.0

    def _proof(self, method: str, url: str, token: str | None = None) -> str:
        claims: dict[str, Any] = {
            "jti": secrets.token_urlsafe(16),
            "htm": method,
            "htu": url.split("?", 1)[0],
            "iat": int(self.now()),
        }
        if token is not None:
            claims["ath"] = _b64u(hashlib.sha256(token.encode()).digest())
        return jwt.encode(
            claims,
            self.creds.key,
            algorithm="EdDSA",
            headers={"typ": "dpop+jwt", "jwk": self.creds.jwk},
        )

    def _assertion(self, token_endpoint: str) -> str:
        """A single-use private_key_jwt client assertion for ``token_endpoint``."""
        now = int(self.now())
        return jwt.encode(
            {
                "iss": self.creds.sub,
                "sub": self.creds.sub,
                "aud": token_endpoint,
                "iat": now,
                "exp": now + 120,
                "jti": secrets.token_urlsafe(16),
            },
            self.creds.key,
            algorithm="EdDSA",
        )

    def token(self) -> str:
        if self._token is not None and time.time() < self._expires - 30:
            return self._token
        url = f"{self.server}/oauth/token"
        assertion = self._assertion(url)
        form = urllib.parse.urlencode(
            {
                "grant_type": "client_credentials",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": assertion,
            }
        ).encode()
        status, _, body = _request(
            "POST",
            url,
            body=form,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "DPoP": self._proof("POST", url),
            },
        )
        if status != 200:
            raise ClientError(f"token request refused: {_problem(status, body)}")
        d = json.loads(body)
        self._token, self._expires = str(d["access_token"]), time.time() + int(d["expires_in"])
        return self._token

    def request(
        self, method: str, path: str, body: bytes | None = None, content_type: str | None = None
    ) -> Any:
        """An authenticated request; the parsed JSON answer, or ClientError on a non-2xx."""
        url = f"{self.server}{path}"
        token = self.token()
        headers = {"Authorization": f"DPoP {token}", "DPoP": self._proof(method, url, token)}
        if content_type is not None:
            headers["Content-Type"] = content_type
        status, _, out = _request(method, url, body=body, headers=headers)
        if not 200 <= status < 300:
            raise ClientError(f"{method} {path.split('?', 1)[0]} refused: {_problem(status, out)}")
        return json.loads(out) if out else None

    def get_json(self, path: str) -> Any:
        return self.request("GET", path)

    def post_json(self, path: str, data: Any) -> Any:
        return self.request("POST", path, json.dumps(data).encode(), "application/json")

    def get_public_json(self, path: str) -> Any:
        status, _, body = _request("GET", f"{self.server}{path}")
        if status != 200:
            raise ClientError(f"GET {path.split('?', 1)[0]}: {_problem(status, body)}")
        return json.loads(body)
