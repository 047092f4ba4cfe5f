"""Recalls by GTIN and lot: every unit of the lot the manufacturer commissioned turns
recalled, the manufacturer is told who holds them; and a pallet of hundreds of units moves
as one small ledger entry whose Merkle root proves each unit's part in it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from gateway.appkeys import LOG
from gateway.supply.verify import verify_custody
from ledger.note import Verifier
from tests.supply.world import (
    World,
    commission,
    dispense,
    pack,
    recall_lots,
    receive,
    sgtin,
    ship,
    sscc,
)

LOT7 = "https://id.gs1.org/01/70614141123451/10/L7"


def _leaf(client: TestClient[Any, Any], index: int) -> dict[str, Any]:
    (entry,) = client.app[LOG].store.read_entries(index, index + 1)
    return dict(json.loads(entry))


async def test_a_lot_recall(client: TestClient[Any, Any], tmp_path: Path) -> None:
    w = await World.make(client, tmp_path / "data")
    maker = await w.party("manufacturer", 614141000000)
    dist = await w.party("distributor", 401234500000)
    pharmacy = await w.party("pharmacy", 761234500000)
    lot7 = [sgtin(f"L7-{i}") for i in range(4)]
    await w.ok(maker, commission(lot7, lot="L7"), commission([sgtin("L8-0")], lot="L8"))
    await w.ok(maker, ship(lot7[:2], dist.gln), ship(lot7[2:3], pharmacy.gln))
    await w.ok(dist, receive(lot7[:2]))
    await w.ok(pharmacy, receive(lot7[2:3]), dispense(lot7[2:3]))

    # Only the manufacturer that commissioned the lot recalls it.
    assert (await w.refused(dist, recall_lots([LOT7])))["reason"] == "unknown_lot"
    body = await w.refused(maker, recall_lots(["https://id.gs1.org/01/70614141123451/10/L9"]))
    assert body["reason"] == "unknown_lot"

    # The URN spelling of the same lot: every unit recalled, wherever it is.
    done = await w.ok(maker, recall_lots(["urn:epc:class:lgtin:0614141.712345.L7"]))
    (ev,) = done["events"]
    assert ev["holders"] == sorted([maker.gln, dist.gln, pharmacy.gln])
    for u in lot7:
        status, unit = await w.item(dist.holder, dist.token, u)
        assert status == 200 and unit["status"] == "recalled", u
    status, other = await w.item(dist.holder, dist.token, sgtin("L8-0"))
    assert other["status"] == "active"
    leaf = _leaf(client, ev["receipt"]["index"])
    assert leaf["data"]["lots"] == [LOT7] and leaf["data"]["items"] == []
    assert leaf["data"]["moved"]["count"] == 4
    # Each unit's history proves it was one of the recalled lot's, offline.
    vkey = Verifier.from_vkey(await (await client.get("/ledger/vkey")).text())
    status, unit = await w.item(dist.holder, dist.token, lot7[0])
    got = verify_custody(unit, vkey)
    assert got.status == "recalled" and got.custodian == dist.gln
    assert "moved_proof" in unit["events"][-1]


async def test_a_pallet_moves_as_one_small_entry(
    client: TestClient[Any, Any], tmp_path: Path
) -> None:
    w = await World.make(client, tmp_path / "data")
    maker = await w.party("manufacturer", 614141000000)
    dist = await w.party("distributor", 401234500000)
    cases = []
    for c in range(3):
        units = [sgtin(f"P{c}-{i}") for i in range(200)]
        await w.ok(maker, commission(units), pack(sscc(c), units))
        cases.append(sscc(c))
    await w.ok(maker, pack(sscc(99), cases))
    shipped = await w.ok(maker, ship([sscc(99)], dist.gln))
    leaf = _leaf(client, shipped["events"][0]["receipt"]["index"])
    assert leaf["data"]["moved"]["count"] == 603  # 3 cases and their 600 units
    assert len(json.dumps(leaf)) < 2048
    await w.ok(dist, receive([sscc(99)]))
    status, unit = await w.item(dist.holder, dist.token, sgtin("P2-199"))
    assert status == 200 and unit["custodian"] == dist.gln
    vkey = Verifier.from_vkey(await (await client.get("/ledger/vkey")).text())
    assert verify_custody(unit, vkey).events == 5  # commission, pack, pack, ship, receive
