"""Two organizations witness each other with no extra process: each gateway hosts a witness
(``witness_config``) under ``/witness`` that follows the other's log, and submits its own
checkpoints to the other's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.app import create_app
from gateway.config import Config, WitnessPeer
from gateway.openapi import SPEC
from gateway.witness.keys import init_witness_key
from gateway.witnessing import WITNESSING
from ledger.checkpoint import verify_witnessed
from ledger.note import Verifier
from tests.gateway.test_openapi import _routes

from .gateways import free_port, log_vkey, until


def _side(root: Path, org: str) -> dict[str, Any]:
    data = root / org
    origin = f"{org}.example/telegate/log"
    name = f"{org}.example/witness"
    witness_key = init_witness_key(data / "witness" / "witness.skey", name)[0]
    return {
        "data": data,
        "origin": origin,
        "log": log_vkey(data, origin),
        "name": name,
        "witness": witness_key.vkey,
        "port": free_port(),
    }


def _config(me: dict[str, Any], peer: dict[str, Any]) -> Config:
    toml = me["data"] / "witness.toml"
    toml.write_text(
        f'name = "{me["name"]}"\ndata_dir = "witness"\n\n'
        f'[[logs]]\norigin = "{peer["origin"]}"\nvkey = "{peer["log"]}"\n'
    )
    return Config(
        data_dir=me["data"],
        log_origin=me["origin"],
        witnesses=(WitnessPeer(f"http://127.0.0.1:{peer['port']}/witness", peer["witness"]),),
        witness_rate=50.0,
        witness_backoff_max=0.2,
        witness_config=str(toml),
    )


async def test_two_gateways_witness_each_other(aiohttp_client: Any, tmp_path: Path) -> None:
    a, b = _side(tmp_path, "a"), _side(tmp_path, "b")
    apps = [create_app(_config(a, b)), create_app(_config(b, a))]
    # A starts first and finds B's witness down: it retries until B is up.
    clients = [
        await aiohttp_client(app, server_kwargs={"port": side["port"]})
        for app, side in zip(apps, (a, b), strict=True)
    ]
    for me, peer, client in ((a, b, clients[0]), (b, a, clients[1])):
        app = client.server.app
        await until(f"{me['name']} cosigns", lambda app=app: app[WITNESSING].published >= 1)
        note = await (await client.get("/ledger/checkpoint")).read()
        w = verify_witnessed(
            note, Verifier.from_vkey(me["log"]), [Verifier.from_vkey(peer["witness"])], 1
        )
        assert [c.name for c in w.cosignatures] == [peer["name"]]
        # The hosted witness answers on its own routes, in plain text.
        resp = await client.post("/witness/add-checkpoint", data=b"not a request")
        assert (resp.status, resp.content_type) == (400, "text/plain")
    # The witness routes are mounted, and are the only routes outside /openapi.json.
    documented = {(m, p) for p, ops in SPEC["paths"].items() for m in ops}
    assert _routes(apps[0]) == documented
    assert any(
        r.resource and r.resource.canonical == "/witness/add-checkpoint"
        for r in apps[0].router.routes()
    )
