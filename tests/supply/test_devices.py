"""Devices checked at enrollment: a device's UDI must name a unit whose custody on this
ledger shows it genuine; never commissioned, recalled or suspect devices are refused with
the verdict, and the invite stays unspent."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.appkeys import LOG
from gateway.config import Config
from gateway.supply.gs1 import InvalidIdentifier, parse_udi
from gateway.supply.http import SUPPLY
from gateway.supply.provenance import RESERVE_GRACE
from tests.gateway.idclient import Holder, call, get_token, invite_and_enroll
from tests.supply.world import World, commission, recall, sgtin

UDI_HRI = "(01)70614141123451(17)301231(10)L1(21)DEV1"


@pytest.mark.parametrize(
    "udi",
    [
        UDI_HRI,
        "(01)70614141123451(21)DEV1",
        "https://id.gs1.org/01/70614141123451/21/DEV1",
        "urn:epc:id:sgtin:0614141.712345.DEV1",
    ],
)
def test_a_udi_names_one_unit_in_any_of_its_forms(udi: str) -> None:
    assert parse_udi(udi).uri == sgtin("DEV1")


@pytest.mark.parametrize(
    "udi",
    [
        "(01)70614141123451(17)301231",  # a UDI-DI and expiry: a model, not a unit
        "(01)70614141123452(21)DEV1",  # wrong check digit
        "urn:epc:id:sscc:0614141.1234567890",  # a logistic unit is no device
        "(01)70614141123451(21)",
        7,
    ],
)
def test_a_udi_without_a_unit_is_refused(udi: Any) -> None:
    with pytest.raises(InvalidIdentifier):
        parse_udi(udi)


async def _device_invite(w: World) -> str:
    pat = await invite_and_enroll(w.client, w.admin, w.admin_token, "patient")
    tok = await get_token(w.client, pat)
    r = await call(
        w.client, "POST", "/v1/invites", pat, tok, json={"role": "device", "patient": pat.sub}
    )
    assert r.status == 201
    return str((await r.json())["invite"])


async def _enroll(w: World, invite: str, **extra: Any) -> Any:
    body = {"invite": invite, "jwk": Holder().jwk, "serial": "S1", "model": "Oximeter 2"}
    return await w.client.post("/v1/enroll", json={**body, **extra})


async def test_genuine_unknown_and_recalled_devices(
    client: TestClient[Any, Any], tmp_path: Path
) -> None:
    w = await World.make(client, tmp_path / "data")
    maker = await w.party("manufacturer", 614141000000)
    await w.ok(maker, commission([sgtin("DEV1"), sgtin("DEV2")]))
    await w.ok(maker, recall([sgtin("DEV2")]))

    invite = await _device_invite(w)
    r = await _enroll(w, invite, udi="(01)70614141123451(21)NEVER")
    body = await r.json()
    assert r.status == 422 and body["verdict"] == "unknown", body
    assert body["type"].endswith("/device-provenance")
    r = await _enroll(w, invite, udi="urn:epc:id:sgtin:0614141.712345.DEV2")
    body = await r.json()
    assert r.status == 422 and body["verdict"] == "recalled" and body["item"] == sgtin("DEV2")
    r = await _enroll(w, invite, udi="(01)70614141123451")
    assert r.status == 400
    # Refusals spent nothing: the genuine device enrolls with the same invite.
    r = await _enroll(w, invite, udi=UDI_HRI)
    enrolled = await r.json()
    assert r.status == 201, enrolled
    # Its UDI is committed on the ledger, never written there in clear beside its patient.
    log = client.app[LOG]
    (entry,) = [
        json.loads(e)
        for e in log.store.read_entries(0, log.size)
        if enrolled["sub"].encode() in e and b"identity.enrolled" in e
    ]
    assert "udi_commitment" in entry["data"] and "DEV1" not in json.dumps(entry)


async def test_a_suspect_device_is_refused(client: TestClient[Any, Any], tmp_path: Path) -> None:
    w = await World.make(client, tmp_path / "data")
    maker = await w.party("manufacturer", 614141000000)
    clone = await w.party("manufacturer", 614141000001)
    await w.ok(maker, commission([sgtin("DEV1")]))
    await w.refused(clone, commission([sgtin("DEV1")]))
    r = await _enroll(w, await _device_invite(w), udi=UDI_HRI)
    body = await r.json()
    assert r.status == 422 and body["verdict"] == "suspect"
    assert body["suspect"] == ["commissioned_twice"]


async def test_without_the_setting_a_device_may_enroll_without_a_udi(
    client: TestClient[Any, Any], tmp_path: Path
) -> None:
    w = await World.make(client, tmp_path / "data")
    assert (await _enroll(w, await _device_invite(w))).status == 201


async def test_with_the_setting_a_device_needs_its_udi(
    aiohttp_client: Any, config: Config, tmp_path: Path
) -> None:
    client = await aiohttp_client(create_app(dataclasses.replace(config, device_provenance=True)))
    w = await World.make(client, tmp_path / "data")
    maker = await w.party("manufacturer", 614141000000)
    await w.ok(maker, commission([sgtin("DEV1")]))
    invite = await _device_invite(w)
    r = await _enroll(w, invite)
    assert r.status == 400 and "udi" in (await r.json())["detail"]
    assert (await _enroll(w, invite, udi=UDI_HRI)).status == 201


async def test_a_second_device_with_an_enrolled_udi_is_refused(
    client: TestClient[Any, Any], tmp_path: Path
) -> None:
    w = await World.make(client, tmp_path / "data")
    maker = await w.party("manufacturer", 614141000000)
    await w.ok(maker, commission([sgtin("DEV1")]))
    first = await _enroll(w, await _device_invite(w), udi=UDI_HRI)
    assert first.status == 201
    invite = await _device_invite(w)
    # The same unit in another spelling: refused, with the reason; the invite is not spent.
    r = await _enroll(w, invite, udi="urn:epc:id:sgtin:0614141.712345.DEV1")
    body = await r.json()
    assert r.status == 409 and body["type"].endswith("/udi-enrolled"), body
    assert body["reason"] == "udi_enrolled" and body["item"] == sgtin("DEV1")
    assert (await _enroll(w, invite)).status == 201  # the invite still works


async def test_a_udi_is_freed_when_its_device_is_revoked(
    client: TestClient[Any, Any], tmp_path: Path
) -> None:
    w = await World.make(client, tmp_path / "data")
    maker = await w.party("manufacturer", 614141000000)
    await w.ok(maker, commission([sgtin("DEV1")]))
    first = await (await _enroll(w, await _device_invite(w), udi=UDI_HRI)).json()
    r = await call(
        w.client,
        "POST",
        "/v1/revocations",
        w.admin,
        w.admin_token,
        json={"sub": first["sub"], "reason": "key_compromise"},
    )
    assert r.status == 200, await r.text()
    # Revoked, but reserved less than RESERVE_GRACE ago: an enrollment may be under way.
    invite = await _device_invite(w)
    assert (await _enroll(w, invite, udi=UDI_HRI)).status == 409
    supply = w.client.app[SUPPLY]
    t = supply.clock() + RESERVE_GRACE
    supply._clock = lambda: t  # the grace has passed; the device stays revoked
    assert (await _enroll(w, invite, udi=UDI_HRI)).status == 201
