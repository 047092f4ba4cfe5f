"""`telegate supply verify --witness ... --min-witnesses K`: the custody's receipts, then a
checkpoint cosigned by K witnesses that covers and extends them, as `telegate audit` waits
for; a quorum not met in time is an error. Real witness servers (two up, one down)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app
from gateway.client import Session, enroll
from gateway.witnessing import WITNESSING
from tests.supply.test_cli import _party, _post
from tests.supply.world import commission, gln, sgtin
from tests.witness.gateways import WitnessServer, gateway_config, log_vkey, until
from tests.witness.test_gateway_cli import _where, cli, witness_flags


@pytest.fixture
async def gateway(aiohttp_client: Any, tmp_path: Path) -> AsyncIterator[tuple[Any, list[str]]]:
    data = tmp_path / "gw"
    vkey = log_vkey(data)
    servers = [WitnessServer(tmp_path, f"w{i}.example/witness", vkey) for i in range(3)]
    for s in servers[:2]:
        await s.start()
    client = await aiohttp_client(create_app(gateway_config(data, servers, witness_quorum=2)))
    await until("the quorum cosigns", lambda: client.server.app[WITNESSING].published >= 1)
    yield client, [s.vkey for s in servers]
    for s in servers:
        await s.stop()


async def test_supply_verify_waits_for_a_witnessed_checkpoint(
    gateway: tuple[Any, list[str]], tmp_path: Path
) -> None:
    client, witnesses = gateway
    server = str(client.make_url("")).rstrip("/")
    rc, code, err = await cli(
        "invite", "admin", "--data-dir", str(tmp_path / "gw"), *_where(client)
    )
    assert rc == 0, err
    admin = await asyncio.to_thread(enroll, server, code.strip())
    creds = tmp_path / "maker.json"
    maker = await asyncio.to_thread(
        _party, Session(admin), server, "manufacturer", gln(614141000000), creds
    )
    await asyncio.to_thread(_post, maker, commission([sgtin("W1")]))

    flags = witness_flags(witnesses)
    base = ("supply", "verify", sgtin("W1"), "--credentials", str(creds), *flags)
    rc, out, err = await cli(*base, "--min-witnesses", "2")
    assert rc == 0, err
    assert out.startswith(f"{sgtin('W1')}: active; 1 events verified against checkpoint")
    assert "cosigned by w0.example/witness, w1.example/witness" in err, err
    rc, _, err = await cli(*base, "--min-witnesses", "3", "--witness-wait", "1")
    assert rc == 1
    assert err.startswith("error: no checkpoint cosigned by 3 of the 3 witnesses"), err
