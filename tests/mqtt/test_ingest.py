"""Devices publish signed batches to a real broker; the gateway takes them through its
shared subscription and answers on the response topic, as POST /v1/vitals would."""

from __future__ import annotations

import time
from typing import Any

from gateway.mqtt.topics import receipts_topic, vitals_topic
from tests.gateway.idclient import call
from tests.gateway.vitals.world import World, batch, bp, hr, sign
from tests.mqtt.conftest import DeviceLink, device_link


async def _stored(world: World) -> list[dict[str, Any]]:
    resp = await world.read(world.pat, world.pat_t)
    assert resp.status == 200, await resp.text()
    return list((await resp.json())["readings"])


async def test_a_published_batch_gets_its_receipt_on_the_response_topic(
    world: World, link: DeviceLink
) -> None:
    now = time.time()
    jws = sign(world.dev, batch([hr(72, now - 60), bp(121, 79, now - 30)], "m-1"))
    mine = receipts_topic(world.dev.sub) + "/req-7"
    r = await link.ask(jws, response_topic=mine)
    assert r.topic == mine and r.status == 201 and r.content_type == "application/json"
    assert r.body["batch_id"] == "m-1" and r.body["count"] == 2
    events = await world.events("vitals.batch")
    assert [e["_index"] for e in events] == [r.body["receipt"]["index"]]
    assert events[0]["actor"] == world.dev.sub and events[0]["subject"] == world.pat.sub
    readings = await _stored(world)
    assert sorted(x["code"] for x in readings) == ["85354-9", "8867-4"]
    assert {x["batch_id"] for x in readings} == {"m-1"}


async def test_without_a_response_topic_the_answer_goes_to_the_device_receipts(
    world: World, link: DeviceLink
) -> None:
    r = await link.ask(sign(world.dev, batch([hr(70, time.time() - 5)], "m-2")))
    assert r.topic == receipts_topic(world.dev.sub) and r.status == 201


async def test_a_duplicate_publish_is_one_ledger_record_with_the_first_receipt(
    world: World, link: DeviceLink
) -> None:
    b = batch([hr(70, time.time() - 5)], "m-dup")
    first = await link.ask(sign(world.dev, b))
    again = await link.ask(sign(world.dev, b))  # a new signature, the same batch
    assert (first.status, again.status) == (201, 200)
    assert first.body["receipt"] == again.body["receipt"]
    assert len(await world.events("vitals.batch")) == 1
    # The same batch id over HTTP is the same batch too: one code path.
    http = await world.send(b)
    assert http.status == 200
    assert (await http.json())["receipt"]["index"] == first.body["receipt"]["index"]


async def test_a_batch_signed_by_another_device_is_refused_audited_and_not_stored(
    world: World, link: DeviceLink
) -> None:
    # The other patient's device signs; it is published under world.dev's topic.
    forged = sign(world.other_dev, batch([hr(99, time.time() - 5)], "m-forged"))
    r = await link.ask(forged)
    assert r.status == 403 and r.content_type == "application/problem+json"
    assert r.body["status"] == 403 and "signer" not in r.body  # no other device's id
    assert r.topic == receipts_topic(world.dev.sub)
    assert await world.events("vitals.batch") == []
    assert await _stored(world) == []
    refused = [e for e in await world.events("auth.refused") if e["data"]["method"] == "PUBLISH"]
    assert len(refused) == 1
    assert refused[0]["actor"] == world.dev.sub
    assert refused[0]["data"]["signer"] == world.other_dev.sub
    assert refused[0]["data"]["route"] == "mqtt:telegate/v1/devices/{device_id}/vitals"


async def test_a_batch_naming_another_patient_is_refused_as_over_http(
    world: World, link: DeviceLink
) -> None:
    b = batch([hr(70, time.time() - 5)], "m-x", patient=world.other.sub)
    r = await link.ask(sign(world.dev, b))
    assert r.status == 403
    assert await world.events("vitals.batch") == []


async def test_malformed_payloads_get_problems_and_the_consumer_keeps_going(
    world: World, link: DeviceLink
) -> None:
    cases: list[tuple[Any, dict[str, Any], int]] = [
        ("not a jws", {}, 400),
        (b"\xff\xfe" + b"a" * 10, {}, 400),  # not ASCII
        ("a.b.c", {}, 400),
        (sign(world.dev, b"{not json"), {}, 400),
        (sign(world.dev, batch([hr(70, time.time() - 5)])), {"content_type": "text/plain"}, 415),
        (sign(world.dev, batch([{"code": "8867-4", "value": "x"}])), {}, 422),
        (b"a" * (1024 * 1024 + 1), {}, 413),  # over max_body_size (1 MiB, as HTTP)
    ]
    got = []
    for payload, kw, _ in cases:
        r = await link.ask(payload, **kw)
        assert r.content_type == "application/problem+json"
        assert r.body["status"] == r.status
        got.append(r.status)
    assert got == [status for _, _, status in cases]
    ok = await link.ask(sign(world.dev, batch([hr(70, time.time() - 5)], "after")))
    assert ok.status == 201
    assert len(await world.events("vitals.batch")) == 1


async def test_a_response_topic_outside_the_device_own_receipts_is_refused(
    world: World, link: DeviceLink
) -> None:
    jws = sign(world.dev, batch([hr(70, time.time() - 5)], "m-rt"))
    r = await link.ask(jws, response_topic=receipts_topic(world.other_dev.sub))
    assert r.status == 400 and r.topic == receipts_topic(world.dev.sub)
    assert await world.events("vitals.batch") == []


async def test_a_publish_under_an_unknown_device_id_stores_nothing(
    world: World, broker: Any
) -> None:
    ghost = "dev:" + "0" * 32
    async with device_link(broker, ghost) as d:
        r = await d.ask(sign(world.dev, batch([hr(70, time.time() - 5)])))
        assert r.status == 403 and r.topic == receipts_topic(ghost)
    assert await world.events("vitals.batch") == []


async def test_a_topic_with_a_malformed_device_id_is_answered(world: World, broker: Any) -> None:
    async with device_link(broker, "not-a-device") as d:
        r = await d.ask("x.y.z", topic=vitals_topic("not-a-device"))
        assert r.status == 400


async def _revoke(world: World, sub: str) -> None:
    body = {"sub": sub, "reason": "key_compromise"}
    r = await call(world.client, "POST", "/v1/revocations", world.adm, world.adm_t, json=body)
    assert r.status == 200, await r.text()


async def test_a_device_revoked_after_posting_is_refused_from_its_next_publish(
    world: World, link: DeviceLink
) -> None:
    # Its enrollment is remembered after the first batch (gateway/mqtt/subjects.py): the
    # revocation must still stop the next one at once.
    first = await link.ask(sign(world.dev, batch([hr(70, time.time() - 5)], "m-r1")))
    assert first.status == 201
    await _revoke(world, world.dev.sub)
    r = await link.ask(sign(world.dev, batch([hr(71, time.time() - 5)], "m-r2")))
    assert r.status == 403 and r.content_type == "application/problem+json"
    assert [e["data"]["batch_id"] for e in await world.events("vitals.batch")] == ["m-r1"]


async def test_a_device_of_a_patient_revoked_after_it_posted_is_refused(
    world: World, link: DeviceLink
) -> None:
    first = await link.ask(sign(world.dev, batch([hr(70, time.time() - 5)], "m-p1")))
    assert first.status == 201
    await _revoke(world, world.pat.sub)
    r = await link.ask(sign(world.dev, batch([hr(71, time.time() - 5)], "m-p2")))
    assert r.status == 403
    assert [e["data"]["batch_id"] for e in await world.events("vitals.batch")] == ["m-p1"]
