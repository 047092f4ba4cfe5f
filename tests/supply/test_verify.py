"""A unit's custody checked offline with the log's vkey alone, and every way a tampered
answer is caught."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.supply.verify import InvalidCustody, verify_custody
from ledger.note import Signer, Verifier
from tests.supply.world import World, commission, pack, receive, sgtin, ship, sscc


@pytest.fixture
async def answer(client: TestClient[Any, Any], tmp_path: Path) -> tuple[dict[str, Any], Verifier]:
    w = await World.make(client, tmp_path / "data")
    maker = await w.party("manufacturer", 614141000000)
    dist = await w.party("distributor", 401234500000)
    await w.ok(maker, commission([sgtin("V1"), sgtin("V2")]), pack(sscc(9), [sgtin("V1")]))
    await w.ok(maker, ship([sscc(9)], dist.gln))
    await w.ok(dist, receive([sscc(9)]))
    status, body = await w.item(dist.holder, dist.token, sgtin("V1"))
    assert status == 200
    vkey = await (await client.get("/ledger/vkey")).text()
    return body, Verifier.from_vkey(vkey)


async def test_an_honest_answer_verifies(answer: tuple[dict[str, Any], Verifier]) -> None:
    body, log = answer
    got = verify_custody(body, log)
    assert got.events == 4 and got.custodian == body["custodian"] == "4012345000009"
    assert got.checkpoint_size > body["events"][-1]["ledger_index"]
    assert verify_custody({"item": "x", "status": "unknown"}, log).events == 0


def _tampered(body: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(body)


def _retouched_leaf(body: dict[str, Any]) -> dict[str, Any]:
    bad = _tampered(body)
    leaf = json.loads(base64.b64decode(bad["events"][0]["entry"]))
    leaf["data"]["gln"] = "9999999999994"
    bad["events"][0]["entry"] = base64.b64encode(json.dumps(leaf).encode()).decode()
    return bad


def _no_moved_proof(body: dict[str, Any]) -> dict[str, Any]:
    bad = _tampered(body)
    moved = [e for e in bad["events"] if "moved_proof" in e]
    assert moved  # the case's shipping and receipt moved this unit
    del moved[0]["moved_proof"]
    return bad


def _moved_proof_of_another_place(body: dict[str, Any]) -> dict[str, Any]:
    bad = _tampered(body)
    proof = next(e for e in bad["events"] if "moved_proof" in e)["moved_proof"]
    proof["index"] = 1 - proof["index"] if proof["size"] > 1 else proof["index"] + 1
    return bad


TAMPERS = {
    "no-moved-proof": _no_moved_proof,
    "moved-proof-elsewhere": _moved_proof_of_another_place,
    "custodian": lambda b: {**_tampered(b), "custodian": "0614141000005"},
    "in-transit": lambda b: {**_tampered(b), "in_transit_to": "0614141000005"},
    "leaf": _retouched_leaf,
    "order": lambda b: {**_tampered(b), "events": list(reversed(b["events"]))},
    "no-receipt": lambda b: {
        **_tampered(b),
        "events": [{k: v for k, v in b["events"][0].items() if k != "receipt"}],
    },
    "row-says-other-step": lambda b: {
        **_tampered(b),
        "events": [{**b["events"][0], "biz_step": "receiving"}, *b["events"][1:]],
    },
    "another-unit": lambda b: {**_tampered(b), "item": sgtin("V2")},
    "no-events": lambda b: {**_tampered(b), "events": []},
}


async def test_every_tampered_answer_is_caught(answer: tuple[dict[str, Any], Verifier]) -> None:
    body, log = answer
    for how, tamper in TAMPERS.items():
        with pytest.raises(InvalidCustody):
            verify_custody(tamper(body), log)
            pytest.fail(f"{how} went unnoticed")
    # Nor does another log's key (same origin name, another key) verify it.
    other = Signer.generate(log.name).verifier
    with pytest.raises(InvalidCustody):
        verify_custody(body, other)
    verify_custody(body, log)  # the checks above changed nothing in the honest answer
