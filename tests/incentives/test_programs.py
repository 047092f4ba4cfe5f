"""Publishing programs over HTTP: who may, what is refused (RFC 9457), what the ledger
records."""

from __future__ import annotations

import hashlib
import json

from tests.gateway.idclient import call
from tests.incentives.conftest import IncentiveWorld

RULE = 'days_with("8867-4") >= 3'


async def test_an_admin_publishes_and_the_ledger_holds_the_canonical_text(
    world: IncentiveWorld,
) -> None:
    resp = await world.publish(RULE)
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    pid = body["id"]
    [ev] = await world.events("incentive.program_published")
    assert ev["actor"] == world.adm.sub and ev["data"]["program"] == pid
    canonical = ev["data"]["canonical"]
    assert hashlib.sha256(canonical.encode()).hexdigest() == pid
    assert json.loads(canonical)["rule"] == RULE
    assert body["receipt"]["index"] == ev["_index"] == body["ledger_index"]
    # The same text again is the same program: nothing new on the ledger.
    again = await world.publish(RULE)
    assert again.status == 200 and (await again.json())["id"] == pid
    assert len(await world.events("incentive.program_published")) == 1
    listed = await call(world.client, "GET", "/v1/programs", world.pat, world.pat_t)
    assert [p["id"] for p in (await listed.json())["programs"]] == [pid]


async def test_a_provider_publishes_its_own_and_lists_them(world: IncentiveWorld) -> None:
    mine = await world.publish(RULE, world.prov, world.prov_t, name="Mine")
    assert mine.status == 201, await mine.text()
    await world.program(RULE, name="The admin's")
    resp = await call(
        world.client,
        "GET",
        "/v1/programs",
        world.prov,
        world.prov_t,
        params={"publisher": world.prov.sub},
    )
    assert [p["name"] for p in (await resp.json())["programs"]] == ["Mine"]


async def test_a_patient_or_a_device_may_not_publish(world: IncentiveWorld) -> None:
    for who, token in ((world.pat, world.pat_t), (world.dev, world.dev_t)):
        resp = await world.publish(RULE, who, token)
        assert resp.status == 403
        assert resp.content_type == "application/problem+json"
    assert await world.events("incentive.program_published") == []


async def test_no_token_or_a_replayed_proof_is_refused(world: IncentiveWorld) -> None:
    resp = await world.client.post("/v1/programs", json={"name": "x"})
    assert resp.status == 401
    url = str(world.client.make_url("/v1/programs"))
    proof = world.adm.dpop("POST", url, world.adm_t)
    headers = {"Authorization": f"DPoP {world.adm_t}", "DPoP": proof}
    body = {"name": "x", "start": "2026-12-07", "rule": RULE}
    first = await world.client.post("/v1/programs", json=body, headers=headers)
    assert first.status == 201
    replay = await world.client.post("/v1/programs", json={**body, "name": "y"}, headers=headers)
    assert replay.status == 401
    forged = world.adm_t[:-4] + ("AAAA" if not world.adm_t.endswith("AAAA") else "BBBB")
    headers = {"Authorization": f"DPoP {forged}", "DPoP": world.adm.dpop("POST", url, forged)}
    assert (await world.client.post("/v1/programs", json=body, headers=headers)).status == 401


async def test_bad_rules_are_problems_naming_the_fault(world: IncentiveWorld) -> None:
    cases = {
        'days_with("8867-4") >=': "not valid CEL",
        "steps >= 3": "unknown name 'steps'",
        'mean("8867-4")': "bool or an int",
        'count("8867-4")': "outside 0..10",
    }
    for rule, detail in cases.items():
        resp = await world.publish(rule)
        assert resp.status == 400, rule
        assert resp.content_type == "application/problem+json"
        problem = await resp.json()
        assert problem["type"].endswith("/invalid-rule") and detail in problem["detail"], problem
    assert await world.events("incentive.program_published") == []


async def test_oversized_and_malformed_bodies_are_refused(world: IncentiveWorld) -> None:
    huge = await world.publish(RULE, name="x" * 20_000)
    assert huge.status == 413
    long_rule = await world.publish("true || " * 300 + RULE)
    assert long_rule.status == 400 and "at most 2000" in (await long_rule.json())["detail"]
    for bad in (b"{", b"[]", b'{"name": 1}'):
        resp = await call(
            world.client,
            "POST",
            "/v1/programs",
            world.adm,
            world.adm_t,
            data=bad,
            headers={"Content-Type": "application/json"},
        )
        assert resp.status == 400 and resp.content_type == "application/problem+json"
    text = await call(world.client, "POST", "/v1/programs", world.adm, world.adm_t, data=b"x")
    assert text.status == 415


async def test_a_providers_program_is_for_its_patients(world: IncentiveWorld) -> None:
    resp = await world.publish(RULE, world.prov, world.prov_t, name="For my patients")
    pid = (await resp.json())["id"]
    refused = await world.enroll(pid)
    assert refused.status == 403 and "provider who published" in (await refused.json())["detail"]
    await world.grant(["call"])  # the patient names this provider
    assert (await world.enroll(pid)).status == 201
    # An admin's program is open to every patient.
    open_pid = await world.program(RULE)
    assert (await world.enroll(open_pid, world.other, world.other_t)).status == 201
