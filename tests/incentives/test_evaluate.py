"""Enrollment and evaluation over real ingested vitals: pass, fail and the boundary; a
revoked enrollment stops evaluation; the ledger carries a commitment and the result, never
a reading or an aggregate value."""

from __future__ import annotations

import base64
import json
from typing import Any

from gateway.incentives.evaluate import commitment
from tests.gateway.idclient import call
from tests.incentives.conftest import IncentiveWorld

#: Passes on a day with at least 3 heart-rate readings, all at most 100/min on average.
RULE = 'count("8867-4") >= 3 && mean("8867-4") <= 100.0'


async def test_pass_fail_and_boundary_over_real_vitals(world: IncentiveWorld) -> None:
    pid = await world.program(RULE)
    assert (await world.enroll(pid)).status == 201
    await world.heart(0, [61.5, 72.25, 83.75])  # 3 readings, mean 72.5: passes
    await world.heart(1, [64, 66])  # 2 readings: fails
    await world.heart(2, [90, 100, 110])  # mean exactly 100.0: the boundary, passes
    await world.heart(3, [100, 101, 100])  # mean 100.33: fails
    got = {}
    for period in range(4):
        resp = await world.evaluate(pid, period)
        assert resp.status == 200, await resp.text()
        got[period] = await resp.json()
    assert [got[k]["passed"] for k in range(4)] == [True, False, True, False]
    assert [got[k]["points"] for k in range(4)] == [5, 0, 5, 0]
    events = await world.events("incentive.evaluated")
    assert [(e["data"]["period"], e["data"]["result"]) for e in events] == [
        (0, True),
        (1, False),
        (2, True),
        (3, False),
    ]
    assert all(e["subject"] == world.pat.sub and e["data"]["program"] == pid for e in events)
    # Once only: evaluating a period again answers the first evaluation.
    again = await world.evaluate(pid, 0)
    assert (await again.json())["ledger_index"] == got[0]["ledger_index"]
    assert len(await world.events("incentive.evaluated")) == 4
    # The patient's disclosure opens the commitment on the ledger.
    resp = await call(
        world.client, "GET", f"/v1/programs/{pid}/evaluations/2", world.pat, world.pat_t
    )
    d = await resp.json()
    assert d["aggregates"]["codes"]["8867-4"]["mean"] == 100.0
    salt = base64.urlsafe_b64decode(d["salt"] + "==")
    assert commitment(salt, d["aggregates"]) == events[2]["data"]["commitment"]


async def test_no_reading_or_aggregate_value_is_on_the_ledger(world: IncentiveWorld) -> None:
    pid = await world.program('days_with("8867-4") >= 1 && max("8867-4") < 150.0')
    assert (await world.enroll(pid)).status == 201
    values = [123.0, 137.0, 141.0]  # distinctive numbers to look for
    await world.heart(1, values)
    assert (await world.evaluate(pid, 1)).status == 200
    size = (await (await world.client.get("/readyz")).json())["ledger_size"]
    forbidden = {123, 137, 141, 133.666667}  # the readings, and their mean
    seen = set()
    for i in range(size):
        entry = (await (await world.client.get(f"/ledger/entries/{i}")).json())["event"]
        seen.add(entry["type"])
        numbers = set(_numbers(entry))
        assert not numbers & forbidden, entry
        text = json.dumps(entry)
        assert not any(f'"{v}"' in text or f"{v}." in text for v in (123, 137, 141)), entry
        assert "aggregates" not in text and "mean" not in text, entry
    assert {"vitals.batch", "incentive.evaluated"} <= seen


def _numbers(value: Any) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [value]
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    return []


async def test_evaluation_needs_a_live_enrollment(world: IncentiveWorld) -> None:
    pid = await world.program(RULE)
    await world.heart(0, [70, 70, 70])
    resp = await world.evaluate(pid, 0)
    assert resp.status == 403 and (await resp.json())["type"].endswith("/not-enrolled")
    enrolled = await (await world.enroll(pid)).json()
    assert enrolled["until"] > 0
    # Revoking the consent (like any other) stops evaluation at once.
    revoke = await call(
        world.client, "DELETE", f"/v1/consents/{enrolled['consent']}", world.pat, world.pat_t
    )
    assert revoke.status == 200
    resp = await world.evaluate(pid, 0)
    assert resp.status == 403
    progress = await call(
        world.client, "GET", f"/v1/programs/{pid}/progress", world.pat, world.pat_t
    )
    assert (await progress.json())["enrolled"] is False
    assert await world.events("incentive.evaluated") == []


async def test_a_period_not_over_or_out_of_range_is_refused(world: IncentiveWorld) -> None:
    pid = await world.program(RULE)
    assert (await world.enroll(pid)).status == 201
    assert (await world.evaluate(pid, 4)).status == 409  # today
    for bad in (6, -1, "x", True, 10_000):
        assert (await world.evaluate(pid, bad)).status == 400, bad


async def test_progress_shows_the_patients_own_standing(world: IncentiveWorld) -> None:
    pid = await world.program(RULE)
    assert (await world.enroll(pid)).status == 201
    await world.heart(0, [70, 71, 72])
    assert (await world.evaluate(pid, 0)).status == 200
    resp = await call(world.client, "GET", f"/v1/programs/{pid}/progress", world.pat, world.pat_t)
    body: dict[str, Any] = await resp.json()
    assert body["enrolled"] and body["period"] == 4
    assert [e["period"] for e in body["evaluations"]] == [0]
    assert body["aggregates"]["codes"]["8867-4"]["count"] == 0
    assert body["result_so_far"] is False


async def test_roles_and_other_patients(world: IncentiveWorld) -> None:
    pid = await world.program(RULE)
    assert (await world.enroll(pid)).status == 201
    await world.heart(0, [70, 70, 70])
    # A provider or an admin neither enrolls nor evaluates for a patient.
    for who, token in ((world.prov, world.prov_t), (world.adm, world.adm_t)):
        assert (await world.enroll(pid, who, token)).status == 403
        assert (await world.evaluate(pid, 0, who, token)).status == 403
    # Another patient evaluates only their own data, and is not enrolled.
    assert (await world.evaluate(pid, 0, world.other, world.other_t)).status == 403
    assert (await world.enroll(pid, world.other, world.other_t)).status == 201
    resp = await world.evaluate(pid, 0, world.other, world.other_t)
    assert (await resp.json())["passed"] is False
    # ... and cannot read this patient's disclosure (theirs is of their own evaluation).
    mine = await world.evaluate(pid, 0)
    assert (await mine.json())["passed"] is True
    unknown = await world.evaluate("0" * 64, 0)
    assert unknown.status == 404
    resp = await call(
        world.client, "GET", f"/v1/programs/{pid}/evaluations/1", world.pat, world.pat_t
    )
    assert resp.status == 404


async def test_the_sweep_evaluates_finished_periods_of_live_enrollments(
    world: IncentiveWorld,
) -> None:
    from gateway.incentives.http import EVALUATOR

    pid = await world.program(RULE)
    assert (await world.enroll(pid)).status == 201
    other = await (await world.enroll(pid, world.other, world.other_t)).json()
    await world.heart(1, [70, 71, 72])
    # The other patient revokes: nothing is evaluated for them.
    revoke = await call(
        world.client, "DELETE", f"/v1/consents/{other['consent']}", world.other, world.other_t
    )
    assert revoke.status == 200
    ev = world.client.app[EVALUATOR]
    passed: list[int] = []

    async def on_pass(e: Any, sp: Any) -> None:
        passed.append(e.period)

    assert await ev.sweep(on_pass) == 4  # periods 0..3; 4 is today
    events = await world.events("incentive.evaluated")
    assert [(e["subject"], e["data"]["period"]) for e in events] == [
        (world.pat.sub, k) for k in range(4)
    ]
    assert all(e["actor"] == "gw:self" for e in events)
    assert passed == [1]
    assert await ev.sweep(on_pass) == 0  # once only


async def test_a_reserved_evaluation_is_answered_in_progress_or_taken_over(
    world: IncentiveWorld,
) -> None:
    import dataclasses
    import time

    from gateway.incentives.http import EVALUATOR
    from gateway.incentives.store import Evaluation

    pid = await world.program(RULE)
    assert (await world.enroll(pid)).status == 201
    await world.heart(0, [70, 70, 70])
    store = world.client.app[EVALUATOR].store
    now = int(time.time())
    # Another replica reserved period 0 a moment ago and is appending its event.
    held = Evaluation(world.pat.sub, pid, 0, True, 5, b"s" * 32, "c", 0, now, None)
    assert store.add_evaluation(held)
    busy = await world.evaluate(pid, 0)
    assert busy.status == 503 and busy.headers["Retry-After"] == "1"
    assert (await busy.json())["type"].endswith("/evaluation-in-progress")
    # One that stopped long ago: its reservation is taken over.
    assert store.drop_reserved_evaluation(world.pat.sub, pid, 0)
    assert store.add_evaluation(dataclasses.replace(held, evaluated=now - 3600))
    resp = await world.evaluate(pid, 0)
    assert resp.status == 200 and (await resp.json())["passed"] is True
    [event] = await world.events("incentive.evaluated")
    assert store.evaluation(world.pat.sub, pid, 0).ledger_index == event["_index"]
