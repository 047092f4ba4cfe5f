"""A's own view of B's log: a fork of B is caught even when the witnesses A requires could
be fooled, and a peer that cannot be asked for a proof is not taken on trust.

To fork B past its witnesses, A here is content with 1 of 3 witnesses (its own, W, and W2),
and the second history of B is cosigned by W2 alone, which never saw the first: every
checkpoint B shows A is witnessed, yet the two cannot both be true. A kept the first, asks
B for a consistency proof to the second, gets none that verifies, refuses, records both
checkpoints as evidence and refuses B from then on.
"""

from __future__ import annotations

import shutil
from typing import Any

from gateway.app import create_app
from gateway.config import Config
from gateway.federation import FEDERATION
from ledger.checkpoint import open_checkpoint
from ledger.verify import LogForked, check_fork
from tests.gateway.idclient import admin, invite_and_enroll, token_response

from .conftest import NPI, World
from .orgs import (
    Org,
    exchange,
    exchange_response,
    independent_witness,
    peer_token,
    peer_toml,
    refused,
    witnessed_receipt,
)


async def test_a_forked_peer_is_refused_and_recorded(world: World, aiohttp_client: Any) -> None:
    w2 = independent_witness(world.root, "w2.example/witness", world.b)
    world.servers.append(w2)
    await w2.start()
    a, b = world.a, world.b
    anyone = [a.witness_vkey, world.w.vkey, w2.vkey]
    w = await world.up(trust_a=peer_toml(b, anyone, 1))
    token = await peer_token(b.c, w.provider, a.url)
    receipt = await witnessed_receipt(b.c, w.provider, token, anyone, 1)
    await exchange(a.c, w.provider, token, receipt)
    honest = a.c.server.app[FEDERATION].state.latest(b.log_vkey)

    # B again, on the same URL and under the same keys, with another history, witnessed
    # by W2 only.
    await b.c.close()
    fork_dir = world.root / "b-fork"
    shutil.copytree(b.data / "keys", fork_dir / "keys")
    forked = Org("b", fork_dir, b.port, b.log_vkey, b.witness_vkey)
    cfg = Config(
        data_dir=fork_dir,
        log_origin=b.origin,
        public_url=b.url,
        witnesses=(w2.peer,),
        witness_rate=50.0,
        witness_backoff_max=0.2,
        trust_file=str(b.data / "trust.toml"),
    )
    forked.client = await aiohttp_client(create_app(cfg), server_kwargs={"port": b.port})
    adm, adm_t = await admin(forked.c, fork_dir)
    prov = await invite_and_enroll(forked.c, adm, adm_t, "provider", npi=NPI)
    for _ in range(3):  # whatever its size, no proof joins the two histories
        await token_response(forked.c, adm)
    token = await peer_token(forked.c, prov, a.url)
    receipt = await witnessed_receipt(forked.c, prov, token, [w2.vkey], 1)

    resp = await exchange_response(a.c, prov, token, receipt)
    data = await refused(a, resp, "forked")
    # The evidence: two checkpoints, each signed by B's log key, that no proof joins.
    first, second = (n.encode() for n in data["evidence"])
    sizes = [open_checkpoint(n, b.log).checkpoint.size for n in (first, second)]
    assert sizes == sorted(sizes) and honest in (first, second)
    try:
        check_fork(first, second, [], b.log)
        raise AssertionError("the evidence is not a fork")
    except LogForked:
        pass
    state = a.c.server.app[FEDERATION].state
    assert state.fork(b.log_vkey) == (first, second)
    # From then on B is refused, whatever it sends.
    token = await peer_token(forked.c, prov, a.url)
    receipt = await witnessed_receipt(forked.c, prov, token, [w2.vkey], 1)
    resp = await exchange_response(a.c, prov, token, receipt)
    await refused(a, resp, "peer_forked")


async def test_a_peer_that_cannot_be_asked_is_not_taken_on_trust(world: World) -> None:
    w = await world.up()
    await w.accepted()
    # A newer checkpoint of B's, while B is down: A cannot check it extends the one it has.
    token, receipt = await w.b_token()
    await w.b.c.close()
    resp = await exchange_response(w.a.c, w.provider, token, receipt)
    await refused(w.a, resp, "peer_unreachable", "temporarily_unavailable", 503)
