"""Nothing lost, nothing doubled: a batch stored but not yet on the ledger is settled on the
next start or the next retry; an erasure whose event was not written is written."""

from __future__ import annotations

import time
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from gateway.appkeys import VITALS
from gateway.config import Config
from gateway.db import Database, writing
from gateway.vitals.intake import RECONCILE_GRACE
from gateway.vitals.tables import batches
from tests.gateway.idclient import call, get_token
from tests.gateway.vitals.world import World, batch, hr, sign


async def test_a_failed_append_is_finished_by_the_retry(world: World) -> None:
    intake = world.client.server.app[VITALS].intake
    real = intake.append

    async def broken(event: Any) -> Any:
        raise RuntimeError("ledger unavailable")

    intake.append = broken
    b = batch([hr(70, time.time() - 5)], "retry-me")
    first = await world.send(b)
    assert first.status == 500
    assert (await world.events("vitals.batch")) == []
    intake.append = real
    again = await world.send(b)
    assert again.status == 200  # the stored batch, now on the ledger: the first receipt
    (ev,) = await world.events("vitals.batch")
    assert ev["_index"] == (await again.json())["receipt"]["index"]
    assert ev["data"]["batch_id"] == "retry-me"
    assert len((await (await world.read(world.pat, world.pat_t)).json())["readings"]) == 1


def _update_batches(config: Config, **values: Any) -> None:
    """What a crash leaves behind, written straight into the vitals store."""
    db = Database.from_config(config)
    try:
        with writing(db.engine("vitals")) as conn:
            conn.execute(batches.update().values(**values))
    finally:
        db.close()


async def test_pending_batches_are_settled_on_the_next_start(
    config: Config, aiohttp_client: Any
) -> None:
    app = create_app(config)
    client: TestClient[Any, Any] = await aiohttp_client(app)
    world = await World(client).setup(config)
    intake = app[VITALS].intake
    # One batch is stored and appended but its index update is lost; one is stored but
    # never appended (a crash between the two steps).
    ok = await world.send(batch([hr(70, time.time() - 9)], "appended"))
    assert ok.status == 201
    index = (await ok.json())["receipt"]["index"]
    await intake.writer.flush()
    _update_batches(config, ledger_index=None)

    async def crash(event: Any) -> Any:
        raise RuntimeError("power cut")

    intake.append = crash
    stored_only = batch([hr(71, time.time() - 8)], "stored-only")
    assert (await world.send(stored_only)).status == 500
    await client.close()
    # The crash was a while ago: on a shared database, rows younger than the grace may be
    # another replica's requests in flight, and a start leaves those to the sweep.
    _update_batches(config, received=batches.c.received - RECONCILE_GRACE)

    # The next start settles both: the first found on the ledger, the second appended once.
    app2 = create_app(config)
    client2: TestClient[Any, Any] = TestClient(TestServer(app2))
    await client2.start_server()
    try:
        store = app2[VITALS].intake.store
        assert store.pending() == []
        assert store.find(world.dev.sub, "appended").ledger_index == index
        world.client = client2
        events = [e["data"]["batch_id"] for e in await world.events("vitals.batch")]
        assert events == ["appended", "stored-only"]
        dev_t = await get_token(client2, world.dev)
        jws = sign(world.dev, stored_only)
        headers = {"Content-Type": "application/jose"}
        again = await call(
            client2, "POST", "/v1/vitals", world.dev, dev_t, data=jws, headers=headers
        )
        assert again.status == 200
    finally:
        await client2.close()


async def test_a_ledger_that_takes_no_appends_answers_503_with_retry_after(world: World) -> None:
    from ledger.errors import LedgerUnavailable

    intake = world.client.server.app[VITALS].intake

    async def stopped(event: Any) -> Any:
        raise LedgerUnavailable("the ledger writer has failed")

    intake.append = stopped
    b = batch([hr(70, time.time() - 5)], "later")
    resp = await world.send(b)
    assert resp.status == 503 and resp.headers["Retry-After"] == "5"
    assert (await resp.json())["type"].endswith("/unavailable")


async def test_a_repost_leaves_a_young_batch_stored_elsewhere_to_its_replica(
    world: World, config: Config
) -> None:
    intake = world.client.server.app[VITALS].intake
    real = intake.append

    async def broken(event: Any) -> Any:
        raise RuntimeError("ledger unavailable")

    intake.append = broken
    b = batch([hr(70, time.time() - 5)], "elsewhere")
    assert (await world.send(b)).status == 500
    intake.append = real
    # As if another replica had stored it and might be appending it right now.
    intake._abandoned.clear()
    busy = await world.send(b)
    assert busy.status == 503 and 1 <= int(busy.headers["Retry-After"]) <= 5
    assert (await world.events("vitals.batch")) == []
    # Past the grace that replica is presumed gone: the re-post settles it, once.
    _update_batches(config, received=batches.c.received - RECONCILE_GRACE)
    again = await world.send(b)
    assert again.status == 200, await again.text()
    (ev,) = await world.events("vitals.batch")
    assert ev["_index"] == (await again.json())["receipt"]["index"]
    assert (await world.send(b)).status == 200
    assert len(await world.events("vitals.batch")) == 1
