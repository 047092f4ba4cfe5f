"""Every route of the app against every attack that applies to it, from one table.

The routes come from the app's router, so a route added without a row in ``matrix.py`` fails
``test_every_route_is_in_the_matrix`` (which lists what is missing). HEAD is aiohttp's
mirror of each GET and is left out. For every route protected by a DPoP-bound token:

- no token → 401; a caller of a refused role → 403 (role-restricted routes);
- another patient, or a provider without consent → 403 or 404, one answer for "no such"
  and "not yours" where the route promises it (rows say why a route has no such case);
- an expired token (the injected clock moved), a revoked token, a token of a revoked
  subject → 401; a replayed DPoP proof → 401;
- a forged token (signature bit flipped, ``alg: none``, HS256 keyed with the gateway's
  public key) → 401;
- for routes that read a body: oversized → 413, wrong content type → 415 (the token
  endpoint answers RFC 6749's 400 ``invalid_request`` to the latter).

Each answer is problem+json, never a 500. One app and one world for the whole module; the
attacks on a route are written so that the request that spends a proof changes nothing
(unknown ids, empty bodies), so their order does not matter. Deeper cases per area live
beside this module (tokens, DPoP, enrollment, token endpoint) and in the feature tests.
"""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio

from tests.gateway.attacks.matrix import MATRIX, M, Route, build, send
from tests.gateway.attacks.world import (
    _public_pem,
    _real_kid,
    claims_of,
    forge,
    hs256,
    problem,
    unsigned,
)
from tests.gateway.idclient import b64u, call, get_token

pytestmark = pytest.mark.asyncio(loop_scope="module")

BIG = 2 * 1024 * 1024  # above every body limit (16 KiB JSON and forms, 1 MiB by default)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def m(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[M]:
    world = await build(tmp_path_factory.mktemp("matrix"))
    yield world
    await world.w.client.close()


def _ids(auth: str | None = None, pred: Callable[[Route], bool] = lambda r: True) -> list[Any]:
    return [
        pytest.param(key, id=f"{key[0]} {key[1]}")
        for key, r in MATRIX.items()
        if (auth is None or r.auth == auth) and pred(r)
    ]


def _path(m: M, key: tuple[str, str]) -> str:
    r = MATRIX[key]
    return r.path(m) if r.path is not None else key[1]


PROTECTED = _ids("dpop")


# -- coverage -------------------------------------------------------------------------------
async def test_every_route_is_in_the_matrix(m: M) -> None:
    app = m.w.client.server.app
    routes = {
        (r.method, r.resource.canonical)
        for r in app.router.routes()
        if r.method != "HEAD" and r.resource is not None
    }
    missing, stale = sorted(routes - MATRIX.keys()), sorted(MATRIX.keys() - routes)
    assert not missing, f"routes with no row in MATRIX: {missing}"
    assert not stale, f"rows in MATRIX for routes that do not exist: {stale}"


async def test_every_protected_row_says_who_else_it_could_reach() -> None:
    for key, r in MATRIX.items():
        if r.auth == "dpop":
            assert r.caller, key
            assert (r.foreign is None) != (not r.mine_only), key


@pytest.mark.parametrize("key", _ids("public"))
async def test_public_routes_answer_without_credentials(m: M, key: tuple[str, str]) -> None:
    resp = await m.w.client.request(key[0], _path(m, key))
    assert resp.status < 500, await resp.text()
    if resp.status >= 400:
        await problem(resp, resp.status)


# -- authentication ---------------------------------------------------------------------------
@pytest.mark.parametrize("key", PROTECTED)
async def test_no_token(m: M, key: tuple[str, str]) -> None:
    await problem(await send(m, key[0], _path(m, key), None, body=MATRIX[key].body), 401)


@pytest.mark.parametrize("key", PROTECTED)
async def test_expired_token(m: M, key: tuple[str, str]) -> None:
    config, clock = m.w.config, m.w.clock
    saved = clock.t
    clock.t += config.token_lifetime + config.clock_skew
    try:
        resp = await send(m, key[0], _path(m, key), MATRIX[key].caller, body=MATRIX[key].body)
        body = await problem(resp, 401, "unauthorized")
        assert "expired" in body["detail"]
    finally:
        clock.t = saved


@pytest.mark.parametrize("key", PROTECTED)
async def test_replayed_dpop_proof(m: M, key: tuple[str, str]) -> None:
    r, path = MATRIX[key], _path(m, key)
    holder, token = m.who(r.caller)
    proof = holder.dpop(key[0], m.w.url(path), token)
    first = await send(m, key[0], path, r.caller, proof=proof, body=r.body)
    assert first.status not in (401, 403) and first.status < 500, await first.text()
    again = await send(m, key[0], path, r.caller, proof=proof, body=r.body)
    body = await problem(again, 401, "invalid-dpop-proof")
    assert "replayed" in body["detail"]


@pytest.mark.parametrize("key", PROTECTED)
async def test_revoked_subject(m: M, key: tuple[str, str]) -> None:
    r = MATRIX[key]
    resp = await send(m, key[0], _path(m, key), f"revoked_{r.caller}", body=r.body)
    body = await problem(resp, 401, "unauthorized")
    assert "revoked" in body["detail"]


@pytest.mark.parametrize("key", PROTECTED)
async def test_revoked_token(m: M, key: tuple[str, str]) -> None:
    r = MATRIX[key]
    holder, _ = m.who(r.caller)
    token = await get_token(m.w.client, holder)
    adm, adm_t = m.who("admin")
    revocation = {"jti": claims_of(token)["jti"], "reason": "matrix"}
    done = await call(m.w.client, "POST", "/v1/revocations", adm, adm_t, json=revocation)
    assert done.status == 200, await done.text()
    resp = await send(m, key[0], _path(m, key), r.caller, token=token, body=r.body)
    body = await problem(resp, 401, "unauthorized")
    assert "revoked" in body["detail"]


def _bit_flipped(token: str) -> str:
    h, c, s = token.split(".")
    sig = bytearray(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))
    sig[len(sig) // 2] ^= 0x01
    return f"{h}.{c}.{b64u(bytes(sig))}"


FORGERIES: dict[str, Callable[[M, str], str]] = {
    "signature-bit-flipped": lambda m, t: _bit_flipped(t),
    "alg-none": lambda m, t: forge(
        {"alg": "none", "typ": "at+jwt", "kid": _real_kid(t)}, claims_of(t), unsigned
    ),
    "hs256-with-public-key": lambda m, t: forge(
        {"alg": "HS256", "typ": "at+jwt", "kid": _real_kid(t)},
        claims_of(t),
        hs256(_public_pem(m.w, t)),
    ),
}


@pytest.mark.parametrize("forgery", list(FORGERIES))
@pytest.mark.parametrize("key", PROTECTED)
async def test_forged_token(m: M, key: tuple[str, str], forgery: str) -> None:
    r, path = MATRIX[key], _path(m, key)
    holder, token = m.who(r.caller)
    forged = FORGERIES[forgery](m, token)
    proof = holder.dpop(key[0], m.w.url(path), forged)
    resp = await send(m, key[0], path, r.caller, token=forged, proof=proof, body=r.body)
    await problem(resp, 401, "unauthorized")


# -- authorization ----------------------------------------------------------------------------
@pytest.mark.parametrize("key", _ids("dpop", lambda r: bool(r.wrong)))
async def test_wrong_role(m: M, key: tuple[str, str]) -> None:
    r = MATRIX[key]
    await problem(await send(m, key[0], _path(m, key), r.wrong, body=r.body), 403, "forbidden")


@pytest.mark.parametrize("key", _ids("dpop", lambda r: r.foreign is not None))
async def test_another_subjects_data(m: M, key: tuple[str, str]) -> None:
    check = MATRIX[key].foreign
    assert check is not None
    await check(m)


async def test_ticket_route_without_a_ticket(m: M) -> None:
    key = ("GET", "/v1/sessions/{id}/ws")
    for query in ("", "?ticket=made-up", "?ticket=" + "x" * 100):
        await problem(await m.w.client.get(_path(m, key) + query), 403, "forbidden")


async def test_token_endpoint_without_a_client_assertion(m: M) -> None:
    resp = await m.w.client.post("/oauth/token", data={"grant_type": "client_credentials"})
    body = await problem(resp, 401, "oauth-error")
    assert body["error"] == "invalid_client"


# -- bodies -----------------------------------------------------------------------------------
BODIED = _ids(pred=lambda r: bool(r.body))
_WRONG_TYPE = {"json": "text/plain", "form": "application/json", "jose": "application/json"}


async def _chunks() -> AsyncIterator[bytes]:
    for _ in range(BIG // 65536):
        yield b"x" * 65536


@pytest.mark.parametrize("length", ["declared", "chunked"])
@pytest.mark.parametrize("key", BODIED)
async def test_oversized_body(m: M, key: tuple[str, str], length: str) -> None:
    """Refused whether the size is declared (Content-Length) or only seen while reading."""
    r = MATRIX[key]
    caller = r.caller or None
    data = io.BytesIO(b"x" * BIG) if length == "declared" else _chunks()
    resp = await send(m, key[0], _path(m, key), caller, body=r.body, data=data)
    await problem(resp, 413, "payload-too-large")


@pytest.mark.parametrize("key", BODIED)
async def test_wrong_content_type(m: M, key: tuple[str, str]) -> None:
    r = MATRIX[key]
    caller = r.caller or None
    ctype = _WRONG_TYPE[r.body]
    resp = await send(m, key[0], _path(m, key), caller, body=r.body, content_type=ctype)
    if r.auth == "client":
        # RFC 6749 5.2: the token endpoint answers a malformed request with invalid_request.
        body = await problem(resp, 400, "oauth-error")
        assert body["error"] == "invalid_request"
    else:
        await problem(resp, 415, "unsupported-media-type")
