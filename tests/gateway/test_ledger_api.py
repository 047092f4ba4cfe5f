"""The ledger's HTTP face: everything served verifies against the served checkpoint."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.app import record
from gateway.appkeys import LOG
from ledger.checkpoint import open_checkpoint
from ledger.events import Event, EventType
from ledger.merkle import leaf_hash, root_of, verify_consistency, verify_inclusion
from ledger.note import Verifier
from ledger.tiles import decode_entry_bundle, split_hashes

Client = TestClient[Any, Any]


async def _fill(client: Client, n: int) -> None:
    app = client.server.app
    for i in range(n):
        await record(app, Event.now(EventType.AUDIT_QUERY, f"aud:{i}"))


async def _checkpoint(client: Client) -> tuple[Verifier, Any]:
    vkey = await (await client.get("/ledger/vkey")).text()
    v = Verifier.from_vkey(vkey)
    resp = await client.get("/ledger/checkpoint")
    assert resp.status == 200 and resp.content_type == "text/plain"
    return v, open_checkpoint(await resp.read(), v).checkpoint


async def test_started_event_is_the_first_entry(client: Client) -> None:
    v, cp = await _checkpoint(client)
    assert cp.size >= 1
    body = await (await client.get("/ledger/entries/0")).json()
    assert body["event"]["type"] == "gateway.started"
    assert body["event"]["data"]["log_vkey"] == v.vkey
    assert body["leaf_hash"] == base64.b64encode(leaf_hash(base64.b64decode(body["data"]))).decode()


async def test_proofs_verify_against_the_served_checkpoint(client: Client) -> None:
    await _fill(client, 300)
    _, cp = await _checkpoint(client)
    for index in (0, 1, 150, cp.size - 1):
        r = await (await client.get(f"/ledger/proof/inclusion?index={index}&size={cp.size}")).json()
        proof = [base64.b64decode(p) for p in r["inclusion_proof"]]
        verify_inclusion(index, cp.size, base64.b64decode(r["leaf_hash"]), proof, cp.root)
    old = await (await client.get("/ledger/proof/inclusion?index=0&size=10")).json()
    assert old["size"] == 10
    c = await (await client.get(f"/ledger/proof/consistency?old=0&new={cp.size}")).json()
    assert c["consistency_proof"] == []
    resp = await client.get("/ledger/proof/consistency?old=100")
    c = await resp.json()
    assert c["new"] == cp.size
    # The old root comes from the tiles: the hash of the first 100 leaves.
    tile = split_hashes(await (await client.get("/ledger/tile/0/000")).read(), 256)
    verify_consistency(
        100,
        cp.size,
        root_of(tile[:100]),
        cp.root,
        [base64.b64decode(p) for p in c["consistency_proof"]],
    )


async def test_tiles_and_bundles(client: Client) -> None:
    await _fill(client, 300)
    _, cp = await _checkpoint(client)
    full = await client.get("/ledger/tile/0/000")
    assert full.status == 200 and "immutable" in full.headers["Cache-Control"]
    hashes = split_hashes(await full.read(), 256)
    bundle = await client.get("/ledger/tile/entries/000")
    entries = decode_entry_bundle(await bundle.read(), 256)
    assert [leaf_hash(e) for e in entries] == hashes
    w = cp.size - 256
    partial = await client.get(f"/ledger/tile/0/001.p/{w}")
    assert partial.status == 200 and "immutable" not in partial.headers["Cache-Control"]
    assert len(await partial.read()) == 32 * w
    assert (await client.get(f"/ledger/tile/0/001.p/{w + 1}")).status == 404
    assert (await client.get("/ledger/tile/1/000")).status == 404
    assert (await client.get("/ledger/tile/entries/001")).status == 404


@pytest.mark.parametrize(
    "path",
    [
        "/ledger/tile/0/1",
        "/ledger/tile/0/000.p/0",
        "/ledger/tile/0/000.p/256",
        "/ledger/tile/x/000",
        "/ledger/tile/0/x000/001",
        "/ledger/tile/0/000.p/01",
        "/ledger/proof/inclusion",
        "/ledger/proof/inclusion?index=-1",
        "/ledger/proof/inclusion?index=1e3",
        "/ledger/proof/inclusion?index=%C2%B2",
        "/ledger/proof/inclusion?index=99999999999999999999",
        "/ledger/proof/inclusion?index=1&size=1",
        "/ledger/proof/consistency",
        "/ledger/proof/consistency?old=2&new=1",
        "/ledger/proof/consistency?old=+1",
        "/ledger/entries/abc",
        "/ledger/entries/-1",
    ],
)
async def test_malformed_input_is_400_problem(client: Client, path: str) -> None:
    resp = await client.get(path)
    assert resp.status == 400, await resp.text()
    assert resp.content_type == "application/problem+json"
    body = await resp.json()
    assert body["status"] == 400 and body["type"].endswith("/bad-request")


@pytest.mark.parametrize(
    "path",
    [
        "/ledger/entries/1000",
        "/ledger/proof/inclusion?index=0&size=1000",
        "/ledger/proof/consistency?old=1&new=1000",
        "/ledger/tile/5/000",
        "/nope",
    ],
)
async def test_beyond_the_tree_is_404_problem(client: Client, path: str) -> None:
    resp = await client.get(path)
    assert resp.status == 404
    assert resp.content_type == "application/problem+json"


async def test_method_not_allowed(client: Client) -> None:
    resp = await client.post("/ledger/checkpoint", data=b"x")
    assert resp.status == 405 and resp.content_type == "application/problem+json"
    assert "GET" in resp.headers["Allow"]


async def test_health_ready_metrics(client: Client) -> None:
    assert (await client.get("/healthz")).status == 200
    ready = await (await client.get("/readyz")).json()
    assert ready["status"] == "ready" and ready["ledger_size"] >= 1
    await client.get("/ledger/checkpoint")
    text = await (await client.get("/metrics")).text()
    assert (
        'telegate_http_requests_total{method="GET",route="/ledger/checkpoint",status="200"}' in text
    )
    assert "telegate_ledger_size " in text
    assert "telegate_ledger_append_seconds_count" in text


async def test_readyz_reports_a_failed_writer(client: Client) -> None:
    log = client.server.app[LOG]
    log._failed = RuntimeError("disk gone")  # what the writer sets when a commit fails
    resp = await client.get("/readyz")
    assert resp.status == 503 and resp.content_type == "application/problem+json"
    log._failed = None


async def test_request_id_is_echoed_or_generated(client: Client) -> None:
    resp = await client.get("/healthz", headers={"X-Request-Id": "abc-123"})
    assert resp.headers["X-Request-Id"] == "abc-123"
    resp = await client.get("/healthz", headers={"X-Request-Id": "x" * 100})
    assert resp.headers["X-Request-Id"] != "x" * 100
