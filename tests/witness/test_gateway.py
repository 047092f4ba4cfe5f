"""A real gateway whose checkpoints real witnesses (on loopback) cosign.

With one witness, and with three and a quorum of two: appends get witnessed, the served
checkpoint and the receipts carry the cosignatures, and a witness that goes down is retried
with back-off until it comes back. Every wait polls with a deadline; nothing sleeps.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from gateway.app import create_app
from gateway.appkeys import LOG
from gateway.config import WitnessPeer
from gateway.observability import Metrics
from gateway.recorder import event, record
from gateway.witnessing import WITNESSING, Witnessing, _Peer
from ledger.checkpoint import (
    CosignatureSigner,
    NotWitnessed,
    open_checkpoint,
    verify_witnessed,
)
from ledger.events import EventType
from ledger.log import Receipt
from ledger.note import Signer, Verifier
from tests.gateway.apischema import check_body
from tests.gateway.idclient import admin, call

from .gateways import WitnessServer, gateway_config, log_vkey, until

Client = Any


@pytest.fixture
async def three(tmp_path: Path) -> AsyncIterator[list[WitnessServer]]:
    vkey = log_vkey(tmp_path / "gw")
    servers = [WitnessServer(tmp_path, f"w{i}.example/witness", vkey) for i in range(3)]
    for s in servers:
        await s.start()
    yield servers
    for s in servers:
        await s.stop()


async def append(client: Client, n: int) -> int:
    """Append ``n`` events through the gateway's recorder; the ledger size after them."""
    app = client.server.app
    for i in range(n):
        await record(app, event(app, EventType.AUDIT_QUERY, "aud:test", data={"n": i}))
    return int(app[LOG].size)


def keys(servers: list[WitnessServer]) -> list[Verifier]:
    return [Verifier.from_vkey(s.vkey) for s in servers]


async def test_one_witness_cosigns_what_is_served_and_receipts(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    data = tmp_path / "gw"
    log = Verifier.from_vkey(log_vkey(data))
    w = await WitnessServer(tmp_path, "w.example/witness", log.vkey).start()
    try:
        client = await aiohttp_client(create_app(gateway_config(data, [w])))
        app = client.server.app
        holder, token = await admin(client, data)
        size = await append(client, 5)
        await until("the witness cosigns", lambda: app[WITNESSING].published >= size)

        served = await (await client.get("/ledger/checkpoint")).read()
        witnessed = verify_witnessed(served, log, keys([w]), 1)
        assert witnessed.checkpoint.size >= size
        assert [c.name for c in witnessed.cosignatures] == ["w.example/witness"]
        # The same note still opens for a verifier that knows only the log key.
        open_checkpoint(served, log)

        # The attestation receipt (issued before witnessing caught up) is now proved against
        # the cosigned checkpoint, and verifies as before.
        jti = jwt.decode(token, options={"verify_signature": False})["jti"]
        r = await call(client, "GET", f"/v1/attestations/{jti}/receipt", holder, token)
        receipt = Receipt.from_json((await r.json())["receipt"])
        receipt.verify(log)
        verify_witnessed(receipt.checkpoint, log, keys([w]), 1)

        ready = await (await client.get("/readyz")).json()
        check_body("GET", "/readyz", 200, "application/json", ready)  # its Witnessing schema
        assert ready["witnessing"]["quorum"] == 1
        assert ready["witnessing"]["witnesses"][0]["name"] == "w.example/witness"
        assert ready["witnessing"]["witnessed_size"] >= size
        metrics = await (await client.get("/metrics")).text()
        assert 'telegate_witness_cosigned_size{witness="w.example/witness"}' in metrics
        assert "telegate_witnessed_size " in metrics
        assert w.seen[200] >= 1 and set(w.seen) <= {200, 409}
    finally:
        await w.stop()


async def test_three_witnesses_quorum_two_and_one_down(
    aiohttp_client: Any, tmp_path: Path, three: list[WitnessServer]
) -> None:
    data = tmp_path / "gw"
    log = Verifier.from_vkey(log_vkey(data))
    client = await aiohttp_client(create_app(gateway_config(data, three, witness_quorum=2)))
    app = client.server.app
    size = await append(client, 3)
    # All three are up: all three cosign the same checkpoint (they are sent the same one).
    await until(
        "all three cosign",
        lambda: all(w["size"] >= size for w in app[WITNESSING].status()["witnesses"]),
    )
    await until("the quorum", lambda: app[WITNESSING].published >= size)

    await three[2].stop()
    size = await append(client, 4)
    await until("two cosign without the third", lambda: app[WITNESSING].published >= size)
    served = await (await client.get("/ledger/checkpoint")).read()
    assert len(verify_witnessed(served, log, keys(three), 2).cosignatures) == 2
    with pytest.raises(NotWitnessed, match="2 of the 3 required"):
        verify_witnessed(served, log, keys(three), 3)
    status = app[WITNESSING].status()
    down = status["witnesses"][2]
    assert down["lag"] > 0 and down["alarm"] is None  # down is not an alarm: it is retried
    ready = await client.get("/readyz")
    assert ready.status == 200  # behind on one witness, still ready
    metrics = await (await client.get("/metrics")).text()
    assert 'telegate_witness_failures_total{kind="network",witness="w2.example/witness"}' in (
        metrics
    )

    # It comes back (same port, same state): the gateway's retries reach it and it catches up.
    await three[2].start()
    size = await append(client, 1)
    await until(
        "the third catches up",
        lambda: app[WITNESSING].status()["witnesses"][2]["size"] >= size,
    )
    await until("all three on one checkpoint", lambda: app[WITNESSING].published >= size)
    served = await (await client.get("/ledger/checkpoint")).read()
    verify_witnessed(served, log, keys(three), 2)


async def test_a_failing_witness_is_retried_with_growing_waits(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    data = tmp_path / "gw"
    w = await WitnessServer(tmp_path, "w.example/witness", log_vkey(data)).start()
    w.failing = True  # answers 503 to everything
    try:
        cfg = gateway_config(data, [w], witness_backoff_max=0.4)
        client = await aiohttp_client(create_app(cfg))
        app = client.server.app
        await until("six failed attempts", lambda: w.seen[503] >= 6)
        # Back-off: 0.1, 0.2, 0.4, 0.4 ... seconds (halved at worst by jitter), never a
        # tight loop, and a 503 is no alarm.
        assert app[WITNESSING].status()["witnesses"][0]["alarm"] is None
        assert app[WITNESSING].peers[0].failures >= 6
        metrics = await (await client.get("/metrics")).text()
        assert 'kind="503"' in metrics
        w.failing = False
        size = app[LOG].size
        await until("cosigned after recovery", lambda: app[WITNESSING].published >= size)
        assert app[WITNESSING].peers[0].failures == 0
    finally:
        await w.stop()


@pytest.mark.parametrize(
    ("rand", "want"),
    [(0.0, [0.05, 0.1, 0.2, 0.4, 0.5, 0.5]), (1.0, [0.1, 0.2, 0.4, 0.8, 1.0, 1.0])],
    ids=["least-jitter", "most-jitter"],
)
def test_back_off_doubles_within_jitter_up_to_the_cap(rand: float, want: list[float]) -> None:
    w = Witnessing(
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        [],
        quorum=0,
        rate=1.0,
        backoff_max=1.0,
        metrics=Metrics.create(),
        signal=None,  # type: ignore[arg-type]
        on_alarm=None,  # type: ignore[arg-type]
        rand=lambda: rand,
    )
    peer = _Peer(WitnessPeer("http://127.0.0.1:9", CosignatureSigner(Signer.generate("w")).vkey))
    assert [w._retry(peer, "network", "test") for _ in want] == pytest.approx(want)
