"""Working at a peer organization from the command line, as a provider of one's own.

``python -m gateway.federation.client --credentials provider.json --at https://gw.a.example
GET /v1/me`` sends the request to the peer gateway ``--at`` with a token of that gateway,
got the federated way: a token of the home gateway (the one in the credentials file) minted
also for the peer (RFC 8707 ``resource``), its issuance receipt fetched from home once
witnessed, both exchanged at the peer (RFC 8693). Standard library HTTP, like
:mod:`gateway.client`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jwt

from ledger.note import parse_note

from ..client import ClientError, Credentials, Session

__all__ = ["FederatedSession", "main"]

GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105 (RFC 8693 3)
FORM = "application/x-www-form-urlencoded"


def _http(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310
            return r.status, r.read(1024 * 1024)
    except urllib.error.HTTPError as e:
        return e.code, e.read(64 * 1024)
    except (urllib.error.URLError, OSError) as e:
        raise ClientError(f"cannot reach {url}: {e}") from e


def _answer(what: str, status: int, body: bytes) -> Any:
    if status != 200:
        try:
            d = json.loads(body)
            why = d.get("detail") or d.get("title") or ""
        except ValueError:
            why = ""
        raise ClientError(f"{what}: HTTP {status} {why}".rstrip())
    return json.loads(body)


class FederatedSession(Session):
    """Requests at the peer gateway ``at``, as the holder of ``creds`` (enrolled at home).

    ``cosignatures``: how many witness cosignatures the home receipt's checkpoint must
    carry before it is presented (the peer counts those of the witnesses it requires).
    """

    def __init__(
        self, creds: Credentials, at: str, *, cosignatures: int = 1, wait: float = 30.0
    ) -> None:
        super().__init__(creds)
        self.home = creds.server.rstrip("/")
        self.server = at.rstrip("/")
        self.cosignatures, self.wait = cosignatures, wait
        self.sub = ""  # the id the peer gives this holder, known after the first exchange

    def _home_token(self) -> str:
        url = f"{self.home}/oauth/token"
        assertion = self._assertion(url)
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
            "resource": self.server,
        }
        headers = {"Content-Type": FORM, "DPoP": self._proof("POST", url)}
        status, body = _http("POST", url, urllib.parse.urlencode(form).encode(), headers)
        return str(_answer("home token request", status, body)["access_token"])

    def _receipt(self, token: str) -> str:
        """The home receipt of ``token``'s issuance, once its checkpoint carries enough
        cosignatures; the JSON text as home answered it."""
        part = token.split(".")[1]
        jti = json.loads(jwt.utils.base64url_decode(part))["jti"]
        url = f"{self.home}/v1/attestations/{jti}/receipt"
        deadline = time.monotonic() + self.wait
        while True:
            headers = {"Authorization": f"DPoP {token}", "DPoP": self._proof("GET", url, token)}
            status, body = _http("GET", url, headers=headers)
            doc = _answer("home receipt", status, body)
            note = parse_note(doc["receipt"]["checkpoint"].encode())
            if len(note.signatures) - 1 >= self.cosignatures:  # the log's own, then witnesses'
                return body.decode()
            if time.monotonic() > deadline:
                raise ClientError("the home receipt was not witnessed in time")
            time.sleep(0.1)

    def token(self) -> str:
        if self._token is not None and time.time() < self._expires - 30:
            return self._token
        home = self._home_token()
        url = f"{self.server}/oauth/token"
        form = {
            "grant_type": GRANT,
            "subject_token": home,
            "subject_token_type": ACCESS_TOKEN,
            "subject_token_receipt": self._receipt(home),
        }
        headers = {"Content-Type": FORM, "DPoP": self._proof("POST", url)}
        status, body = _http("POST", url, urllib.parse.urlencode(form).encode(), headers)
        d = _answer("token exchange", status, body)
        self._token, self.sub = str(d["access_token"]), str(d["sub"])
        self._expires = time.time() + int(d["expires_in"])
        return self._token


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m gateway.federation.client", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--credentials", type=Path, required=True, help="from `telegate enroll`")
    p.add_argument("--at", required=True, help="the peer gateway's URL (its public_url)")
    p.add_argument("--cosignatures", type=int, default=1, help="witness cosignatures to wait for")
    p.add_argument("method", choices=["GET", "POST", "DELETE"])
    p.add_argument("path", help="e.g. /v1/me")
    p.add_argument("body", nargs="?", help="a JSON body for POST")
    args = p.parse_args(argv)
    try:
        s = FederatedSession(
            Credentials.load(args.credentials), args.at, cosignatures=args.cosignatures
        )
        body = args.body.encode() if args.body else None
        out = s.request(args.method, args.path, body, "application/json" if body else None)
    except ClientError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
