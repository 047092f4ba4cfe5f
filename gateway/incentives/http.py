"""Incentive endpoints: programs published by an admin or a provider, enrollment through an
``incentives`` consent, a patient's progress, on-demand evaluation of a finished period and
the disclosure that lets anyone re-check it (docs/incentives.md). Every write is a ledger
event."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from ledger.events import EventType

from ..appkeys import AUTHORITY, CLOCK, CONFIG, CONSENTS, DATABASE, LOG, VITALS
from ..auth.http import authenticate, origin, read_json
from ..auth.jwk import b64u
from ..auth.tokens import Forbidden
from ..consent.guard import INCENTIVES, program_grantee
from ..consent.store import Consent
from ..errors import BadRequest, Conflict, NotFound
from ..recorder import event, record
from ..vitals.intake import Gone
from ..vitals.store import Erased
from .evaluate import Evaluator
from .program import parse_program
from .rewards import STATUS_PATH, Rewards
from .rules import RuleError
from .store import Evaluation, IncentiveStore, Reward, StoredProgram

__all__ = ["EVALUATOR", "REWARDS", "incentives_ctx", "setup"]

EVALUATOR = web.AppKey("incentives", Evaluator)
REWARDS = web.AppKey("rewards", Rewards)
RID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: Seconds between two sweeps for finished periods (gateway/incentives/evaluate.py).
SWEEP_EVERY = 300
log = logging.getLogger("telegate.incentives")
#: The longest an enrollment lasts (as a consent): a program may run two years.
MAX_ENROLL_DAYS = 366 * 2
PERIOD = re.compile(r"^[0-9]{1,3}$")


async def incentives_ctx(app: web.Application) -> AsyncIterator[None]:
    """The incentives store and evaluator (after the consent and vitals stores open)."""
    engine = await asyncio.to_thread(app[DATABASE].open, "incentives")
    store = IncentiveStore(engine)
    intake = app[VITALS].intake
    app[EVALUATOR] = Evaluator(
        store,
        app[CONSENTS],
        intake.store,
        lambda ev: record(app, ev),
        app[CLOCK],
        intake.writer.indexes_written,
    )
    rewards = app[REWARDS] = Rewards(store, app[AUTHORITY], lambda ev: record(app, ev))
    task = asyncio.create_task(_sweeping(app[EVALUATOR], rewards, app[CONFIG].public_url))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _sweeping(ev: Evaluator, rewards: Rewards, public_url: str) -> None:
    """Evaluate finished periods of live enrollments every SWEEP_EVERY seconds, so a
    period is evaluated at its end without the patient asking. A reward needs the issuer
    URL its verifiers fetch keys from: with ``public_url`` unset (development) the patient
    gets it on their next ``POST .../evaluate`` of that period."""

    async def on_pass(e: Evaluation, sp: StoredProgram) -> None:
        if public_url:
            await rewards.issue(e, sp.program, public_url.rstrip("/"))

    while True:
        await asyncio.sleep(SWEEP_EVERY)
        try:
            await ev.sweep(on_pass)
        except Exception:  # a database or ledger outage: try again next time
            log.exception("incentive sweep failed")


def _program_view(sp: StoredProgram) -> dict[str, Any]:
    return {**sp.program.to_json(), "published": sp.published, "ledger_index": sp.ledger_index}


def _evaluation_view(e: Evaluation) -> dict[str, Any]:
    return {
        "period": e.period,
        "result": e.result,
        "passed": e.passed,
        "points": e.points,
        "commitment": e.commitment,
        "evaluated": e.evaluated,
        "ledger_index": e.ledger_index,
    }


async def publish(request: web.Request) -> web.Response:
    p = authenticate(request)
    p.require("admin", "provider", scope="enroll")
    body = await read_json(request)
    program = parse_program(body, p.sub)
    ev = request.app[EVALUATOR]
    found = await asyncio.to_thread(ev.store.program, program.id)
    if found is not None:  # the same text again: content-addressed, nothing new
        return web.json_response(_program_view(found))
    receipt = await record(
        request.app,
        event(
            request.app,
            EventType.PROGRAM_PUBLISHED,
            p.sub,
            data={"program": program.id, "canonical": program.canonical().decode()},
        ),
    )
    now = request.app[AUTHORITY].now()
    await asyncio.to_thread(ev.store.add_program, program, now, receipt.index)
    view = {**program.to_json(), "published": now, "ledger_index": receipt.index}
    return web.json_response({**view, "receipt": receipt.to_json()}, status=201)


async def list_programs(request: web.Request) -> web.Response:
    authenticate(request)
    publisher = request.query.get("publisher")
    if publisher is not None and not 1 <= len(publisher) <= 200:
        raise BadRequest("publisher is a subject id")
    found = await asyncio.to_thread(request.app[EVALUATOR].store.programs, publisher)
    return web.json_response({"programs": [_program_view(sp) for sp in found]})


async def _program(request: web.Request) -> StoredProgram:
    return await request.app[EVALUATOR].program(request.match_info["id"])


async def enroll(request: web.Request) -> web.Response:
    p = authenticate(request)
    p.require("patient", scope="consent")
    if request.can_read_body:
        body = await read_json(request)
        if body != {}:
            raise BadRequest("send no body, or {}")
    sp = await _program(request)
    ev = request.app[EVALUATOR]
    now = request.app[AUTHORITY].now()
    end = min(sp.program.end_epoch, now + MAX_ENROLL_DAYS * 86400)
    if end <= now:
        raise Conflict("that program has ended")
    publisher = sp.program.publisher
    if publisher.startswith("prov:"):
        # A provider's program is for its patients: those with a live consent naming it.
        named = await asyncio.to_thread(request.app[CONSENTS].matching, p.sub, (publisher,))
        if not any(c.active(now) for c in named):
            raise Forbidden("this program is for the patients of the provider who published it")
    live = await ev.enrolled(p.sub, sp.program.id)
    if live is not None:
        return web.json_response({"program": sp.program.id, "consent": live, "until": end})
    grantee = program_grantee(sp.program.id)
    c = Consent(secrets.token_hex(16), p.sub, grantee, (INCENTIVES,), now, end, None)
    await asyncio.to_thread(request.app[CONSENTS].add, c)
    receipt = await record(
        request.app,
        event(
            request.app,
            EventType.CONSENT_GRANTED,
            p.sub,
            subject=p.sub,
            data={"consent": c.id, "grantee": grantee, "scopes": [INCENTIVES], "until": end},
        ),
    )
    body = {"program": sp.program.id, "consent": c.id, "until": end, "receipt": receipt.to_json()}
    return web.json_response(body, status=201)


async def progress(request: web.Request) -> web.Response:
    p = authenticate(request)
    p.require("patient", scope="vitals.read")
    sp = await _program(request)
    ev = request.app[EVALUATOR]
    prog = sp.program
    now = request.app[AUTHORITY].now()
    consent = await ev.enrolled(p.sub, prog.id)
    current = prog.period_at(now)
    out: dict[str, Any] = {
        "program": prog.id,
        "enrolled": consent is not None,
        "consent": consent,
        "period": current,
        "evaluations": [
            _evaluation_view(e)
            for e in await asyncio.to_thread(ev.store.evaluations, p.sub, prog.id)
        ],
    }
    if current is not None and consent is not None:
        # The patient's own standing so far this period: their data, shown to them only.
        try:
            aggs, _ = await ev.aggregates(p.sub, prog, current)
        except Erased:
            raise Gone("this patient's vitals were erased") from None
        lo, hi = prog.period_bounds(current)
        try:
            so_far: bool | int | None = prog.rule().evaluate(aggs)
        except RuleError:
            so_far = None
        out.update({"from": lo, "to": hi, "aggregates": aggs, "result_so_far": so_far})
    return web.json_response(out)


def _period(value: Any) -> int:
    if isinstance(value, str) and PERIOD.fullmatch(value):
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1000:
        return value
    raise BadRequest("period is a period number (0-based)")


async def evaluate(request: web.Request) -> web.Response:
    p = authenticate(request)
    p.require("patient", scope="vitals.read")
    body = await read_json(request)
    if not isinstance(body, dict) or set(body) != {"period"}:
        raise BadRequest("send period")
    period = _period(body["period"])
    sp = await _program(request)
    e = await request.app[EVALUATOR].evaluate(p.sub, p.sub, sp, period)
    out = {"program": sp.program.id, **_evaluation_view(e)}
    if e.passed:
        # Issued once: a passed period evaluated again (or a reward issued by a first call
        # that failed after its evaluation) gets its credential here.
        reward = await request.app[REWARDS].issue(e, sp.program, origin(request))
        out["reward"] = reward.id if reward is not None else None
    return web.json_response(out)


def _reward_view(r: Reward) -> dict[str, Any]:
    return {
        "id": r.id,
        "program": r.program,
        "period": r.period,
        "issued": r.issued,
        "revoked": r.revoked,
        "ledger_index": r.ledger_index,
        "credential": r.credential,
    }


async def list_rewards(request: web.Request) -> web.Response:
    p = authenticate(request)
    p.require("patient")
    found = await asyncio.to_thread(request.app[EVALUATOR].store.rewards, p.sub)
    return web.json_response({"rewards": [_reward_view(r) for r in found]})


async def revoke_reward(request: web.Request) -> web.Response:
    p = authenticate(request)
    p.require("admin", scope="revoke")
    rid = request.match_info["id"]
    r = await request.app[REWARDS].revoke(rid, p.sub) if RID.fullmatch(rid) else None
    if r is None:
        raise NotFound("no live reward with that id")
    return web.json_response({"id": rid, "revoked": request.app[AUTHORITY].now()})


async def rewards_status(request: web.Request) -> web.Response:
    token = await request.app[REWARDS].status_list_token(origin(request))
    resp = web.Response(text=token, content_type="application/statuslist+jwt")
    resp.headers["Cache-Control"] = "max-age=1"
    return resp


async def disclosure(request: web.Request) -> web.Response:
    """What the patient hands an auditor to re-check an evaluation: the program's text, the
    aggregates, the salt and the ledger index (``telegate incentives verify``)."""
    p = authenticate(request)
    p.require("patient", scope="vitals.read")
    sp = await _program(request)
    period = _period(request.match_info["period"])
    ev = request.app[EVALUATOR]
    e = await asyncio.to_thread(ev.store.evaluation, p.sub, sp.program.id, period)
    if e is None or e.ledger_index is None:
        raise NotFound("that period was not evaluated for this patient")
    try:
        aggs, _ = await ev.aggregates(p.sub, sp.program, period, upto=e.upto_seq)
    except Erased:
        raise Gone("this patient's vitals were erased: the aggregates are gone") from None
    log, index = request.app[LOG], e.ledger_index
    receipt = await asyncio.to_thread(log.receipt_for, index)
    (entry,) = await asyncio.to_thread(log.store.read_entries, index, index + 1)
    return web.json_response(
        {
            "program": sp.program.canonical().decode(),
            "period": period,
            "aggregates": aggs,
            "salt": b64u(e.salt),
            **_evaluation_view(e),
            "entry": b64u(entry),
            "receipt": receipt.to_json(),
        }
    )


def setup(app: web.Application) -> None:
    app.cleanup_ctx.append(incentives_ctx)
    r = app.router
    r.add_post("/v1/programs", publish)
    r.add_get("/v1/programs", list_programs)
    r.add_post("/v1/programs/{id}/enroll", enroll)
    r.add_get("/v1/programs/{id}/progress", progress)
    r.add_post("/v1/programs/{id}/evaluate", evaluate)
    r.add_get("/v1/programs/{id}/evaluations/{period}", disclosure)
    r.add_get("/v1/rewards", list_rewards)
    r.add_post("/v1/rewards/{id}/revoke", revoke_reward)
    r.add_get(STATUS_PATH, rewards_status)
