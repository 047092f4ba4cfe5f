"""The custody chain over HTTP, against a real gateway: commission, pack, ship, receive,
unpack, dispense, each an entry on the ledger whose receipt verifies offline; and every
custody rule refusing, with the refusal on the ledger."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from gateway.appkeys import LOG
from ledger.log import Receipt
from ledger.note import Verifier
from tests.supply.world import (
    World,
    commission,
    decommission,
    dispense,
    pack,
    recall,
    receive,
    sgtin,
    ship,
    sscc,
    unpack,
)


async def _entries(client: TestClient[Any, Any]) -> list[dict[str, Any]]:
    log = client.app[LOG]
    size = log.size
    return [json.loads(e) for e in log.store.read_entries(0, size)]


async def test_the_happy_chain(client: TestClient[Any, Any], tmp_path: Path) -> None:
    w = await World.make(client, tmp_path / "data")
    maker = await w.party("manufacturer", 614141000000)
    dist = await w.party("distributor", 401234500000)
    pharmacy = await w.party("pharmacy", 761234500000)
    units = [sgtin("A1"), sgtin("A2")]
    case = sscc(1)

    made = await w.ok(maker, commission(units), pack(case, units))
    assert [e["event_id"] for e in made["events"]] and len(made["events"]) == 2
    await w.ok(maker, ship([case], dist.gln))
    # Shipping the case moved what is packed in it: in transit to the distributor.
    status, body = await w.item(maker.holder, maker.token, units[0])
    assert status == 200 and body["in_transit_to"] == dist.gln and body["parent"] == case
    await w.ok(dist, receive([case]))
    await w.ok(dist, ship([case], pharmacy.gln))
    await w.ok(pharmacy, receive([case]), unpack(case, []))
    await w.ok(pharmacy, dispense([units[0]]))

    status, body = await w.item(pharmacy.holder, pharmacy.token, units[0])
    assert status == 200
    assert body["status"] == "dispensed" and body["custodian"] == pharmacy.gln
    assert body["lot"] == "L1" and body["parent"] is None and body["suspect"] == []
    steps = [e["biz_step"] for e in body["events"]]
    assert steps == [
        "commissioning",
        "packing",
        "shipping",
        "receiving",
        "shipping",
        "receiving",
        "unpacking",
        "dispensing",
    ]
    # Every event of its custody verifies offline with the log's vkey alone.
    vkey = await (await client.get("/ledger/vkey")).text()
    v = Verifier.from_vkey(vkey)
    for e in body["events"]:
        entry = base64.b64decode(e["entry"])
        Receipt.from_json(e["receipt"]).verify(v, entry)
        leaf = json.loads(entry)
        assert leaf["type"] == "supply.event" and leaf["data"]["biz_step"] == e["biz_step"]
    status, other = await w.item(dist.holder, dist.token, units[1])
    assert status == 200 and other["status"] == "active" and other["custodian"] == pharmacy.gln

    # The Digital Link path form and the EPC URN name the same unit.
    status, same = await w.item(w.admin, w.admin_token, "urn:epc:id:sgtin:0614141.712345.A1")
    assert status == 200 and same["item"] == units[0]


async def test_each_custody_rule_refuses_and_is_audited(
    client: TestClient[Any, Any], tmp_path: Path
) -> None:
    w = await World.make(client, tmp_path / "data")
    maker = await w.party("manufacturer", 614141000000)
    clone = await w.party("manufacturer", 614141000001)
    dist = await w.party("distributor", 401234500000)
    pharmacy = await w.party("pharmacy", 761234500000)
    other = await w.party("pharmacy", 761234500001)
    u = [sgtin(f"R{i}") for i in range(8)]
    await w.ok(maker, commission(u[:7]), commission([u[7]], expiry="2020-01-31"))

    # A serial cannot be commissioned twice (a clone): refused, and the unit is suspect.
    body = await w.refused(clone, commission([u[0]]))
    assert body["reason"] == "commissioned_twice" and body["item"] == u[0]
    assert (await w.item(maker.holder, maker.token, u[0]))[1]["status"] == "suspect"
    # Only a manufacturer commissions.
    assert (await w.refused(dist, commission([sgtin("N1")])))["reason"] == "not_manufacturer"
    # Only the custodian ships.
    assert (await w.refused(dist, ship([u[1]], pharmacy.gln)))["reason"] == "not_custodian"
    await w.ok(maker, ship([u[1], u[2], u[3], u[7]], pharmacy.gln))
    # In transit: not shipped again, and received only by whom it was shipped to.
    assert (await w.refused(maker, ship([u[1]], dist.gln)))["reason"] == "in_transit"
    assert (await w.refused(dist, receive([u[1]])))["reason"] == "not_shipped_to_you"
    assert (await w.refused(pharmacy, receive([u[4]])))["reason"] == "not_shipped_to_you"
    assert (await w.refused(pharmacy, receive([sgtin("X9")])))["reason"] == "unknown_item"
    await w.ok(pharmacy, receive([u[1], u[2], u[3], u[7]]))
    # No dispensing of a recalled, decommissioned, expired or dispensed unit.
    await w.ok(maker, recall([u[2]]))
    assert (await w.refused(pharmacy, dispense([u[2]])))["reason"] == "recalled"
    await w.ok(pharmacy, decommission([u[3]]))
    assert (await w.refused(pharmacy, dispense([u[3]])))["reason"] == "decommissioned"
    assert (await w.refused(pharmacy, dispense([u[7]])))["reason"] == "expired"
    await w.ok(pharmacy, dispense([u[1]]))
    # A second dispense, here or at another pharmacy: refused, and the unit is suspect.
    assert (await w.refused(other, dispense([u[1]])))["reason"] == "dispensed_twice"
    assert (await w.item(other.holder, other.token, u[1]))[1]["suspect"] == ["dispensed_twice"]
    # Only the manufacturer that commissioned a unit recalls it.
    assert (await w.refused(clone, recall([u[5]])))["reason"] == "not_manufacturer"

    statuses = {i: (await w.item(w.admin, w.admin_token, u[i]))[1]["status"] for i in (2, 3, 6, 7)}
    assert statuses == {2: "recalled", 3: "decommissioned", 6: "active", 7: "expired"}
    refusals = [e for e in await _entries(client) if e["type"] == "supply.refused"]
    assert [r["data"]["reason"] for r in refusals] == [
        "commissioned_twice",
        "not_manufacturer",
        "not_custodian",
        "in_transit",
        "not_shipped_to_you",
        "not_shipped_to_you",
        "unknown_item",
        "recalled",
        "decommissioned",
        "expired",
        "dispensed_twice",
        "not_manufacturer",
    ]
    assert refusals[0]["actor"] == clone.holder.sub


async def test_a_refused_event_refuses_the_whole_document(
    client: TestClient[Any, Any], tmp_path: Path
) -> None:
    w = await World.make(client, tmp_path / "data")
    maker = await w.party("manufacturer", 614141000000)
    dist = await w.party("distributor", 401234500000)
    before = len(await _entries(client))
    # The second event breaks a rule: the first is not recorded either.
    body = await w.refused(maker, commission([sgtin("D1")]), ship([sgtin("D2")], dist.gln))
    assert body["reason"] == "unknown_item"
    kinds = [e["type"] for e in (await _entries(client))[before:]]
    assert kinds == ["supply.refused"]
    assert (await w.item(maker.holder, maker.token, sgtin("D1")))[1]["status"] == "unknown"


async def test_packing_rules(client: TestClient[Any, Any], tmp_path: Path) -> None:
    w = await World.make(client, tmp_path / "data")
    maker = await w.party("manufacturer", 614141000000)
    dist = await w.party("distributor", 401234500000)
    u = [sgtin(f"P{i}") for i in range(3)]
    await w.ok(maker, commission(u), pack(sscc(1), u[:2]))
    # A packed unit moves with its case: not shipped, dispensed or packed elsewhere alone.
    assert (await w.refused(maker, ship([u[0]], dist.gln)))["reason"] == "packed"
    assert (await w.refused(maker, pack(sscc(2), [u[0]])))["reason"] == "packed"
    # A case is not packed into what it holds.
    await w.ok(maker, pack(sscc(3), [sscc(1)]))
    assert (await w.refused(maker, pack(sscc(1), [sscc(3)])))["reason"] in (
        "packed",
        "packing_cycle",
    )
    # Only the custodian packs or unpacks.
    assert (await w.refused(dist, unpack(sscc(3), [])))["reason"] == "not_custodian"
    await w.ok(maker, ship([sscc(3)], dist.gln))
    await w.ok(dist, receive([sscc(3)]))
    status, body = await w.item(dist.holder, dist.token, u[1])
    assert status == 200 and body["custodian"] == dist.gln and body["parent"] == sscc(1)
    status, case = await w.item(dist.holder, dist.token, sscc(1))
    assert status == 200 and case["contents"] == sorted(u[:2]) and case["parent"] == sscc(3)
    await w.ok(dist, unpack(sscc(3), [sscc(1)]), unpack(sscc(1), [u[0]]))
    status, body = await w.item(dist.holder, dist.token, u[0])
    assert status == 200 and body["parent"] is None and body["custodian"] == dist.gln
