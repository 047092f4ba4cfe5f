"""POST /add-checkpoint over real HTTP with bodies written from the tlog-witness text.

Every status the specification names, the body and content type it gives each one, forks,
rollbacks, restarts, races and the body limit.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.errors import problem_middleware
from gateway.witness import WITNESS, WitnessConfig, setup
from ledger.checkpoint import Checkpoint, open_checkpoint, verify_cosignatures
from ledger.log import Log
from ledger.note import Signer, Verifier, parse_note
from ledger.store import SQLiteStore
from ledger.witness import MAX_REQUEST_SIZE

from .conftest import ORIGIN, T0, WITNESS_NAME, Clock, History, MakeClient, request_body

Client = TestClient[Any, Any]


async def post(client: Client, body: bytes, path: str = "/add-checkpoint") -> tuple[int, str, str]:
    async with client.post(path, data=body) as r:
        return r.status, r.content_type, await r.text()


async def witness_vkey(client: Client) -> Verifier:
    async with client.get("/") as r:
        assert r.status == 200
        line = next(ln for ln in (await r.text()).splitlines() if ln.startswith("vkey "))
    return Verifier.from_vkey(line.removeprefix("vkey "))


async def test_200_answers_a_cosignature_line(client: Client, history: History) -> None:
    status, ctype, text = await post(client, history.body(0))
    assert (status, ctype) == (200, "text/plain")
    # tlog-witness: one or more note signature lines, each "— " ... "\n".
    assert text.startswith("\u2014 " + WITNESS_NAME + " ") and text.count("\n") == 1
    note = parse_note(history.checkpoint() + text.encode())
    cosigs = verify_cosignatures(note, [await witness_vkey(client)], now=T0)
    assert [(c.name, c.timestamp) for c in cosigs] == [(WITNESS_NAME, T0)]
    # The log signature still verifies on the combined note.
    open_checkpoint(note.encode(), history.signer.verifier)


async def test_status_codes(client: Client, history: History) -> None:
    assert (await post(client, history.body(0)))[0] == 200
    history.grow(5)
    stranger = History(Signer.generate("stranger.example/log")).grow(1)
    impostor = History(Signer.generate(ORIGIN), history.leaves)
    cases = {
        "malformed": (b"old 10\nnot base64\n\n" + history.checkpoint(), 400),
        "old beyond checkpoint": (request_body(15, [], history.checkpoint(12)), 400),
        "unknown log": (stranger.body(0), 404),
        "unsigned by the log": (impostor.body(10), 403),
        "stale old size": (history.body(4), 409),
        "bad proof": (request_body(10, history.proof(9), history.checkpoint()), 422),
    }
    for name, (body, want) in cases.items():
        status, ctype, text = await post(client, body)
        assert status == want, f"{name}: {status} {text}"
        if want == 409:
            # tlog-witness: the body is the cosigned size and a newline; text/x.tlog.size.
            assert (ctype, text) == ("text/x.tlog.size", "10\n")
    assert (await post(client, history.body(10)))[0] == 200


async def test_forked_log_cosigned_once(client: Client, history: History) -> None:
    fork = history.fork(6).grow(4, tag="b")
    assert history.root(10) != fork.root(10)
    assert (await post(client, history.body(0)))[0] == 200
    # Same key, same size, another root: refused; and the fork cannot grow past it either.
    assert (await post(client, request_body(10, [], fork.checkpoint())))[0] == 422
    fork.grow(5, tag="b")
    assert (await post(client, fork.body(10)))[0] == 422
    history.grow(5)
    assert (await post(client, history.body(10)))[0] == 200
    service = client.app[WITNESS]
    kept = await asyncio.to_thread(service.store.forks, ORIGIN)
    assert kept == [fork.checkpoint(10)]


async def test_rolled_back_log_is_refused(client: Client, history: History) -> None:
    assert (await post(client, history.body(0)))[0] == 200
    # A log restored from an older backup signs size 6 again; whatever old size it claims,
    # the witness refuses: its own (400), the witness's (409: old > new), or a smaller one.
    assert (await post(client, request_body(10, [], history.checkpoint(6))))[0] == 400
    for old in (0, 3, 6):
        status, _, text = await post(client, history.body(old, 6))
        assert (status, text) == (409, "10\n")


async def test_state_survives_a_restart(
    make_client: MakeClient, config: WitnessConfig, history: History
) -> None:
    first = await make_client(config)
    assert (await post(first, history.body(0)))[0] == 200
    vkey = await witness_vkey(first)
    await first.close()
    second = await make_client(config)
    assert (await witness_vkey(second)).vkey == vkey.vkey  # the key file was kept
    assert await post(second, history.body(0)) == (409, "text/x.tlog.size", "10\n")
    history.grow(3)
    assert (await post(second, history.body(10)))[0] == 200


async def test_concurrent_submissions_only_one_advances(client: Client, history: History) -> None:
    assert (await post(client, history.body(0)))[0] == 200
    history.grow(20)
    sizes = list(range(11, 31, 2))
    results = await asyncio.gather(*(post(client, history.body(10, n)) for n in sizes))
    won = [n for n, (status, _, _) in zip(sizes, results, strict=True) if status == 200]
    assert len(won) == 1
    assert {r[:2] for r in results if r[0] != 200} == {(409, "text/x.tlog.size")}
    assert {r[2] for r in results if r[0] != 200} == {f"{won[0]}\n"}
    state = await asyncio.to_thread(client.app[WITNESS].store.latest, ORIGIN)
    assert (state.size, state.root) == (won[0], history.root(won[0]))


async def test_oversized_body_is_refused_unread(client: Client, history: History) -> None:
    body = history.body(0)
    big = body + b"x" * MAX_REQUEST_SIZE
    assert (await post(client, big))[0] == 413

    async def chunks() -> AsyncIterator[bytes]:
        # No Content-Length: the limit holds while the body streams in.
        for _ in range(MAX_REQUEST_SIZE // 4096 + 2):
            yield b"y" * 4096

    assert (await post(client, chunks()))[0] == 413  # type: ignore[arg-type]
    assert (await post(client, body))[0] == 200


async def test_monitoring_endpoint_serves_the_cosigned_checkpoint(
    client: Client, history: History
) -> None:
    path = f"/{hashlib.sha256(ORIGIN.encode()).hexdigest()}/checkpoint"
    async with client.get(path) as r:
        assert r.status == 404
    await post(client, history.body(0))
    async with client.get(path) as r:
        assert r.status == 200
        served = await r.read()
    # tlog-witness: the log signature the witness verified, and its own cosignature.
    cp = open_checkpoint(served, history.signer.verifier)
    assert cp.checkpoint == Checkpoint(ORIGIN, 10, history.root(10))
    assert len(verify_cosignatures(cp.note, [await witness_vkey(client)])) == 1
    async with client.get(f"/{hashlib.sha256(b'other').hexdigest()}/checkpoint") as r:
        assert r.status == 404


async def test_index_and_healthz(client: Client) -> None:
    async with client.get("/healthz") as r:
        assert (r.status, await r.json()) == (200, {"status": "ok"})
    async with client.get("/") as r:
        text = await r.text()
    assert f"log {ORIGIN}\n" in text
    async with client.get("/add-checkpoint") as r:
        assert r.status == 405


async def test_a_real_ledger_log_is_witnessed(
    make_client: MakeClient, config: WitnessConfig, tmp_path: Path, log_signer: Signer
) -> None:
    log = Log(SQLiteStore(tmp_path / "ledger.db"), log_signer)
    log.start()
    try:
        client = await make_client(config)
        seen = 0
        for batch in (1, 5, 64, 3):
            for i in range(batch):
                await log.append(f"event {i}".encode())
            proof = log.consistency_proof(seen, log.size) if seen else []
            status, _, text = await post(client, request_body(seen, proof, log.checkpoint()))
            assert status == 200, text
            seen = log.size
        assert seen == 73
    finally:
        log.close()


async def test_embedded_in_another_app(
    aiohttp_client: Any, config: WitnessConfig, history: History
) -> None:
    # A gateway-like app: its problem+json middleware must not rewrite witness answers.
    app = web.Application(middlewares=[problem_middleware])
    setup(app, config, prefix="/witness", clock=Clock())
    client: Client = await aiohttp_client(app)
    assert (await post(client, history.body(0), "/witness/add-checkpoint"))[0] == 200
    status, ctype, text = await post(client, history.body(3), "/witness/add-checkpoint")
    assert (status, ctype, text) == (409, "text/x.tlog.size", "10\n")
    assert (await post(client, history.body(0), "/add-checkpoint"))[0] == 404
