"""The token endpoint's form and client assertions (``gateway.auth.http``) and the token
exchange's parameters (``gateway.federation.http``).

The first byte picks what the rest is: (0) a form body (``parse_form``, in UTF-8 or the
charset a client may name) whose parameters then go through ``exchange_params``; (1) a
client assertion as sent (``assertion_issuer``: its unverified header and claims); (2) the
claims of an assertion that the harness signs with the fixed holder key, so the fuzzer
reaches ``decode_assertion`` behind the signature; (3) its header instead, over valid
claims (``alg``, ``kid``, ``typ``, ``crit``...).

Properties: refusals are ``OAuthError`` (a 4xx problem with an RFC 6749 ``error`` code),
never another exception; a parsed form has each parameter once and its URL encoding parses
back to the same form; an accepted exchange names both tokens, targets only this gateway
and asks only the federated scopes; an accepted assertion names the client, is signed with
the client key's algorithm, lives at most five minutes and carries a jti of 8-256
characters.
"""

from __future__ import annotations

import json
import sys
from urllib.parse import urlencode

from fuzz._harness import instrumented, main, text

with instrumented(__name__, "jwt"):
    from fuzz._keys import HOLDER, HOLDER_JWK
    from gateway.auth.http import (
        MAX_ASSERTION_LIFETIME,
        OAuthError,
        assertion_issuer,
        decode_assertion,
        parse_form,
    )
    from gateway.auth.jwk import HolderKey, b64u
    from gateway.federation.http import FEDERATED_SCOPES, exchange_params

NOW, SKEW = 1_800_000_000, 5
BASE = "https://gw.example"
ENDPOINT = f"{BASE}/oauth/token"
CLIENT = "prov:" + "0" * 32
KEY = HolderKey.from_jwk(HOLDER_JWK)
HEADER = {"alg": "EdDSA", "typ": "JWT", "kid": KEY.jkt}
CLAIMS = {"iss": CLIENT, "sub": CLIENT, "aud": ENDPOINT, "exp": NOW + 60, "jti": "j" * 16}
_HEADER, _CLAIMS = (json.dumps(x).encode() for x in (HEADER, CLAIMS))
CHARSETS = (None, "utf-8", "latin-1", "utf-16", "no-such-charset")


def _refused(e: OAuthError) -> None:
    assert 400 <= e.status < 500 and e.extra.get("error"), e


def _form(data: bytes) -> None:
    for charset in CHARSETS[: 1 + data[0] % len(CHARSETS)] if data else CHARSETS[:1]:
        try:
            form = parse_form(data, charset)
        except OAuthError as e:
            _refused(e)
            continue
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in form.items())
        assert parse_form(urlencode(form).encode(), None) == form
        try:
            token, receipt, scopes = exchange_params(BASE, form)
        except OAuthError as e:
            _refused(e)
            continue
        assert token and receipt and scopes and scopes <= FEDERATED_SCOPES
        assert all(form[t].rstrip("/") == BASE for t in ("audience", "resource") if t in form)


def _accepted(assertion: str) -> None:
    try:
        iss, alg = assertion_issuer(assertion)
    except OAuthError as e:
        _refused(e)
        return
    assert iss is None or len(iss) < 64
    if iss != CLIENT:
        return  # the handler finds no client, or another client's key to verify with
    try:
        jti, exp = decode_assertion(assertion, KEY, ENDPOINT, CLIENT, CLIENT, NOW, SKEW)
    except OAuthError as e:
        _refused(e)
        return
    assert alg == KEY.alg  # PyJWT verified with the client key's algorithm only
    assert NOW - SKEW < exp <= NOW + MAX_ASSERTION_LIFETIME + SKEW
    assert 8 <= len(jti) <= 256


def _signed(header: bytes, claims: bytes) -> str:
    """A compact JWS whose two first segments are exactly these bytes, signed by the
    holder key."""
    head, body = b64u(header), b64u(claims)
    return f"{head}.{body}.{b64u(HOLDER.sign(f'{head}.{body}'.encode()))}"


def check(data: bytes) -> None:
    if not data:
        return
    mode, rest = data[0] % 4, data[1:]
    if mode == 0:
        _form(rest)
    elif mode == 1:
        _accepted(text(rest))
    elif mode == 2:
        _accepted(_signed(_HEADER, rest))
    else:
        _accepted(_signed(rest, _CLAIMS))


if __name__ == "__main__":
    main(check)
    sys.exit(0)
